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
}

impl CertificateCache {
    /// A cache holding at most `capacity` certificates (0 disables caching).
    pub fn new(capacity: usize) -> Self {
        CertificateCache {
            capacity,
            inner: Mutex::new(Inner::default()),
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
}
