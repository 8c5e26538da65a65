//! What one entry really holds in memory: every allocation behind it (the
//! body, each header name and value, the header list, the key and the
//! shared entry), each rounded up as the allocator rounds it. With the
//! entry's slot in the cache (see `cache.rs`) this is its weight, so the
//! tier's byte budget bounds the memory it takes.
//!
//! Counting only body and header text, as the first weigher did, left
//! the allocator's rounding and the per-entry structures out: with 8 KiB
//! bodies the tier's real size was about an eighth above its budget
//! (BENCHMARKS.md, Footprint).

use std::mem::size_of;

use bytes::Bytes;

use crate::domain::{CacheKey, CachedResponse};

/// The reference count and the entry behind its `Arc`.
const SHARED_ENTRY_BYTES: usize = 2 * size_of::<usize>() + size_of::<CachedResponse>();

/// The control block `Bytes` allocates once a body is shared (the copy
/// sent to a client and the one kept).
const SHARED_BODY_BYTES: usize = 4 * size_of::<usize>();

/// The bytes allocated for `key` and `entry`.
pub fn held_bytes(key: &CacheKey, entry: &CachedResponse) -> u64 {
    let headers: usize = entry
        .headers
        .iter()
        .map(|(name, value)| allocated(name.len()) + allocated(value.len()))
        .sum::<usize>()
        + allocated(entry.headers.len() * size_of::<(String, String)>());
    let total = allocated(key.as_str().len())
        + allocated(SHARED_ENTRY_BYTES)
        + headers
        + body_bytes(&entry.body);
    u64::try_from(total).unwrap_or(u64::MAX)
}

fn body_bytes(body: &Bytes) -> usize {
    if body.is_empty() {
        0
    } else {
        allocated(body.len()) + allocated(SHARED_BODY_BYTES)
    }
}

/// Objects up to this size come from the allocator's size classes; larger
/// ones get pages of their own.
const LARGEST_BINNED: usize = 512 * 1024;

/// Granularity of the pages of those larger objects.
const SLICE: usize = 64 * 1024;

/// What the allocator keeps at the start of a page before its first block:
/// its page record, rounded up to align power-of-two blocks.
const PAGE_INFO: usize = 256;

/// Blocks that are multiples of this start one whole OS page in.
const OS_PAGE: usize = 4 * 1024;

/// The memory a request of `size` bytes really takes under the binary's
/// allocator (mimalloc v3, `main.rs`): its size class (whole words up to
/// 64 bytes, then four classes per power of two) plus its share of the
/// space its page cannot use. A page holds one class: 64 KiB for blocks up
/// to 10 KiB, 512 KiB up to about 84 KiB, 4 MiB up to 512 KiB; larger
/// objects get their own run of 64 KiB slices. An 8 KiB block costs
/// 9,362 bytes: its 64 KiB page starts with 4 KiB of page record and
/// alignment, so it holds seven, not eight. glibc's malloc takes less for
/// every size, so this never undercounts under either.
pub fn allocated(size: usize) -> usize {
    if size == 0 {
        return 0;
    }
    if size > LARGEST_BINNED {
        return (size + PAGE_INFO).div_ceil(SLICE) * SLICE;
    }
    let block = size_class(size);
    let page = if block <= 10 * 1024 {
        64 * 1024
    } else if block <= (512 * 1024 - OS_PAGE) / 6 {
        512 * 1024
    } else {
        4 * 1024 * 1024
    };
    let start = if block.is_multiple_of(OS_PAGE) {
        OS_PAGE
    } else if block.is_power_of_two() {
        PAGE_INFO.next_multiple_of(block)
    } else {
        PAGE_INFO
    };
    let blocks = ((page - start) / block).max(1);
    page.div_ceil(blocks)
}

/// The allocator's block size for `size` bytes.
fn size_class(size: usize) -> usize {
    const WORD: usize = size_of::<usize>();
    let words = size.div_ceil(WORD);
    if words <= 8 {
        return words * WORD;
    }
    // The class step is a quarter of the power of two below `words`.
    let high_bit = usize::BITS - 1 - (words - 1).leading_zeros();
    let step = 1usize << (high_bit - 2);
    words.div_ceil(step) * step * WORD
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn entry(headers: &[(&str, &str)], body: usize) -> CachedResponse {
        CachedResponse::new(
            200,
            headers.iter().map(|(n, v)| (*n, (*v).to_owned())).collect(),
            Bytes::from(vec![b'x'; body]),
            SystemTime::now(),
        )
    }

    #[test]
    fn sizes_round_up_to_the_allocator_classes() {
        assert_eq!(size_class(1), 8);
        assert_eq!(size_class(64), 64);
        assert_eq!(size_class(65), 80);
        assert_eq!(size_class(8192), 8192);
        assert_eq!(size_class(8193), 10_240);
        assert_eq!(size_class(15_658), 16_384);
        for size in (1..LARGEST_BINNED).step_by(97) {
            let block = size_class(size);
            assert!(
                block >= size && block <= size + size / 4 + 8,
                "{size}: {block}"
            );
        }
    }

    #[test]
    fn a_block_also_pays_its_share_of_its_page() {
        assert_eq!(allocated(0), 0);
        // Seven 8 KiB blocks fit in a 64 KiB page after its first 4 KiB.
        assert_eq!(allocated(8192), 65_536usize.div_ceil(7));
        // Small blocks waste almost nothing.
        assert!(allocated(24) <= 25, "{}", allocated(24));
        // Every size costs at least its class, and never a third more.
        for size in (1..2 * LARGEST_BINNED).step_by(101) {
            let cost = allocated(size);
            assert!(cost >= size, "{size}: {cost}");
            assert!(cost <= size + size / 3 + 64, "{size}: {cost}");
        }
        // Objects above 512 KiB take whole 64 KiB slices.
        assert_eq!(allocated(1024 * 1024), 17 * 64 * 1024);
    }

    #[test]
    fn the_weight_counts_the_key_and_every_header() {
        let key = |s: &str| CacheKey::from_stored(s.to_owned());
        let bare = entry(&[], 8192);
        let base = held_bytes(&key("/k"), &bare);
        assert!(base >= 8192 + 16, "{base}");

        // A longer key weighs more, by at least its extra bytes.
        let long_key = key(&format!("/k{}", "x".repeat(1000)));
        assert!(held_bytes(&long_key, &bare) >= base + 1000);

        // Headers weigh their names, values and list, not just their text.
        let etag = "W/\"0123456789abcdef0123456789abcdef\"";
        let with_headers = entry(
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("etag", etag),
                (
                    "link",
                    &"<https://api.github.com/x?page=2>; rel=\"next\", ".repeat(20),
                ),
            ],
            8192,
        );
        let text: usize = with_headers
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .sum();
        let weight = held_bytes(&key("/k"), &with_headers);
        assert!(
            weight >= base + (text + 3 * size_of::<(String, String)>()) as u64,
            "{weight} for {text} bytes of header text over {base}"
        );
    }

    #[test]
    fn a_body_is_counted_as_allocated() {
        let key = CacheKey::from_stored("/k".to_owned());
        let small = held_bytes(&key, &entry(&[], 1000));
        let page_bound = held_bytes(&key, &entry(&[], 8192));
        assert_eq!(
            page_bound - small,
            (allocated(8192) - allocated(1000)) as u64,
            "the body's allocation, page share included"
        );
        assert!(allocated(8192) > 9000);
    }
}
