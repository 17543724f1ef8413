//! Key layouts. Integers in keys are big-endian so that byte order is
//! numeric order (RocksDB iterates keys bytewise).

pub fn u64_key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

pub fn u64_from_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}
