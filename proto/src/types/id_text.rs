use std::fmt;

use crate::decode_error::{DecodeError, field};

/// An identifier (key id, wallet id, payee id): 1..=64 bytes of printable
/// ASCII (0x21..=0x7E). Only constructible through [`IdText::new`], so the
/// canonical encoding never meets an oversized or empty value.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdText(String);

impl IdText {
    /// Checks `text`; `field_name` names the field in the error.
    pub fn new(field_name: &str, text: impl Into<String>) -> Result<Self, DecodeError> {
        let text = text.into();
        field::id_text(field_name, &text)?;
        Ok(IdText(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for IdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
