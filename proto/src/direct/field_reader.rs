//! Protobuf wire fields, read without copying: the part of the wire format
//! the direct decoder takes (docs: <https://protobuf.dev/programming-guides/encoding/>).

/// The direct decoder does not take these bytes; decode them the general way
/// (`prost`), which either accepts them or says precisely what is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not decodable directly; decode the general way")]
pub struct NotDirect;

/// One field's value: a varint or a length-delimited slice of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValue<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

impl<'a> FieldValue<'a> {
    pub fn varint(self) -> Result<u64, NotDirect> {
        match self {
            FieldValue::Varint(v) => Ok(v),
            FieldValue::Bytes(_) => Err(NotDirect),
        }
    }

    /// A `uint32` field. prost truncates larger varints; refusing them
    /// keeps the direct decoder away from that rule.
    pub fn uint32(self) -> Result<u32, NotDirect> {
        u32::try_from(self.varint()?).map_err(|_| NotDirect)
    }

    pub fn bytes(self) -> Result<&'a [u8], NotDirect> {
        match self {
            FieldValue::Bytes(b) => Ok(b),
            FieldValue::Varint(_) => Err(NotDirect),
        }
    }

    /// A `string` field: prost refuses bytes that are not UTF-8.
    pub fn text(self) -> Result<&'a str, NotDirect> {
        std::str::from_utf8(self.bytes()?).map_err(|_| NotDirect)
    }
}

/// Sets a singular field once. protobuf lets a field appear twice (the last
/// scalar wins, messages merge); the direct decoder refuses that instead.
pub fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), NotDirect> {
    if slot.is_some() {
        return Err(NotDirect);
    }
    *slot = Some(value);
    Ok(())
}

/// The fields of one message, in wire order.
pub struct FieldReader<'a> {
    rest: &'a [u8],
}

/// A varint is at most 10 bytes (64 bits, 7 per byte).
const VARINT_BYTES_MAX: usize = 10;

impl<'a> FieldReader<'a> {
    pub fn new(message: &'a [u8]) -> Self {
        FieldReader { rest: message }
    }

    /// The next field's number and value; `None` at the end of the message.
    pub fn next_field(&mut self) -> Result<Option<(u32, FieldValue<'a>)>, NotDirect> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| NotDirect)?;
        if number == 0 {
            return Err(NotDirect);
        }
        let value = match key & 0b111 {
            0 => FieldValue::Varint(self.varint()?),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| NotDirect)?;
                if len > self.rest.len() {
                    return Err(NotDirect);
                }
                let (value, rest) = self.rest.split_at(len);
                self.rest = rest;
                FieldValue::Bytes(value)
            }
            // Fixed-width and group wire types: no field spentledger's
            // payments use has them.
            _ => return Err(NotDirect),
        };
        Ok(Some((number, value)))
    }

    /// A base-128 varint as prost reads one: up to 10 bytes, the tenth at
    /// most 1 (bit 63), non-minimal encodings allowed.
    fn varint(&mut self) -> Result<u64, NotDirect> {
        let mut value = 0u64;
        for (i, &byte) in self.rest.iter().take(VARINT_BYTES_MAX).enumerate() {
            if i == VARINT_BYTES_MAX - 1 && byte > 1 {
                return Err(NotDirect);
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.rest = &self.rest[i + 1..];
                return Ok(value);
            }
        }
        Err(NotDirect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(bytes: &[u8]) -> Result<Vec<(u32, FieldValue<'_>)>, NotDirect> {
        let mut reader = FieldReader::new(bytes);
        let mut out = Vec::new();
        while let Some(f) = reader.next_field()? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn reads_varint_and_length_delimited_fields() {
        // field 1 = 300 (varint), field 2 = "hi", field 3 = 0 written in 3 bytes.
        let bytes = [
            0x08, 0xac, 0x02, 0x12, 0x02, b'h', b'i', 0x18, 0x80, 0x80, 0x00,
        ];
        assert_eq!(
            fields(&bytes),
            Ok(vec![
                (1, FieldValue::Varint(300)),
                (2, FieldValue::Bytes(b"hi")),
                (3, FieldValue::Varint(0)),
            ])
        );
    }

    #[test]
    fn the_largest_varint_reads_and_one_bit_more_does_not() {
        let mut max = vec![0x08];
        max.extend([0xff; 9]);
        max.push(0x01);
        assert_eq!(fields(&max), Ok(vec![(1, FieldValue::Varint(u64::MAX))]));
        let mut over = max.clone();
        *over.last_mut().expect("ten bytes") = 0x02;
        assert_eq!(fields(&over), Err(NotDirect));
        let mut eleven = vec![0x08];
        eleven.extend([0x80; 10]);
        eleven.push(0x00);
        assert_eq!(fields(&eleven), Err(NotDirect));
    }

    #[test]
    fn refuses_truncation_other_wire_types_and_field_zero() {
        assert_eq!(
            fields(&[0x12, 0x05, b'a']),
            Err(NotDirect),
            "length past the end"
        );
        assert_eq!(fields(&[0x08, 0x80]), Err(NotDirect), "varint cut short");
        assert_eq!(
            fields(&[0x09, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(NotDirect),
            "fixed64"
        );
        assert_eq!(fields(&[0x0d, 0, 0, 0, 0]), Err(NotDirect), "fixed32");
        assert_eq!(fields(&[0x00, 0x01]), Err(NotDirect), "field number 0");
    }

    #[test]
    fn typed_reads_check_the_wire_type_range_and_utf8() {
        assert_eq!(FieldValue::Varint(1).bytes(), Err(NotDirect));
        assert_eq!(FieldValue::Bytes(b"x").varint(), Err(NotDirect));
        assert_eq!(
            FieldValue::Varint(u64::from(u32::MAX)).uint32(),
            Ok(u32::MAX)
        );
        assert_eq!(FieldValue::Varint(1 << 32).uint32(), Err(NotDirect));
        assert_eq!(FieldValue::Bytes(&[0xff]).text(), Err(NotDirect));
        let mut slot = None;
        assert_eq!(set_once(&mut slot, 1), Ok(()));
        assert_eq!(set_once(&mut slot, 2), Err(NotDirect));
    }
}
