//! The stored-entry format: how a [`CachedResponse`] is laid out as bytes in
//! Dragonfly. Only the encoding lives here; reading and writing keys is
//! `cache.rs`'s job.
//!
//! # Layout, version 1
//!
//! ```text
//! u8          version tag (1)
//! u16 BE      status
//! u64 BE      fetched_at, milliseconds since the Unix epoch
//! varint      header count
//!   varint    name length,  name bytes (UTF-8)
//!   varint    value length, value bytes (UTF-8)
//! varint      body length,  body bytes (raw)
//! ```
//!
//! Lengths are unsigned LEB128 varints: a typical header costs two bytes of
//! framing, and no length can be too large to encode, so `encode` is total.
//! The body is stored raw because GitHub bodies are JSON already and
//! base64 or a JSON envelope would inflate them by a third or more.
//! Nothing may follow the body; trailing bytes mean the value is not ours.
//!
//! # Versions read
//!
//! During a blue/green deploy two releases share one Dragonfly, so a build
//! reads the version it writes and the one before it ([`READABLE`]): a
//! release that changes the layout adds a new tag and keeps decoding the
//! old one, and neither slot deletes the other's entries as garbage.
//! Version 1 is both what this build writes and what the previous release
//! wrote; `previous_release_entries_are_still_read` holds bytes as that
//! release wrote them.
//!
//! Decoding only checks the framing (and bounds the header count, so a
//! hostile value cannot make it allocate much); whether an entry is one
//! chimney would serve is the domain's `CachedResponse::check`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::domain::{
    CachedResponse, HeaderList, MAX_BODY_BYTES, MAX_ENTRY_HEADERS, MAX_HEADER_NAME_BYTES,
    MAX_HEADER_VALUE_BYTES,
};

/// The version tag this build writes.
const VERSION_1: u8 = 1;

/// Every version tag this build reads: its own and the previous release's
/// (the same, until the layout next changes).
const READABLE: [u8; 1] = [VERSION_1];

/// Fixed-size part after the version tag: status (2) and fetched_at (8).
const FIXED_LEN: usize = 2 + 8;

/// The longest LEB128 encoding of a `u64`.
const MAX_VARINT_LEN: usize = 10;

/// The longest encoding of an entry that passes the domain's checks: a
/// stored value longer than this was not written by chimney, and readers
/// need not fetch more of it than this plus one byte to know.
pub const MAX_ENCODED_LEN: usize = 1
    + FIXED_LEN
    + MAX_VARINT_LEN
    + MAX_ENTRY_HEADERS * (2 * MAX_VARINT_LEN + MAX_HEADER_NAME_BYTES + MAX_HEADER_VALUE_BYTES)
    + MAX_VARINT_LEN
    + MAX_BODY_BYTES;

/// Why stored bytes could not be read back as a [`CachedResponse`].
///
/// The cache treats every variant the same way (a miss, and the value is
/// deleted); the variants exist so logs say what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The value was empty, so it carries no version tag.
    #[error("stored entry is empty")]
    Empty,
    /// The version tag is not one this build can read, e.g. written by a
    /// newer chimney during a rolling deploy.
    #[error("stored entry has unknown format version {0}")]
    UnknownVersion(u8),
    /// The value ended inside the named field.
    #[error("stored entry is truncated in {0}")]
    Truncated(&'static str),
    /// A length prefix does not fit in a `u64` or in this machine's memory.
    #[error("stored entry has an oversized length in {0}")]
    BadLength(&'static str),
    /// A header name or value is not UTF-8.
    #[error("stored entry has a header {0} that is not UTF-8")]
    InvalidUtf8(&'static str),
    /// The fetch time cannot be represented as a `SystemTime`.
    #[error("stored entry has an unrepresentable fetch time")]
    BadFetchTime,
    /// Bytes follow the body, so the value is not a version 1 entry.
    #[error("stored entry has {0} trailing bytes")]
    TrailingBytes(usize),
    /// More headers than any entry chimney stores.
    #[error("stored entry claims {0} headers")]
    TooManyHeaders(u64),
}

/// Encodes `entry` in the current format.
///
/// `fetched_at` is kept to the millisecond; a time before the Unix epoch
/// (never a real fetch) is stored as the epoch.
pub fn encode(entry: &CachedResponse) -> Vec<u8> {
    let headers_len: usize = entry
        .headers
        .iter()
        .map(|(n, v)| n.len() + v.len() + 2 * MAX_VARINT_LEN)
        .sum();
    let mut out =
        Vec::with_capacity(1 + FIXED_LEN + headers_len + 2 * MAX_VARINT_LEN + entry.body.len());
    out.push(VERSION_1);
    out.extend_from_slice(&entry.status.to_be_bytes());
    out.extend_from_slice(&unix_millis(entry.fetched_at).to_be_bytes());
    put_varint(&mut out, entry.headers.len() as u64);
    for (name, value) in entry.headers.iter() {
        put_bytes(&mut out, name.as_bytes());
        put_bytes(&mut out, value.as_bytes());
    }
    put_bytes(&mut out, &entry.body);
    out
}

/// Decodes bytes written by [`encode`], copying the body.
///
/// # Errors
/// Returns a [`WireError`] for an empty value, an unknown version,
/// truncation, a header that is not UTF-8, or trailing bytes. Never panics,
/// whatever the input.
pub fn decode(bytes: &[u8]) -> Result<CachedResponse, WireError> {
    decode_bytes(Bytes::copy_from_slice(bytes))
}

/// Decodes bytes written by [`encode`]; the body shares `bytes`' buffer
/// instead of being copied, which matters for multi-megabyte bodies.
///
/// # Errors
/// As [`decode`].
pub fn decode_bytes(bytes: Bytes) -> Result<CachedResponse, WireError> {
    let mut reader = Reader {
        buf: &bytes,
        pos: 0,
    };
    let version = reader.take(1, "version").map_err(|_| WireError::Empty)?[0];
    if !READABLE.contains(&version) {
        return Err(WireError::UnknownVersion(version));
    }
    let status = u16::from_be_bytes(reader.array("status")?);
    let fetched_ms = u64::from_be_bytes(reader.array("fetched_at")?);
    let fetched_at = UNIX_EPOCH
        .checked_add(Duration::from_millis(fetched_ms))
        .ok_or(WireError::BadFetchTime)?;

    let header_count = reader.varint("header count")?;
    if header_count > MAX_ENTRY_HEADERS as u64 {
        return Err(WireError::TooManyHeaders(header_count));
    }
    let mut headers = HeaderList::new();
    for _ in 0..header_count {
        let name = reader.utf8("header name", "name")?;
        let value = reader.utf8("header value", "value")?;
        headers.append(name, value);
    }

    let body_len = reader.length("body")?;
    let start = reader.pos;
    reader.take(body_len, "body")?;
    let body = bytes.slice(start..start + body_len);

    let trailing = bytes.len() - reader.pos;
    if trailing != 0 {
        return Err(WireError::TrailingBytes(trailing));
    }
    Ok(CachedResponse {
        status,
        headers,
        body,
        fetched_at,
    })
}

fn unix_millis(at: SystemTime) -> u64 {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A cursor over the stored bytes; every read checks the remaining length
/// first, which is what keeps hostile input from panicking.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        let remaining = self.buf.len() - self.pos;
        if len > remaining {
            return Err(WireError::Truncated(field));
        }
        let slice = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn varint(&mut self, field: &'static str) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        for i in 0..MAX_VARINT_LEN {
            let byte = self.take(1, field)?[0];
            let payload = u64::from(byte & 0x7f);
            let shift = 7 * i as u32;
            // The tenth byte may only contribute the top bit of a u64.
            if i == MAX_VARINT_LEN - 1 && payload > 1 {
                return Err(WireError::BadLength(field));
            }
            value |= payload << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::BadLength(field))
    }

    /// A length prefix, refused early when it exceeds what is left so a
    /// corrupt prefix can never drive a huge allocation or a long loop.
    fn length(&mut self, field: &'static str) -> Result<usize, WireError> {
        let len = self.varint(field)?;
        let len = usize::try_from(len).map_err(|_| WireError::BadLength(field))?;
        if len > self.buf.len() - self.pos {
            return Err(WireError::Truncated(field));
        }
        Ok(len)
    }

    fn utf8(&mut self, field: &'static str, part: &'static str) -> Result<&'a str, WireError> {
        let len = self.length(field)?;
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes).map_err(|_| WireError::InvalidUtf8(part))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(headers: &[(&str, &str)], body: Vec<u8>) -> CachedResponse {
        CachedResponse {
            status: 200,
            headers: headers.iter().copied().collect(),
            body: Bytes::from(body),
            fetched_at: UNIX_EPOCH + Duration::from_millis(1_717_171_717_171),
        }
    }

    fn typical() -> CachedResponse {
        entry(
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("etag", "W/\"abc\""),
                ("link", "</api/github/pulls?page=2>; rel=\"next\""),
            ],
            br#"[{"number":1}]"#.to_vec(),
        )
    }

    #[test]
    fn a_typical_entry_round_trips() {
        let original = typical();
        assert_eq!(decode(&encode(&original)), Ok(original));
    }

    #[test]
    fn an_empty_body_and_no_headers_round_trip() {
        let original = CachedResponse {
            status: 204,
            headers: HeaderList::new(),
            body: Bytes::new(),
            fetched_at: UNIX_EPOCH,
        };
        assert_eq!(decode(&encode(&original)), Ok(original));
    }

    #[test]
    fn repeated_headers_keep_their_order() {
        let original = entry(
            &[("link", "<a>"), ("etag", "\"e\""), ("link", "<b>")],
            b"{}".to_vec(),
        );
        let decoded = decode(&encode(&original)).expect("decodes");
        assert_eq!(
            decoded.headers.get_all("link").collect::<Vec<_>>(),
            ["<a>", "<b>"]
        );
        assert_eq!(decoded, original);
    }

    #[test]
    fn a_one_mebibyte_body_round_trips_byte_for_byte() {
        let body: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
        let original = entry(&[("etag", "\"big\"")], body);
        let encoded = encode(&original);
        assert_eq!(decode_bytes(Bytes::from(encoded)), Ok(original));
    }

    #[test]
    fn non_ascii_header_values_round_trip() {
        let original = entry(&[("x-note", "žąsis ✓")], b"x".to_vec());
        assert_eq!(decode(&encode(&original)), Ok(original));
    }

    #[test]
    fn fetch_time_is_kept_to_the_millisecond() {
        let mut original = typical();
        original.fetched_at = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let decoded = decode(&encode(&original)).expect("decodes");
        assert_eq!(
            decoded.fetched_at,
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
        );
    }

    #[test]
    fn a_ten_kilobyte_body_costs_at_most_two_hundred_bytes_of_framing() {
        let body = vec![b'a'; 10 * 1024];
        let encoded = encode(&typical_with_body(body.clone()));
        assert!(
            encoded.len() <= body.len() + 200,
            "encoded {} bytes for a {} byte body",
            encoded.len(),
            body.len()
        );
    }

    fn typical_with_body(body: Vec<u8>) -> CachedResponse {
        let mut e = typical();
        e.body = Bytes::from(body);
        e
    }

    #[test]
    fn an_empty_value_is_rejected() {
        assert_eq!(decode(&[]), Err(WireError::Empty));
    }

    #[test]
    fn an_unknown_version_is_rejected() {
        let mut encoded = encode(&typical());
        for version in [0, 2, 3, b'{', 0xff] {
            encoded[0] = version;
            assert_eq!(decode(&encoded), Err(WireError::UnknownVersion(version)));
        }
    }

    #[test]
    fn every_truncation_is_rejected() {
        let encoded = encode(&typical());
        for len in 1..encoded.len() {
            let result = decode(&encoded[..len]);
            assert!(
                matches!(result, Err(WireError::Truncated(_))),
                "prefix of {len} bytes gave {result:?}"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut encoded = encode(&typical());
        encoded.extend_from_slice(b"xx");
        assert_eq!(decode(&encoded), Err(WireError::TrailingBytes(2)));
    }

    #[test]
    fn a_header_that_is_not_utf8_is_rejected() {
        let original = entry(&[("etag", "ab")], Vec::new());
        let mut encoded = encode(&original);
        let at = encoded
            .windows(2)
            .position(|w| w == b"ab")
            .expect("value is in the encoding");
        encoded[at] = 0xff;
        assert_eq!(decode(&encoded), Err(WireError::InvalidUtf8("value")));

        let mut encoded = encode(&original);
        let at = encoded
            .windows(4)
            .position(|w| w == b"etag")
            .expect("name is in the encoding");
        encoded[at + 1] = 0xc3;
        assert_eq!(decode(&encoded), Err(WireError::InvalidUtf8("name")));
    }

    #[test]
    fn a_length_past_the_end_is_truncation_not_an_allocation() {
        let mut encoded = vec![VERSION_1, 0, 200];
        encoded.extend_from_slice(&0u64.to_be_bytes());
        encoded.push(0); // no headers
        put_varint(&mut encoded, u64::MAX >> 1); // body "length"
        assert_eq!(decode(&encoded), Err(WireError::Truncated("body")));
    }

    #[test]
    fn a_huge_header_count_fails_fast() {
        let mut encoded = vec![VERSION_1, 0, 200];
        encoded.extend_from_slice(&0u64.to_be_bytes());
        put_varint(&mut encoded, u64::MAX);
        assert_eq!(decode(&encoded), Err(WireError::TooManyHeaders(u64::MAX)));
        let mut encoded = vec![VERSION_1, 0, 200];
        encoded.extend_from_slice(&0u64.to_be_bytes());
        put_varint(&mut encoded, MAX_ENTRY_HEADERS as u64 + 1);
        encoded.extend_from_slice(&[1, b'a', 0].repeat(MAX_ENTRY_HEADERS + 1));
        encoded.push(0);
        assert!(matches!(
            decode(&encoded),
            Err(WireError::TooManyHeaders(_))
        ));
    }

    #[test]
    fn previous_release_entries_are_still_read() {
        // Written byte for byte as the previous release (version 1) laid
        // them out, not with this build's encoder, so a layout change that
        // forgets the old version fails here.
        let mut written = vec![1, 0x00, 0xc8];
        written.extend_from_slice(&1_717_171_717_171u64.to_be_bytes());
        written.push(2);
        for (name, value) in [("content-type", "application/json"), ("etag", "\"v1\"")] {
            written.push(name.len() as u8);
            written.extend_from_slice(name.as_bytes());
            written.push(value.len() as u8);
            written.extend_from_slice(value.as_bytes());
        }
        written.push(2);
        written.extend_from_slice(b"[]");
        let entry = decode(&written).expect("the previous release's entry decodes");
        assert_eq!(entry.status, 200);
        assert_eq!(entry.etag(), Some("\"v1\""));
        assert_eq!(&entry.body[..], b"[]");
        assert_eq!(
            entry.fetched_at,
            UNIX_EPOCH + Duration::from_millis(1_717_171_717_171)
        );
        assert_eq!(
            encode(&entry),
            written,
            "this build still writes it the same way"
        );
    }

    #[test]
    fn the_encoded_bound_covers_every_entry_the_domain_accepts() {
        let value = "v".repeat(MAX_HEADER_VALUE_BYTES);
        let headers: Vec<(&str, &str)> = vec![("link", value.as_str()); MAX_ENTRY_HEADERS];
        let largest = entry(&headers, vec![b'x'; MAX_BODY_BYTES]);
        assert!(encode(&largest).len() <= MAX_ENCODED_LEN);
    }

    #[test]
    fn an_overlong_varint_is_rejected() {
        let mut encoded = vec![VERSION_1, 0, 200];
        encoded.extend_from_slice(&0u64.to_be_bytes());
        encoded.extend_from_slice(&[0xff; 11]);
        assert_eq!(decode(&encoded), Err(WireError::BadLength("header count")));

        let mut encoded = vec![VERSION_1, 0, 200];
        encoded.extend_from_slice(&0u64.to_be_bytes());
        encoded.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]);
        assert_eq!(decode(&encoded), Err(WireError::BadLength("header count")));
    }

    #[test]
    fn varints_round_trip_at_their_boundaries() {
        for n in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            put_varint(&mut buf, n);
            let mut reader = Reader { buf: &buf, pos: 0 };
            assert_eq!(reader.varint("n"), Ok(n));
            assert_eq!(reader.pos, buf.len());
        }
    }

    #[test]
    fn arbitrary_garbage_never_panics() {
        // A small deterministic generator stands in for a fuzzer: any input,
        // including mutations of a valid entry, must decode or fail cleanly.
        let valid = encode(&typical());
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5_000 {
            let mut input = valid.clone();
            let flips = next() % 4 + 1;
            for _ in 0..flips {
                let at = (next() % input.len() as u64) as usize;
                input[at] = next() as u8;
            }
            let cut = (next() % (input.len() as u64 + 1)) as usize;
            let _ = decode(&input[..cut]);
        }
        let _ = decode(b"GARBAGE");
        let _ = decode(&[VERSION_1]);
    }
}
