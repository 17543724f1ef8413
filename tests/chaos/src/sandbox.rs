//! A self-cleaning network sandbox for tests that run real node processes:
//! the test re-runs itself inside `unshare --pid --fork --kill-child
//! --mount-proc --net --mount`, where it builds a bridge and one network
//! namespace per node. When the sandboxed process exits, the kernel takes
//! the namespaces, mounts, processes and packet filters with it.
//!
//! Needs root, util-linux `unshare`, iproute2 `ip` (and `nft` for
//! [`crate::packet_filter`]).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, ExitStatus};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{what}: cannot run: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: {stderr}")]
    Failed { what: String, stderr: String },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}

/// Runs `cmd` to completion; an error names `what` and carries stderr.
pub fn run(what: &str, cmd: &mut Command) -> Result<(), SandboxError> {
    let out = cmd.output().map_err(|source| SandboxError::Spawn {
        what: what.to_owned(),
        source,
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(SandboxError::Failed {
            what: what.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

fn ip(args: &[&str]) -> Result<(), SandboxError> {
    run(
        &format!("ip {}", args.join(" ")),
        Command::new("ip").args(args),
    )
}

/// Re-runs the current test binary's test `test_name` (an `#[ignore]`d
/// test) inside a fresh sandbox, with `marker_env` set so that test knows
/// where it runs; extra environment passes through. Returns its status.
pub fn rerun_sandboxed(test_name: &str, marker_env: &str) -> Result<ExitStatus, SandboxError> {
    let exe = std::env::current_exe().map_err(|source| SandboxError::Io {
        what: "the test binary's path",
        source,
    })?;
    Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--net",
            "--mount",
        ])
        .arg(exe)
        .args([
            "--exact",
            test_name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(marker_env, "1")
        .status()
        .map_err(|source| SandboxError::Spawn {
            what: "unshare (util-linux; the test needs root)".to_owned(),
            source,
        })
}

/// The sandbox's bridge `br0` on `<subnet>.0/24`; the sandbox itself (where
/// the test's clients run) is `<subnet>.254`.
#[derive(Debug, Clone)]
pub struct Bridge {
    subnet: [u8; 3],
}

impl Bridge {
    /// The host end of the bridge, where the test's own clients live.
    pub const HOST: u8 = 254;

    /// Creates the bridge. `ip netns add` keeps its handles under
    /// /run/netns: a tmpfs of the sandbox's own, so none leaks to the host.
    pub fn create(subnet: [u8; 3]) -> Result<Bridge, SandboxError> {
        std::fs::create_dir_all("/run/netns").map_err(|source| SandboxError::Io {
            what: "create /run/netns",
            source,
        })?;
        run(
            "a private /run/netns",
            Command::new("mount").args(["-t", "tmpfs", "netns", "/run/netns"]),
        )?;
        let bridge = Bridge { subnet };
        ip(&["link", "set", "lo", "up"])?;
        ip(&["link", "add", "br0", "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", bridge.addr(Self::HOST)),
            "dev",
            "br0",
        ])?;
        ip(&["link", "set", "br0", "up"])?;
        Ok(bridge)
    }

    /// The address of host `host` on the bridge.
    pub fn addr(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], host)
    }

    /// A network namespace `ns` on the bridge at address `host`, with its
    /// loopback up; returns the address.
    pub fn add_namespace(&self, ns: &str, host: u8) -> Result<Ipv4Addr, SandboxError> {
        let host_end = format!("v{host}");
        ip(&["netns", "add", ns])?;
        ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        ip(&["link", "set", &host_end, "master", "br0", "up"])?;
        let addr = self.addr(host);
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        Ok(addr)
    }

    /// Name resolution for the sandbox: `hosts` (address, names) bound over
    /// /etc/hosts (the sandbox's mount namespace only). The file is written
    /// under `work`.
    pub fn bind_hosts(hosts: &[(Ipv4Addr, String)], work: &Path) -> Result<(), SandboxError> {
        let mut text = String::from("127.0.0.1 localhost\n");
        for (addr, names) in hosts {
            text.push_str(&format!("{addr} {names}\n"));
        }
        let file = work.join("hosts");
        std::fs::write(&file, text).map_err(|source| SandboxError::Io {
            what: "write the hosts file",
            source,
        })?;
        run(
            "bind the test's hosts file",
            Command::new("mount")
                .arg("--bind")
                .arg(&file)
                .arg("/etc/hosts"),
        )
    }
}

/// A command run inside network namespace `ns` (`ip netns exec` execs it:
/// the child's pid is the program's own, so signals reach it directly).
pub fn command_in(ns: &str, program: &Path) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}
