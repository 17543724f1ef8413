//! The snapshot file: every record of the state database at one point in
//! time, streamed from a RocksDB snapshot, with a BLAKE3 checksum.
//!
//! Layout: `MAGIC`, then records `cf: u8 ‖ key_len: u32be ‖ key ‖
//! value_len: u32be ‖ value`, then `0xFF ‖ blake3(all preceding bytes)`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rocksdb::{IteratorMode, ReadOptions, WriteBatch};

use super::io_err;
use super::state_store::{AppliedState, COLUMN_FAMILIES, StateStore};

const MAGIC: &[u8; 8] = b"SLSNAP01";
const END: u8 = 0xFF;
/// Records per write batch while loading.
const LOAD_BATCH_RECORDS: usize = 10_000;
/// Keys and values above this size are refused as corrupt.
const RECORD_BYTES_MAX: usize = 64 << 20;

/// A snapshot on disk: the state machine's `SnapshotData`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: PathBuf,
}

/// fsyncs a directory so a rename inside it is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Bytes written to a snapshot file between two starts of its write-back.
/// Left to the kernel, a build of a few hundred MB stays dirty in the page
/// cache until the final fsync writes it all at once, and the Raft log's
/// fsyncs on the same file system can end up waiting behind it.
const WRITE_BACK_BYTES: u64 = 8 << 20;

/// Read-ahead for the build's scans: they read every table file in order.
const SCAN_READAHEAD_BYTES: usize = 4 << 20;

struct HashingWriter {
    inner: BufWriter<File>,
    hasher: blake3::Hasher,
    /// Bytes put since the last start of write-back.
    unsynced_bytes: u64,
}

impl HashingWriter {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.inner.write_all(bytes)?;
        self.unsynced_bytes += bytes.len() as u64;
        if self.unsynced_bytes >= WRITE_BACK_BYTES {
            self.unsynced_bytes = 0;
            self.inner.flush()?;
            start_write_back(self.inner.get_ref())?;
        }
        Ok(())
    }
}

/// Starts writing the file's dirty pages to disk without waiting for them
/// (the final fsync still makes the file durable).
fn start_write_back(file: &File) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for the borrow's duration;
        // sync_file_range takes no pointers. Offset 0 and length 0 mean the
        // whole file.
        let rc =
            unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
    Ok(())
}

/// Writes the state database's current contents to `path` (via a temporary
/// file, fsynced and renamed into place). Returns the file's size and the
/// applied state the contents are at (read from the same point in time).
pub fn write(store: &StateStore, path: &Path) -> io::Result<(u64, AppliedState)> {
    let tmp = path.with_extension("tmp");
    let file = File::create(&tmp)?;
    let mut w = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: blake3::Hasher::new(),
        unsynced_bytes: 0,
    };
    w.put(MAGIC)?;
    let snapshot = store.db().snapshot();
    let applied = store.applied_state_at(&snapshot)?;
    for (i, name) in COLUMN_FAMILIES.iter().enumerate() {
        let cf_id = u8::try_from(i).expect("fewer than 255 column families");
        // Not through the block cache: the scan reads every block once, and
        // would push out the blocks apply reads again and again.
        let mut read = ReadOptions::default();
        read.fill_cache(false);
        read.set_readahead_size(SCAN_READAHEAD_BYTES);
        for item in snapshot.iterator_cf_opt(store.cf(name), read, IteratorMode::Start) {
            let (k, v) = item.map_err(io_err)?;
            w.put(&[cf_id])?;
            w.put(&u32::try_from(k.len()).map_err(io_err)?.to_be_bytes())?;
            w.put(&k)?;
            w.put(&u32::try_from(v.len()).map_err(io_err)?.to_be_bytes())?;
            w.put(&v)?;
        }
    }
    let digest = w.hasher.finalize();
    w.inner.write_all(&[END])?;
    w.inner.write_all(digest.as_bytes())?;
    let file = w.inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    let size = file.metadata()?.len();
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok((size, applied))
}

fn read_exact_hashed<R: Read>(
    r: &mut R,
    hasher: &mut blake3::Hasher,
    buf: &mut [u8],
) -> io::Result<()> {
    r.read_exact(buf)?;
    hasher.update(buf);
    Ok(())
}

fn read_len<R: Read>(r: &mut R, hasher: &mut blake3::Hasher) -> io::Result<usize> {
    let mut b = [0u8; 4];
    read_exact_hashed(r, hasher, &mut b)?;
    let len = u32::from_be_bytes(b) as usize;
    if len > RECORD_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("snapshot record of {len} bytes"),
        ));
    }
    Ok(len)
}

/// Loads a snapshot file into an empty state database and flushes it to
/// disk. Fails on any corruption (bad magic, unknown column family, short
/// file, checksum mismatch); the caller then discards the database.
pub fn load(path: &Path, store: &StateStore) -> io::Result<u64> {
    let invalid = |m: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("snapshot {}: {m}", path.display()),
        )
    };
    let mut r = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut hasher = blake3::Hasher::new();
    let mut magic = [0u8; 8];
    read_exact_hashed(&mut r, &mut hasher, &mut magic)?;
    if &magic != MAGIC {
        return Err(invalid("not a spentledger snapshot (bad magic)"));
    }
    let mut batch = WriteBatch::default();
    let mut records = 0u64;
    loop {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag)?;
        if tag[0] == END {
            break;
        }
        hasher.update(&tag);
        let name = COLUMN_FAMILIES
            .get(tag[0] as usize)
            .ok_or_else(|| invalid("unknown column family"))?;
        let mut key = vec![0u8; read_len(&mut r, &mut hasher)?];
        read_exact_hashed(&mut r, &mut hasher, &mut key)?;
        let mut value = vec![0u8; read_len(&mut r, &mut hasher)?];
        read_exact_hashed(&mut r, &mut hasher, &mut value)?;
        batch.put_cf(store.cf(name), key, value);
        records += 1;
        if batch.len() >= LOAD_BATCH_RECORDS {
            store
                .db()
                .write(std::mem::take(&mut batch))
                .map_err(io_err)?;
        }
    }
    let mut expected = [0u8; 32];
    r.read_exact(&mut expected)?;
    if hasher.finalize().as_bytes() != &expected {
        return Err(invalid("checksum mismatch"));
    }
    let mut trailing = [0u8; 1];
    if r.read(&mut trailing)? != 0 {
        return Err(invalid("bytes after the checksum"));
    }
    store.db().write(batch).map_err(io_err)?;
    store.db().flush().map_err(io_err)?;
    for name in COLUMN_FAMILIES {
        store.db().flush_cf(store.cf(name)).map_err(io_err)?;
    }
    Ok(records)
}
