//! Parquet's RLE / bit-packing hybrid encoding, written a group of eight values at a time.
//!
//! [`encode`] writes the bytes [`parquet::encodings::rle::RleEncoder`] writes for the same
//! values (its `put` for each, then `consume`), so that the column chunks of
//! [`super::dict_column`] stay byte for byte the ones parquet-rs's column writer makes. That
//! encoder decides value by value (a branch for the repeat count, a buffer of eight, a
//! bit-writer call per value), which was a fifth of encoding a dictionary column's keys and
//! definition levels; its decisions only ever fall at the start of a group of eight, so they
//! can be taken once per group:
//!
//! - Groups start at the first value and after each RLE run. A group of eight equal values
//!   starts an RLE run, which takes every following equal value: `(length << 1)` as a VLQ,
//!   then the value in `ceil(bit_width / 8)` little-endian bytes.
//! - Any other group is bit-packed (`bit_width` bytes, least significant bits first) into the
//!   open bit-packed run, whose header byte `(groups << 1) | 1` is reserved when it opens and
//!   written when it closes: before an RLE run, at the end, or at 63 groups.
//! - Fewer than eight values at the end are an RLE run when they are equal and no bit-packed
//!   run is open, and otherwise a last group padded with zeros.

/// Values in a bit-packed group.
const GROUP: usize = 8;
/// Groups after which parquet-rs closes a bit-packed run (`MAX_GROUPS_PER_BIT_PACKED_RUN - 1`).
const MAX_GROUPS: usize = 63;

/// Append the hybrid encoding of `values`, each below `2^bit_width` (at most 32), to `out`.
pub fn encode<T: Copy + Eq + Into<u64>>(values: &[T], bit_width: u8, out: &mut Vec<u8>) {
    debug_assert!(bit_width <= 32);
    let w = bit_width as usize;
    // Where the open bit-packed run's header byte is, and how many groups it holds.
    let mut open: Option<(usize, usize)> = None;
    let close = |out: &mut Vec<u8>, open: &mut Option<(usize, usize)>| {
        if let Some((at, groups)) = open.take() {
            out[at] = ((groups << 1) | 1) as u8;
        }
    };
    let mut i = 0;
    while i + GROUP <= values.len() {
        let group = &values[i..i + GROUP];
        let v = group[0];
        if group.iter().all(|&x| x == v) {
            let len = values[i + GROUP..].iter().take_while(|&&x| x == v).count() + GROUP;
            close(out, &mut open);
            run(out, len, v.into(), w);
            i += len;
            continue;
        }
        let groups = open_run(out, &mut open);
        *groups += 1;
        pack(out, group, w);
        if *groups >= MAX_GROUPS {
            close(out, &mut open);
        }
        i += GROUP;
    }
    let tail = &values[i..];
    match tail.first() {
        Some(&v) if open.is_none() && tail.iter().all(|&x| x == v) => {
            run(out, tail.len(), v.into(), w);
        }
        Some(_) => {
            *open_run(out, &mut open) += 1;
            let mut padded = [0u64; GROUP];
            for (p, &x) in padded.iter_mut().zip(tail) {
                *p = x.into();
            }
            pack(out, &padded, w);
            close(out, &mut open);
        }
        None => close(out, &mut open),
    }
}

/// The open bit-packed run's group count, opening one (its header byte reserved) if none is.
fn open_run<'a>(out: &mut Vec<u8>, open: &'a mut Option<(usize, usize)>) -> &'a mut usize {
    &mut open
        .get_or_insert_with(|| {
            out.push(0);
            (out.len() - 1, 0)
        })
        .1
}

/// An RLE run of `len` values `value` of `w` bits: its length as a VLQ (shifted left one,
/// the low bit 0), then the value in `ceil(w / 8)` bytes. What [`encode`] writes for `len`
/// (at least one) equal values.
pub fn run(out: &mut Vec<u8>, len: usize, value: u64, w: usize) {
    vlq(out, (len as u64) << 1);
    out.extend_from_slice(&value.to_le_bytes()[..w.div_ceil(8)]);
}

/// `v` as an unsigned VLQ (ULEB128): seven bits a byte, least significant first, the high
/// bit set on every byte but the last.
pub fn vlq(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bits needed for values up to `max` (0 for 0), as parquet counts them.
pub fn bit_width(max: u64) -> u8 {
    (u64::BITS - max.leading_zeros()) as u8
}

/// Append a dictionary-encoded data page's values: the bit width of keys below `entries`
/// (the dictionary's size when the page ends), then `keys` at that width. Room for their
/// worst case is reserved first, so that the buffer grows at most once.
pub fn encode_keys(keys: &[u32], entries: usize, out: &mut Vec<u8>) {
    let w = bit_width(entries.saturating_sub(1) as u64);
    out.reserve(1 + parquet::encodings::rle::RleEncoder::max_buffer_size(w, keys.len()));
    out.push(w);
    encode(keys, w, out);
}

/// Eight values of `w` bits each, least significant bits first: `w` bytes.
#[inline]
fn pack<T: Copy + Into<u64>>(out: &mut Vec<u8>, group: &[T], w: usize) {
    debug_assert_eq!(group.len(), GROUP);
    // The whole word is appended and the bytes past `w` cut off again: a copy of a fixed
    // size is a store, one of `w` bytes a `memcpy` call.
    let end = out.len() + w;
    if w <= 8 {
        let mut acc = 0u64;
        for (n, &v) in group.iter().enumerate() {
            acc |= v.into() << (n * w);
        }
        out.extend_from_slice(&acc.to_le_bytes());
        out.truncate(end);
    } else if w <= 16 {
        // 8 × 16 bits fit one u128.
        let mut acc = 0u128;
        for (n, &v) in group.iter().enumerate() {
            acc |= u128::from(v.into()) << (n * w);
        }
        out.extend_from_slice(&acc.to_le_bytes());
        out.truncate(end);
    } else {
        let mut acc = 0u128;
        let mut bits = 0;
        for &v in group {
            acc |= u128::from(v.into()) << bits;
            bits += w;
            if bits >= 64 {
                out.extend_from_slice(&(acc as u64).to_le_bytes());
                acc >>= 64;
                bits -= 64;
            }
        }
        out.extend_from_slice(&acc.to_le_bytes()[..bits / 8]);
    }
}

#[cfg(test)]
mod tests {
    use parquet::encodings::rle::RleEncoder;
    use proptest::prelude::*;

    use super::*;

    /// What parquet-rs's encoder writes for `values` after `prefix`.
    fn parquet_rs(values: &[u32], w: u8, prefix: &[u8]) -> Vec<u8> {
        let mut e = RleEncoder::new_from_buf(w, prefix.to_vec());
        for &v in values {
            e.put(u64::from(v));
        }
        e.consume()
    }

    fn ours(values: &[u32], w: u8, prefix: &[u8]) -> Vec<u8> {
        let mut out = prefix.to_vec();
        encode(values, w, &mut out);
        out
    }

    /// Values with runs of every length around the group size, at every offset.
    fn runs() -> impl Strategy<Value = (u8, Vec<u32>)> {
        (0u8..=32).prop_flat_map(|w| {
            let max = if w == 0 { 0 } else { u32::MAX >> (32 - w) };
            // Few distinct values, so that runs happen; some values at the width's maximum.
            let value = prop_oneof![0..=max.min(3), Just(max), 0..=max];
            let run = (
                value,
                prop_oneof![1usize..=3, 7usize..=10, 15usize..=17, 1usize..=600],
            );
            (Just(w), prop::collection::vec(run, 0..40)).prop_map(|(w, runs)| {
                let values = runs
                    .into_iter()
                    .flat_map(|(v, n)| std::iter::repeat_n(v, n))
                    .collect();
                (w, values)
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn same_bytes_as_parquet_rs((w, values) in runs()) {
            prop_assert_eq!(ours(&values, w, &[]), parquet_rs(&values, w, &[]));
        }
    }

    #[test]
    fn edge_cases() {
        let cases: Vec<(u8, Vec<u32>)> = vec![
            (1, vec![]),
            (0, vec![0; 5]),
            (0, vec![0; 1000]),
            (3, vec![1, 1, 1]),
            (3, vec![1, 2, 1]),
            // 63 groups of distinct values: the run closes at 63, the next opens.
            (8, (0..63 * 8 + 3).map(|i| i % 200).collect()),
            (8, (0..64 * 8).map(|i| i % 200).collect()),
            (8, (0..126 * 8).map(|i| i % 200).collect()),
            // A bit-packed run, then equal values at the end (no RLE: a run is open).
            (4, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9]),
            // Equal values that straddle a group boundary are bit-packed.
            (4, vec![1, 2, 3, 4, 5, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 2]),
            (20, vec![0xf_ffff; 7]),
            (32, vec![u32::MAX, 0, u32::MAX, 1, 2, 3, 4, 5, 6]),
            (17, (0..100).collect()),
            // An RLE run longer than a one-byte VLQ.
            (2, vec![3; 100_000]),
        ];
        for (w, values) in cases {
            assert_eq!(
                ours(&values, w, b"xy"),
                parquet_rs(&values, w, b"xy"),
                "{w} {values:?}"
            );
        }
    }

    #[test]
    fn a_run_is_what_equal_values_encode_to() {
        for (len, value, w) in [
            (1, 1, 1),
            (7, 1, 1),
            (8, 0, 1),
            (100_000, 1, 1),
            (300, 5, 12),
        ] {
            let mut out = Vec::new();
            run(&mut out, len, value as u64, w as usize);
            assert_eq!(
                out,
                parquet_rs(&vec![value; len], w, &[]),
                "{len} × {value}"
            );
        }
    }

    #[test]
    fn levels_as_u8() {
        let levels: Vec<u8> = (0..1000).map(|i| u8::from(i % 37 != 0)).collect();
        let wide: Vec<u32> = levels.iter().map(|&l| u32::from(l)).collect();
        let mut out = Vec::new();
        encode(&levels, 1, &mut out);
        assert_eq!(out, parquet_rs(&wide, 1, &[]));
    }
}
