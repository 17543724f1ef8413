use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use ed25519_dalek::VerifyingKey;

use crate::ids::CertId;

/// A verified certificate: the issuer key and signature it was verified with,
/// and its device key, already decompressed and checked to be strong.
#[derive(Debug, Clone)]
struct Verified {
    issuer_public_key: [u8; 32],
    issuer_signature: [u8; 64],
    device_key: VerifyingKey,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<CertId, Verified>,
    /// Insertion order, for eviction of the oldest entry.
    order: VecDeque<CertId>,
}

/// A bounded cache of certificate verifications, keyed by `cert_id`.
///
/// Contract: a hit returns exactly what a fresh verification would, so the
/// cache changes speed, never verdicts. Only successes are cached, and a hit
/// requires the same issuer key *and* the same signature bytes: a copy of a
/// genuine certificate carrying a forged signature is verified afresh (and
/// fails), on every replica alike, cached or not.
#[derive(Debug)]
pub struct CertificateCache {
    capacity: usize,
    inner: Mutex<Inner>,
    /// Issuer keys decompressed before, at most [`ISSUER_KEYS_MAX`]: every
    /// certificate seen for the first time needs its issuer's key as a
    /// point, and decompressing it (a field exponentiation) for each one was
    /// about 0.3% of all CPU under load (docs/BENCHMARKS.md, twenty-first
    /// round). A deployment trusts a handful of keys.
    issuer_keys: Mutex<Vec<([u8; 32], VerifyingKey)>>,
}

/// Issuer keys kept decompressed; keys beyond it are decompressed each time.
pub const ISSUER_KEYS_MAX: usize = 64;

impl CertificateCache {
    /// A cache holding at most `capacity` certificates (0 disables caching).
    pub fn new(capacity: usize) -> Self {
        CertificateCache {
            capacity,
            inner: Mutex::new(Inner::default()),
            issuer_keys: Mutex::new(Vec::new()),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (every mutation is a single insert or remove), so poisoning is ignored.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The device key of a certificate verified before with this issuer key
    /// and this signature.
    pub fn get(
        &self,
        cert_id: &CertId,
        issuer_public_key: &[u8; 32],
        issuer_signature: &[u8; 64],
    ) -> Option<VerifyingKey> {
        let inner = self.lock();
        let hit = inner.entries.get(cert_id)?;
        (hit.issuer_public_key == *issuer_public_key && hit.issuer_signature == *issuer_signature)
            .then_some(hit.device_key)
    }

    /// The issuer key with encoding `public_key` as a point, `None` when it
    /// names no point. The same answer as `VerifyingKey::from_bytes`, which
    /// is a function of the bytes alone.
    pub fn issuer_key(&self, public_key: &[u8; 32]) -> Option<VerifyingKey> {
        let mut known = self
            .issuer_keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, key)) = known.iter().find(|(bytes, _)| bytes == public_key) {
            return Some(*key);
        }
        let key = VerifyingKey::from_bytes(public_key).ok()?;
        if known.len() < ISSUER_KEYS_MAX {
            known.push((*public_key, key));
        }
        Some(key)
    }

    /// Records a successful verification, evicting the oldest entry when full.
    pub fn insert(
        &self,
        cert_id: CertId,
        issuer_public_key: [u8; 32],
        issuer_signature: [u8; 64],
        device_key: VerifyingKey,
    ) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        let verified = Verified {
            issuer_public_key,
            issuer_signature,
            device_key,
        };
        if inner.entries.insert(cert_id, verified).is_none() {
            inner.order.push_back(cert_id);
        }
        while inner.entries.len() > self.capacity {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            inner.entries.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> VerifyingKey {
        ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key()
    }

    #[test]
    fn stays_within_capacity_and_evicts_the_oldest() {
        let cache = CertificateCache::new(2);
        for i in 0..3u8 {
            cache.insert(CertId([i; 32]), [1; 32], [2; 64], key());
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&CertId([0; 32]), &[1; 32], &[2; 64]).is_none());
        assert!(cache.get(&CertId([2; 32]), &[1; 32], &[2; 64]).is_some());
    }

    #[test]
    fn a_different_signature_or_issuer_key_misses() {
        let cache = CertificateCache::new(4);
        cache.insert(CertId([9; 32]), [1; 32], [2; 64], key());
        assert!(cache.get(&CertId([9; 32]), &[1; 32], &[3; 64]).is_none());
        assert!(cache.get(&CertId([9; 32]), &[4; 32], &[2; 64]).is_none());
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache = CertificateCache::new(0);
        cache.insert(CertId([9; 32]), [1; 32], [2; 64], key());
        assert!(cache.is_empty());
    }

    #[test]
    fn issuer_keys_are_decompressed_once_and_kept_within_bounds() {
        let cache = CertificateCache::new(0);
        let first = key();
        assert_eq!(cache.issuer_key(first.as_bytes()), Some(first));
        assert_eq!(cache.issuer_key(first.as_bytes()), Some(first));
        assert_eq!(cache.issuer_keys.lock().expect("lock").len(), 1);
        // Bytes that name no point: refused, and not kept.
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        assert_eq!(
            cache.issuer_key(&not_a_point),
            VerifyingKey::from_bytes(&not_a_point).ok()
        );
        for i in 0..2 * ISSUER_KEYS_MAX as u8 {
            let k = ed25519_dalek::SigningKey::from_bytes(&[i + 10; 32]).verifying_key();
            assert_eq!(cache.issuer_key(k.as_bytes()), Some(k));
        }
        assert_eq!(
            cache.issuer_keys.lock().expect("lock").len(),
            ISSUER_KEYS_MAX
        );
    }
}
