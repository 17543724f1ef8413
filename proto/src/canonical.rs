//! Canonical bytes: the only bytes that are ever hashed or signed.
//!
//! A canonical encoding is a version byte followed by fixed-width little-endian
//! integers, fixed-size byte strings, and length-prefixed text, in a fixed
//! field order (docs/PROTOCOL.md, "Canonical encoding"). It is injective: two
//! different values never share an encoding, which is what makes the ids
//! collision-free as long as BLAKE3 is.

/// The encoding version byte that opens every canonical structure.
pub const ENCODING_VERSION: u8 = 1;

/// Appends canonical fields to a byte buffer.
#[derive(Debug, Default)]
pub struct CanonicalWriter {
    bytes: Vec<u8>,
}

impl CanonicalWriter {
    /// Starts a structure: writes the version byte.
    pub fn new(capacity: usize) -> Self {
        let mut bytes = Vec::with_capacity(capacity);
        bytes.push(ENCODING_VERSION);
        CanonicalWriter { bytes }
    }

    pub fn u16(&mut self, value: u16) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub fn u32(&mut self, value: u32) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// A fixed-size byte string: no length prefix, its size is implied by the field.
    pub fn fixed(&mut self, bytes: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(bytes);
        self
    }

    /// Text of at most 255 bytes, prefixed with its length as one byte. Every
    /// text field of the protocol is limited to 64 bytes before it gets here.
    pub fn short_text(&mut self, text: &str) -> &mut Self {
        let len = u8::try_from(text.len()).expect("protocol text fields are at most 64 bytes");
        self.bytes.push(len);
        self.bytes.extend_from_slice(text.as_bytes());
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}
