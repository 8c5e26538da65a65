//! Protocol Buffers wire encoding for borrowed data: each message is written
//! once, through [`Out`], either into a buffer or into a byte counter, so
//! the length prefix of a nested message always matches what is written.
//! Varints come from `prost`; fields equal to their proto3 default are left
//! out, as `prost` does.

use prost::encoding::{WireType, encode_varint, encoded_len_varint};

/// Where a message's bytes go.
pub(super) trait Out {
    /// Appends raw bytes.
    fn raw(&mut self, bytes: &[u8]);

    /// Appends a varint.
    fn varint(&mut self, value: u64);

    /// Appends a length-delimited message field.
    fn message<M: Message + ?Sized>(&mut self, tag: u32, message: &M)
    where
        Self: Sized,
    {
        key(self, tag, WireType::LengthDelimited);
        self.varint(message.encoded_len() as u64);
        message.write(self);
    }
}

impl Out for Vec<u8> {
    fn raw(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    fn varint(&mut self, value: u64) {
        // Tags and most lengths fit one byte: skip the general loop.
        if value < 0x80 {
            self.push(value as u8);
        } else {
            encode_varint(value, self);
        }
    }
}

/// Counts the bytes a message would take.
struct Len(usize);

impl Out for Len {
    fn raw(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }

    fn varint(&mut self, value: u64) {
        self.0 += if value < 0x80 {
            1
        } else {
            encoded_len_varint(value)
        };
    }

    fn message<M: Message + ?Sized>(&mut self, tag: u32, message: &M) {
        let len = message.encoded_len();
        self.0 += encoded_len_varint(u64::from(tag << 3)) + encoded_len_varint(len as u64) + len;
    }
}

/// A message written straight from the data it describes.
pub(super) trait Message {
    /// Writes the message's fields (without a tag or length prefix).
    fn write<O: Out>(&self, out: &mut O);

    /// The size of [`Message::write`]'s output. A message written under
    /// several enclosing ones is measured once per enclosing level: the
    /// many small ones in a batch (a span, a log record) keep the result of
    /// [`measure`] instead.
    fn encoded_len(&self) -> usize {
        measure(self)
    }

    /// The message as a top-level protobuf payload.
    fn to_bytes(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.encoded_len());
        self.write(&mut buf);
        buf
    }
}

/// Counts the bytes `message` writes.
pub(super) fn measure<M: Message + ?Sized>(message: &M) -> usize {
    let mut len = Len(0);
    message.write(&mut len);
    len.0
}

fn key<O: Out>(out: &mut O, tag: u32, wire_type: WireType) {
    out.varint(u64::from(tag << 3 | wire_type as u32));
}

/// A `string` field; empty strings are left out.
pub(super) fn string<O: Out>(out: &mut O, tag: u32, value: &str) {
    if !value.is_empty() {
        string_always(out, tag, value);
    }
}

/// A `string` written even when empty (a `oneof` member).
pub(super) fn string_always<O: Out>(out: &mut O, tag: u32, value: &str) {
    bytes_always(out, tag, value.as_bytes());
}

/// A `bytes` field; empty ones are left out.
pub(super) fn bytes<O: Out>(out: &mut O, tag: u32, value: &[u8]) {
    if !value.is_empty() {
        bytes_always(out, tag, value);
    }
}

/// A `bytes` written even when empty (a `oneof` member).
pub(super) fn bytes_always<O: Out>(out: &mut O, tag: u32, value: &[u8]) {
    key(out, tag, WireType::LengthDelimited);
    out.varint(value.len() as u64);
    out.raw(value);
}

/// A `fixed64` field; zero is left out.
pub(super) fn fixed64<O: Out>(out: &mut O, tag: u32, value: u64) {
    if value != 0 {
        key(out, tag, WireType::SixtyFourBit);
        out.raw(&value.to_le_bytes());
    }
}

/// A `fixed32` field; zero is left out.
pub(super) fn fixed32<O: Out>(out: &mut O, tag: u32, value: u32) {
    if value != 0 {
        key(out, tag, WireType::ThirtyTwoBit);
        out.raw(&value.to_le_bytes());
    }
}

/// A `uint32`, `uint64` or non-negative `enum` field; zero is left out.
pub(super) fn uint<O: Out>(out: &mut O, tag: u32, value: u64) {
    if value != 0 {
        key(out, tag, WireType::Varint);
        out.varint(value);
    }
}

/// An `int64` written even when zero (a `oneof` member); negative values
/// take ten bytes, as protobuf's `int64` does.
pub(super) fn int64_always<O: Out>(out: &mut O, tag: u32, value: i64) {
    key(out, tag, WireType::Varint);
    out.varint(value as u64);
}

/// A `bool` written even when false (a `oneof` member).
pub(super) fn bool_always<O: Out>(out: &mut O, tag: u32, value: bool) {
    key(out, tag, WireType::Varint);
    out.varint(u64::from(value));
}

/// A `double` written even when zero (a `oneof` member).
pub(super) fn double_always<O: Out>(out: &mut O, tag: u32, value: f64) {
    key(out, tag, WireType::SixtyFourBit);
    out.raw(&value.to_bits().to_le_bytes());
}

/// Nanoseconds since the Unix epoch (0 before it), as OTLP timestamps are.
pub(super) fn unix_nanos(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sample<'a> {
        text: &'a str,
        nested: Option<&'a Sample<'a>>,
        number: i64,
    }

    impl Message for Sample<'_> {
        fn write<O: Out>(&self, out: &mut O) {
            string(out, 1, self.text);
            if let Some(nested) = self.nested {
                out.message(2, nested);
            }
            int64_always(out, 3, self.number);
        }
    }

    #[test]
    fn the_counted_length_is_the_written_length() {
        let inner = Sample {
            text: &"x".repeat(300),
            nested: None,
            number: -1,
        };
        let outer = Sample {
            text: "outer",
            nested: Some(&inner),
            number: 0,
        };
        assert_eq!(outer.to_bytes().len(), outer.encoded_len());
        assert_eq!(inner.to_bytes().len(), inner.encoded_len());
    }

    #[test]
    fn defaults_are_left_out_and_oneof_members_are_not() {
        let mut out = Vec::new();
        string(&mut out, 1, "");
        bytes(&mut out, 2, &[]);
        fixed64(&mut out, 3, 0);
        fixed32(&mut out, 4, 0);
        uint(&mut out, 5, 0);
        assert!(out.is_empty());
        bool_always(&mut out, 2, false);
        assert_eq!(out, [2 << 3, 0]);
    }
}
