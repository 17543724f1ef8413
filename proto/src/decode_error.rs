//! Typed errors for malformed wire data: every error names the field.

use std::fmt;

/// What is wrong with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeProblem {
    /// A required message or value is absent (or zero where zero is not allowed).
    Missing,
    /// A fixed-size byte field has the wrong length.
    WrongLength { expected: usize, actual: usize },
    /// A variable-size field is longer than its limit.
    TooLong { max: usize, actual: usize },
    /// A repeated field has more elements than its limit.
    TooMany { max: usize, actual: usize },
    /// A number is outside its allowed range.
    OutOfRange { detail: &'static str },
    /// Text outside the allowed alphabet.
    InvalidText { detail: &'static str },
    /// An enum value that this version does not know.
    UnknownEnum { value: i32 },
    /// Bytes that are not a valid curve point, signature or similar.
    Invalid { detail: &'static str },
}

/// A malformed field, with its path inside the message (e.g. `inputs[2].path[0]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DecodeError {
    pub field: String,
    pub problem: DecodeProblem,
}

impl DecodeError {
    pub fn new(field: impl Into<String>, problem: DecodeProblem) -> Self {
        DecodeError {
            field: field.into(),
            problem,
        }
    }

    pub fn missing(field: impl Into<String>) -> Self {
        Self::new(field, DecodeProblem::Missing)
    }

    /// Prefix the field path with the enclosing field, so nested errors read
    /// `payments[3].certificate.device_key`.
    pub fn within(mut self, parent: impl fmt::Display) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }

    /// True when the error is a size limit rather than a malformed value.
    pub fn is_limit(&self) -> bool {
        matches!(
            self.problem,
            DecodeProblem::TooLong { .. } | DecodeProblem::TooMany { .. }
        )
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = &self.field;
        match &self.problem {
            DecodeProblem::Missing => write!(f, "{field}: missing"),
            DecodeProblem::WrongLength { expected, actual } => {
                write!(f, "{field}: expected {expected} bytes, got {actual}")
            }
            DecodeProblem::TooLong { max, actual } => {
                write!(f, "{field}: {actual} bytes, at most {max} allowed")
            }
            DecodeProblem::TooMany { max, actual } => {
                write!(f, "{field}: {actual} elements, at most {max} allowed")
            }
            DecodeProblem::OutOfRange { detail } => write!(f, "{field}: out of range: {detail}"),
            DecodeProblem::InvalidText { detail } => write!(f, "{field}: invalid text: {detail}"),
            DecodeProblem::UnknownEnum { value } => {
                write!(f, "{field}: unknown enum value {value}")
            }
            DecodeProblem::Invalid { detail } => write!(f, "{field}: invalid: {detail}"),
        }
    }
}

/// Checks for wire fields, shared by every conversion from protobuf (and by
/// the node for the fields of its own commands).
pub mod field {
    use super::{DecodeError, DecodeProblem};
    use crate::limits::ID_TEXT_BYTES_MAX;

    /// A fixed-size byte field.
    pub fn fixed<const N: usize>(name: &str, bytes: &[u8]) -> Result<[u8; N], DecodeError> {
        bytes.try_into().map_err(|_| {
            DecodeError::new(
                name,
                DecodeProblem::WrongLength {
                    expected: N,
                    actual: bytes.len(),
                },
            )
        })
    }

    /// A required sub-message.
    pub fn required<'a, T>(name: &str, value: &'a Option<T>) -> Result<&'a T, DecodeError> {
        value.as_ref().ok_or_else(|| DecodeError::missing(name))
    }

    /// An identifier: 1..=64 bytes of printable ASCII without spaces.
    pub fn id_text(name: &str, text: &str) -> Result<(), DecodeError> {
        id_text_within(name, text, ID_TEXT_BYTES_MAX)
    }

    pub fn id_text_within(name: &str, text: &str, max: usize) -> Result<(), DecodeError> {
        if text.is_empty() {
            return Err(DecodeError::missing(name));
        }
        if text.len() > max {
            return Err(DecodeError::new(
                name,
                DecodeProblem::TooLong {
                    max,
                    actual: text.len(),
                },
            ));
        }
        if !text.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(DecodeError::new(
                name,
                DecodeProblem::InvalidText {
                    detail: "only printable ASCII 0x21..=0x7E is allowed",
                },
            ));
        }
        Ok(())
    }

    /// Free text (a reason): 1..=`max` bytes, no control characters.
    pub fn free_text(name: &str, text: &str, max: usize) -> Result<(), DecodeError> {
        if text.trim().is_empty() {
            return Err(DecodeError::missing(name));
        }
        if text.len() > max {
            return Err(DecodeError::new(
                name,
                DecodeProblem::TooLong {
                    max,
                    actual: text.len(),
                },
            ));
        }
        if text.chars().any(char::is_control) {
            return Err(DecodeError::new(
                name,
                DecodeProblem::InvalidText {
                    detail: "control characters are not allowed",
                },
            ));
        }
        Ok(())
    }

    /// A repeated field with a size limit.
    pub fn at_most<T>(name: &str, items: &[T], max: usize) -> Result<(), DecodeError> {
        if items.len() > max {
            return Err(DecodeError::new(
                name,
                DecodeProblem::TooMany {
                    max,
                    actual: items.len(),
                },
            ));
        }
        Ok(())
    }
}
