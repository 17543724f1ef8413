//! Knowing when a store's database has really been closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set when the store holding it has been dropped *and its database closed*.
///
/// Contract: a store declares this field after its `DB`. Rust drops fields
/// in declaration order, so the flag is set only once RocksDB's close (which
/// waits for a running flush or compaction and releases the directory's
/// lock) has returned. Counting the store's `Arc` handles would not do: the
/// count reaches zero before the last one's drop, and the close, runs.
#[derive(Debug, Default)]
pub struct CloseSignal(Arc<AtomicBool>);

impl CloseSignal {
    /// True once the database is closed. Holds no reference to the store.
    pub fn probe(&self) -> impl Fn() -> bool + Send + Sync + use<> {
        let closed = Arc::clone(&self.0);
        move || closed.load(Ordering::Acquire)
    }
}

impl Drop for CloseSignal {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Store {
        _first: Arc<()>,
        closed: CloseSignal,
    }

    #[test]
    fn the_probe_turns_true_only_after_the_fields_before_it_dropped() {
        let first = Arc::new(());
        let store = Store {
            _first: Arc::clone(&first),
            closed: CloseSignal::default(),
        };
        let probe = store.closed.probe();
        assert!(!probe());
        drop(store);
        assert!(probe());
        assert_eq!(Arc::strong_count(&first), 1, "the field before it dropped");
    }
}
