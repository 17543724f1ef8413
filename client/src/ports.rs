//! Loopback ports for node processes started on this machine (local
//! clusters, the demo, process tests), safe across concurrent processes.
//!
//! A node's address must be chosen before the node starts, because every
//! member's command line lists every peer. Between the choice and the node's
//! own bind the port is free, so two processes choosing at the same moment
//! could hand out the same port (the earlier scheme, a per-process offset in
//! a shared range, did exactly that when process ids were consecutive).
//!
//! Here a port is handed out only after its reservation file was created
//! with `create_new` in one directory shared by every process on the
//! machine, which the file system makes atomic. A reservation lasts
//! [`RESERVATION_TTL`] after its last [`refresh`]; the owner refreshes it
//! when it stops a node it will restart on the same port. Ports come from
//! 20000..32000, below the kernel's ephemeral range (32768 up), so a socket
//! bound to port 0 cannot take one either.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// First port handed out.
pub const PORT_FIRST: u16 = 20_000;
/// Number of ports in the range.
pub const PORT_SPAN: u16 = 12_000;
/// How long a reservation keeps others away after its last refresh. Longer
/// than any test or demo keeps a node down before restarting it.
pub const RESERVATION_TTL: Duration = Duration::from_secs(15 * 60);

/// The directory of reservation files, one per reserved port.
pub fn reservation_dir() -> PathBuf {
    std::env::temp_dir().join("spentledger-port-reservations")
}

/// A loopback address that no other process using this module holds and
/// that nothing was bound to when it was chosen.
pub fn reserve_loopback_addr() -> io::Result<SocketAddr> {
    let dir = reservation_dir();
    std::fs::create_dir_all(&dir)?;
    let start = random_u64();
    for i in 0..u64::from(PORT_SPAN) {
        let port = PORT_FIRST + ((start + i) % u64::from(PORT_SPAN)) as u16;
        if !try_reserve(&dir, port)? {
            continue;
        }
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(listener) => return listener.local_addr(),
            // Bound by something outside this scheme: leave the reservation
            // so nobody else tries it until it expires.
            Err(_) => continue,
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!(
            "no free port in {PORT_FIRST}..{}: every one is bound or reserved in {}",
            PORT_FIRST + PORT_SPAN,
            dir.display()
        ),
    ))
}

/// Extends the reservation of `addr`'s port (before restarting a node on it).
pub fn refresh(addr: SocketAddr) -> io::Result<()> {
    let path = reservation_dir().join(addr.port().to_string());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    file.set_modified(SystemTime::now())
}

/// Gives `addr`'s port back (its node has exited for good).
pub fn release(addr: SocketAddr) {
    let _ = std::fs::remove_file(reservation_dir().join(addr.port().to_string()));
}

/// Creates the reservation file of `port`; false when someone holds it.
/// An expired reservation is taken over. The directory's lock file is held
/// meanwhile, so two processes expiring one reservation at once cannot both
/// take it (one would remove the file the other had just created).
fn try_reserve(dir: &std::path::Path, port: u16) -> io::Result<bool> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))?;
    lock.lock()?;
    let path = dir.join(port.to_string());
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut file) => {
                use std::io::Write;
                // For whoever inspects the directory; nothing reads it.
                let _ = writeln!(file, "pid {}", std::process::id());
                return Ok(true);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let expired = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > RESERVATION_TTL);
                if !expired {
                    return Ok(false);
                }
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// A start position that differs between processes and calls, so
/// concurrent processes do not all contend for the same first ports.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_reservations_never_hand_out_one_port_twice() {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..25)
                        .map(|_| reserve_loopback_addr().expect("a port").port())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u16> = threads
            .into_iter()
            .flat_map(|t| t.join().expect("thread"))
            .collect();
        let n = all.len();
        for port in &all {
            release(SocketAddr::from(([127, 0, 0, 1], *port)));
        }
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "a port was handed out twice");
        assert!(
            all.iter()
                .all(|p| (PORT_FIRST..PORT_FIRST + PORT_SPAN).contains(p))
        );
    }

    #[test]
    fn a_reserved_port_is_skipped_until_its_reservation_expires() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(try_reserve(dir.path(), 20_001).expect("io"));
        assert!(!try_reserve(dir.path(), 20_001).expect("io"), "held");
        let old = SystemTime::now() - RESERVATION_TTL - Duration::from_secs(1);
        std::fs::File::options()
            .write(true)
            .open(dir.path().join("20001"))
            .expect("open")
            .set_modified(old)
            .expect("age the reservation");
        assert!(try_reserve(dir.path(), 20_001).expect("io"), "expired");
        assert!(!try_reserve(dir.path(), 20_001).expect("io"), "held again");
    }
}
