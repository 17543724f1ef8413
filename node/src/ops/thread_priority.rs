//! Scheduling priority of a node's own threads.
//!
//! A follower's apply validates every payment again; that is background work
//! next to what a client waits for (the leader's ingress check and apply,
//! every node's log append and acknowledgement). Run at a lower priority,
//! it takes the cores only when they are otherwise idle, and a Raft
//! acknowledgement or a leader's check does not queue behind it. The flow
//! control of `consensus::apply_lag` keeps a majority's apply close behind
//! the leader however little CPU it gets.

use std::io;

/// Lowers the calling thread's priority to `nice` (0 = normal, 19 = the
/// lowest); only the calling thread is affected (Linux schedules threads
/// individually). A positive `nice` needs no privilege.
pub fn lower_current_thread(nice: i32) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take no pointers and cannot break
        // memory safety; failure is reported through errno.
        let tid = unsafe { libc::gettid() };
        let id = libc::id_t::try_from(tid).map_err(|_| io::Error::other("negative thread id"))?;
        // SAFETY: as above.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, id, nice) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = nice;
        Ok(())
    }
}

/// The lowest priority: what runs at it gets only CPU no other thread wants.
pub const NICE_LOWEST: i32 = 19;

/// Runs `work` on a new thread named `name` at the lowest priority and
/// returns its result when it ends: for rare, long, CPU-heavy work that
/// nothing waits for promptly (a snapshot build). A thread of its own, not a
/// pooled blocking thread, because an unprivileged thread cannot raise its
/// priority back, and a pooled thread carries it to whatever runs next.
pub async fn run_at_lowest_priority<T, F>(name: &str, work: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread_name = name.to_owned();
    std::thread::Builder::new()
        .name(thread_name.clone())
        .spawn(move || {
            if let Err(e) = lower_current_thread(NICE_LOWEST) {
                tracing::warn!(thread = %thread_name, error = %e, "keeps normal priority");
            }
            // The receiver is gone only if the caller was dropped (shutdown).
            let _ = tx.send(work());
        })?;
    rx.await
        .map_err(|_| io::Error::other(format!("thread {name} ended without a result")))
}

/// The calling thread's nice value (for the tests: the node only sets it).
#[cfg(all(test, target_os = "linux"))]
fn current_thread_nice() -> io::Result<i32> {
    // SAFETY: gettid takes no pointers.
    let tid = unsafe { libc::gettid() };
    let id = libc::id_t::try_from(tid).map_err(|_| io::Error::other("negative thread id"))?;
    // getpriority may legitimately return -1: clear errno first to tell.
    // SAFETY: errno is thread-local; getpriority takes no pointers.
    unsafe { *libc::__errno_location() = 0 };
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, id) };
    let errno = io::Error::last_os_error();
    if nice == -1 && errno.raw_os_error() != Some(0) {
        return Err(errno);
    }
    Ok(nice)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn only_the_calling_thread_is_lowered() {
        let before = current_thread_nice().expect("read own priority");
        let lowered = std::thread::spawn(move || {
            lower_current_thread(before + 5).expect("lowering needs no privilege");
            current_thread_nice().expect("read")
        })
        .join()
        .expect("thread");
        assert_eq!(lowered, before + 5);
        assert_eq!(
            current_thread_nice().expect("read"),
            before,
            "another thread's priority changed"
        );
    }

    #[tokio::test]
    async fn work_at_the_lowest_priority_runs_on_its_own_named_thread() {
        let before = current_thread_nice().expect("read own priority");
        let (name, nice) = run_at_lowest_priority("low-work", || {
            let name = std::thread::current().name().map(str::to_owned);
            (name, current_thread_nice().expect("read"))
        })
        .await
        .expect("the work's result");
        assert_eq!(name.as_deref(), Some("low-work"));
        assert_eq!(nice, NICE_LOWEST);
        assert_eq!(
            current_thread_nice().expect("read"),
            before,
            "the caller's priority changed"
        );
    }
}
