//! What a local bench cluster's nodes cost in memory and disk: each node's
//! resident set sampled once a second over the load (memory over time),
//! and the on-disk bytes of its data directory per live nullifier after the
//! run, and the CPU time the nodes used. Linux only (`/proc`); elsewhere
//! the figures are absent.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Samples per node are capped (one a second: more than two hours).
const SAMPLES_MAX: usize = 8_192;
const SAMPLE_PERIOD: Duration = Duration::from_secs(1);

/// One node's resident set over the run, in MiB, with the second it was taken.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemorySeries {
    pub node: usize,
    pub samples: Vec<(f64, f64)>,
}

impl MemorySeries {
    pub fn max_mib(&self) -> f64 {
        self.samples.iter().map(|s| s.1).fold(0.0, f64::max)
    }

    /// Last sample minus the first one taken after `warm_up_s`: how much the
    /// node grew once its caches had filled.
    pub fn growth_mib(&self, warm_up_s: f64) -> f64 {
        let after: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.0 >= warm_up_s)
            .map(|s| s.1)
            .collect();
        match (after.first(), after.last()) {
            (Some(first), Some(last)) => last - first,
            _ => 0.0,
        }
    }
}

/// A node's resident set in MiB, from `/proc/<pid>/status`.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Clock ticks per second in `/proc/<pid>/stat`: USER_HZ, which Linux fixes
/// at 100 for user space on every architecture it reports it for.
const USER_HZ: f64 = 100.0;

/// CPU time a process has used so far (user and system, every thread,
/// those that ended included), in seconds, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // count fields after its closing one. utime and stime are fields 14
    // and 15, so the 12th and 13th after it.
    let mut fields = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// CPU seconds of all `pids` together; `None` if any cannot be read.
pub fn total_cpu_seconds(pids: &[(usize, u32)]) -> Option<f64> {
    pids.iter().map(|(_, pid)| cpu_seconds(*pid)).sum()
}

/// Samples the resident sets of `pids` (node index, pid) until stopped.
pub struct MemorySampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Vec<MemorySeries>>,
}

impl MemorySampler {
    pub fn start(pids: Vec<(usize, u32)>) -> MemorySampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            let mut series: Vec<MemorySeries> = pids
                .iter()
                .map(|(node, _)| MemorySeries {
                    node: *node,
                    samples: Vec::new(),
                })
                .collect();
            while !flag.load(Ordering::Relaxed) {
                let t = started.elapsed().as_secs_f64();
                for ((_, pid), s) in pids.iter().zip(series.iter_mut()) {
                    if let Some(mib) = rss_mib(*pid)
                        && s.samples.len() < SAMPLES_MAX
                    {
                        s.samples.push((t, mib));
                    }
                }
                // Sleep in small steps so stopping is prompt.
                let next = Instant::now() + SAMPLE_PERIOD;
                while Instant::now() < next && !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            series
        });
        MemorySampler { stop, handle }
    }

    pub fn finish(self) -> Vec<MemorySeries> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// Bytes of every file under `dir` (RocksDB files, the Raft log, snapshots).
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack: Vec<PathBuf> = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_resident_set_and_growth_is_last_minus_first() {
        assert!(rss_mib(std::process::id()).is_some_and(|m| m > 0.0));
        let s = MemorySeries {
            node: 1,
            samples: vec![(0.0, 10.0), (5.0, 50.0), (6.0, 52.0), (7.0, 51.0)],
        };
        assert_eq!(s.max_mib(), 52.0);
        assert_eq!(s.growth_mib(5.0), 1.0);
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("a")).expect("dir");
        std::fs::write(dir.path().join("a/f"), [0u8; 100]).expect("file");
        std::fs::write(dir.path().join("g"), [0u8; 20]).expect("file");
        assert_eq!(dir_bytes(dir.path()), 120);
    }

    #[test]
    fn cpu_time_counts_the_work_a_process_did() {
        let me = [(0, std::process::id())];
        let before = total_cpu_seconds(&me).expect("own stat");
        let started = Instant::now();
        let mut x = 1u64;
        while started.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        // Counted in 10 ms ticks, and the test may wait for a core on a
        // busy machine: half of the spinning time must show.
        let spent = total_cpu_seconds(&me).expect("own stat") - before;
        assert!(spent >= 0.1, "200 ms of spinning counted as {spent} s");
        assert!(total_cpu_seconds(&[(0, u32::MAX)]).is_none());
    }
}
