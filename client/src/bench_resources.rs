//! What a local bench cluster's nodes cost in memory and disk: each node's
//! resident set sampled once a second over the load (memory over time),
//! and the on-disk bytes of its data directory per live nullifier after the
//! run. Linux only (`/proc`); elsewhere the figures are absent.

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
}
