//! Test-only remote control of a node process's faults, for the
//! multi-process chaos suite: the node polls a small `key=value` file named
//! by `SPENTLEDGER_FAULT_CONTROL` and applies it to its fault layer, then
//! writes what it applied to `<file>.ack` so the test knows the fault is in
//! force. Compiled only with the `fault-injection` feature; a production
//! binary has neither the variable nor the file.
//!
//! Keys (each optional, absent = 0): `delay_ms` (every outgoing Raft RPC
//! waits this long: the kernel here has no `tc netem`), `drop_per_mille`
//! (outgoing Raft RPCs lost at random), `clock_offset_ms` (signed; added to
//! this node's wall clock, i.e. to the stamps it gives new entries as
//! leader: libfaketime hangs tokio, so the skew is made in the app).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::fault_layer::FaultNetwork;

/// The environment variable naming the control file.
pub const CONTROL_ENV: &str = "SPENTLEDGER_FAULT_CONTROL";
/// How often the file is read.
const POLL_MS: u64 = 100;
/// Largest clock offset accepted (a day), so a typo cannot overflow stamps.
const CLOCK_OFFSET_MS_MAX: i64 = 86_400_000;
/// Largest delay accepted.
const DELAY_MS_MAX: u64 = 60_000;

/// Process-wide: `now_ms` adds it. Zero unless a control file sets it.
static CLOCK_OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// The skew the control file put on this process's wall clock.
pub fn clock_offset_ms() -> i64 {
    CLOCK_OFFSET_MS.load(Ordering::Relaxed)
}

/// One reading of the control file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultControl {
    pub delay_ms: u64,
    pub drop_per_mille: u32,
    pub clock_offset_ms: i64,
}

impl FaultControl {
    /// Parses `key=value` lines; `#` starts a comment.
    pub fn parse(text: &str) -> Result<FaultControl, String> {
        let mut control = FaultControl::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("{line:?}: expected key=value"))?;
            let (key, value) = (key.trim(), value.trim());
            let bad = |e: std::num::ParseIntError| format!("{key}: {e}");
            match key {
                "delay_ms" => {
                    control.delay_ms = value.parse::<u64>().map_err(bad)?.min(DELAY_MS_MAX)
                }
                "drop_per_mille" => {
                    control.drop_per_mille = value.parse::<u32>().map_err(bad)?.min(1_000)
                }
                "clock_offset_ms" => {
                    control.clock_offset_ms = value
                        .parse::<i64>()
                        .map_err(bad)?
                        .clamp(-CLOCK_OFFSET_MS_MAX, CLOCK_OFFSET_MS_MAX)
                }
                other => return Err(format!("unknown key {other:?}")),
            }
        }
        Ok(control)
    }

    /// The text `parse` reads back, as written to the acknowledgement file.
    pub fn render(&self) -> String {
        format!(
            "delay_ms={}\ndrop_per_mille={}\nclock_offset_ms={}\n",
            self.delay_ms, self.drop_per_mille, self.clock_offset_ms
        )
    }
}

/// The acknowledgement file of control file `path`.
pub fn ack_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".ack");
    PathBuf::from(name)
}

/// Polls `path` until the process ends, applying each change to `network`
/// and the wall-clock offset. A missing file means no faults; an unreadable
/// one is logged and the previous faults stay.
pub fn spawn_watcher(path: PathBuf, network: FaultNetwork) {
    tokio::spawn(async move {
        let mut applied: Option<FaultControl> = None;
        loop {
            let text = match tokio::fs::read_to_string(&path).await {
                Ok(text) => Some(text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(String::new()),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "fault control file unreadable");
                    None
                }
            };
            match text.as_deref().map(FaultControl::parse) {
                Some(Ok(control)) if applied != Some(control) => {
                    network.delay_ms(control.delay_ms);
                    network.drop_per_mille(control.drop_per_mille);
                    CLOCK_OFFSET_MS.store(control.clock_offset_ms, Ordering::Relaxed);
                    tracing::warn!(?control, "fault control applied (test build)");
                    if let Err(e) = tokio::fs::write(ack_path(&path), control.render()).await {
                        tracing::warn!(error = %e, "cannot acknowledge fault control");
                    }
                    applied = Some(control);
                }
                Some(Err(e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "fault control file invalid")
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_renders_and_refuses() {
        let c =
            FaultControl::parse("delay_ms = 50\n# skew\nclock_offset_ms=-600000\n").expect("valid");
        assert_eq!(
            c,
            FaultControl {
                delay_ms: 50,
                drop_per_mille: 0,
                clock_offset_ms: -600_000
            }
        );
        assert_eq!(FaultControl::parse(&c.render()), Ok(c));
        assert!(FaultControl::parse("delay=5").is_err());
        assert!(FaultControl::parse("delay_ms=-5").is_err());
        assert_eq!(
            FaultControl::parse("clock_offset_ms=99999999999")
                .expect("clamped")
                .clock_offset_ms,
            CLOCK_OFFSET_MS_MAX
        );
    }
}
