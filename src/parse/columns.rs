//! Columns of a chunk being parsed, appended to inline from a parser's field loop: strings,
//! plain ([`StrCol`]) or interned as they are built ([`DictCol`]) for the columns a table
//! dictionary-encodes, and numbers ([`NumCol`]).

use arrow::array::builder::BooleanBufferBuilder;
use arrow::array::{DictionaryArray, Int32Array, PrimitiveArray, StringArray};
use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{ArrowPrimitiveType, Int32Type};
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use std::hash::BuildHasher;
use std::sync::Arc;

use crate::lake::dict_column::same;

/// A string column of a chunk being built: what `StringBuilder` keeps (value bytes, end
/// offsets, validity), appended to inline from the field loop. `StringBuilder::append_value`
/// was an out-of-line call with its own capacity and overflow checks for each of the ~15
/// values of a line (5% of an ingest's instructions).
pub(crate) struct StrCol {
    bytes: Vec<u8>,
    /// `offsets[i + 1]` ends value `i`; starts with 0.
    offsets: Vec<i32>,
    /// The NULL rows ([`validity`]).
    nulls: Vec<u32>,
}

/// The validity of `rows` rows of which `nulls` (ascending) are NULL. Columns are NULL on few
/// rows or none: recording those rows costs less than a bit appended on every row (arrow's
/// `NullBufferBuilder` appends each once the first NULL is seen).
fn validity(rows: usize, nulls: &[u32]) -> Option<NullBuffer> {
    if nulls.is_empty() {
        return None;
    }
    let mut bits = BooleanBufferBuilder::new(rows);
    bits.append_n(rows, true);
    for &r in nulls {
        bits.set_bit(r as usize, false);
    }
    Some(NullBuffer::new(bits.finish()))
}

impl StrCol {
    pub(crate) fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        StrCol {
            bytes: Vec::with_capacity(bytes),
            offsets,
            nulls: Vec::new(),
        }
    }

    #[inline(always)]
    pub(crate) fn end(&self) -> i32 {
        i32::try_from(self.bytes.len()).expect("a chunk's column holds under 2 GiB")
    }

    #[inline(always)]
    pub(crate) fn push(&mut self, v: &str) {
        self.bytes.extend_from_slice(v.as_bytes());
        self.offsets.push(self.end());
    }

    #[inline(always)]
    pub(crate) fn push_null(&mut self) {
        self.nulls.push((self.offsets.len() - 1) as u32);
        self.offsets.push(self.end());
    }

    pub(crate) fn value_bytes(&self) -> usize {
        self.bytes.len()
    }

    #[inline(always)]
    pub(crate) fn value(&self, i: usize) -> &[u8] {
        &self.bytes[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    pub(crate) fn finish(self) -> StringArray {
        let nulls = validity(self.offsets.len() - 1, &self.nulls);
        // SAFETY: the offsets start at 0 and never decrease (each is the byte count after a
        // value), the last is the bytes' length, and every value appended was a `&str`, so
        // each offset range is valid UTF-8; there is one offset more than there are values.
        unsafe {
            StringArray::new_unchecked(
                OffsetBuffer::new_unchecked(ScalarBuffer::from(self.offsets)),
                Buffer::from_vec(self.bytes),
                nulls,
            )
        }
    }
}

/// A number column of a chunk: what arrow's `PrimitiveBuilder` keeps, appended to inline (its
/// `append_value` was an out-of-line call per value, and its validity a bit per row).
pub(crate) struct NumCol<T: ArrowPrimitiveType> {
    values: Vec<T::Native>,
    /// The NULL rows ([`validity`]); their values are the type's default.
    nulls: Vec<u32>,
}

impl<T: ArrowPrimitiveType> NumCol<T> {
    pub(crate) fn with_capacity(rows: usize) -> Self {
        NumCol {
            values: Vec::with_capacity(rows),
            nulls: Vec::new(),
        }
    }

    #[inline(always)]
    pub(crate) fn push(&mut self, v: T::Native) {
        self.values.push(v);
    }

    #[inline(always)]
    pub(crate) fn push_null(&mut self) {
        self.nulls.push(self.values.len() as u32);
        self.values.push(T::Native::default());
    }

    pub(crate) fn finish(self) -> PrimitiveArray<T> {
        let nulls = validity(self.values.len(), &self.nulls);
        PrimitiveArray::new(ScalarBuffer::from(self.values), nulls)
    }
}

/// A string column of a chunk interned as it is built: each distinct value stored once, and a
/// dictionary key per row. Most of an access log's bytes are values that repeat from line to
/// line (owners, buckets, requesters, user agents, referrers, host headers): copied per row
/// they were half a parsed row's memory, every page of it faulted in fresh while a day's rows
/// wait to be written, and the writer then hashed each row's copy again, cold, to build the
/// file's dictionary ([`crate::lake::dict_column`], which maps a chunk's keys instead).
/// The line is in cache while it is parsed: hashing it here costs less.
pub(crate) struct DictCol {
    values: StrCol,
    table: HashTable<u32>,
    hashes: Vec<u64>,
    keys: Vec<i32>,
    /// The NULL rows ([`validity`]); their keys are 0.
    nulls: Vec<u32>,
    /// Whether a value is first compared with the row before's (see [`DictCol::push`]).
    compare_last: bool,
    /// Values pushed since `compare_last` and `use_recent` were last decided, how many of
    /// them were the row before's, and how many were found in `recent`.
    pushed: u32,
    repeats: u32,
    recent_hits: u32,
    /// Periods of `PERIOD` values so far.
    periods: u32,
    /// Whether values are looked up in `recent` before being hashed.
    use_recent: bool,
    /// The key last interned for each [`fingerprint`] slot: `(fingerprint, key)`, `u32::MAX`
    /// for none yet.
    recent: Box<[(u64, u32); RECENT]>,
}

/// Slots of [`DictCol::recent`] (a power of two).
const RECENT: usize = 64;

/// The slot of [`DictCol::recent`] for fingerprint `fp`: its top bits, the best mixed.
#[inline(always)]
fn recent_slot(fp: u64) -> usize {
    (fp >> (64 - RECENT.trailing_zeros())) as usize
}

/// A value's fingerprint: a cheap mix of its length and its first and last 8 bytes (or what
/// it has of them). Owners, requesters, agents and host headers are 20 to 110 bytes long and
/// a column holds a few dozen of them in a chunk: looking a value up by fingerprint in
/// [`DictCol::recent`] and comparing it with the one value found there costs less than
/// hashing it whole and probing the table. Values that share their ends share a fingerprint
/// (request URIs end in ` HTTP/1.1`): then the comparison fails and the value is hashed.
#[inline(always)]
fn fingerprint(v: &[u8]) -> u64 {
    let n = v.len();
    let word = |i: usize| u64::from_le_bytes(v[i..i + 8].try_into().expect("8 bytes"));
    let half = |i: usize| u64::from(u32::from_le_bytes(v[i..i + 4].try_into().expect("4")));
    let (a, b) = match n {
        8.. => (word(0), word(n - 8)),
        4..8 => (half(0), half(n - 4)),
        _ => (v.iter().rev().fold(0, |x, &c| x << 8 | u64::from(c)), 0),
    };
    (a ^ b.rotate_left(31) ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Values after which [`DictCol`] decides again whether to compare with the row before.
const PERIOD: u32 = 1024;

/// The hasher of [`DictCol`].
const INTERN: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x5ec1a4e);

impl DictCol {
    /// For `rows` rows whose distinct values take about `bytes`: room for as many values as
    /// that many bytes hold at 16 bytes each (object keys and request URIs are mostly
    /// distinct within a chunk; a table that grows rehashes everything it holds).
    pub(crate) fn with_capacity(rows: usize, bytes: usize) -> Self {
        let values = (bytes / 16).clamp(64, rows.max(64));
        DictCol {
            values: StrCol::with_capacity(values, bytes),
            table: HashTable::with_capacity(values),
            hashes: Vec::with_capacity(values),
            keys: Vec::with_capacity(rows),
            nulls: Vec::new(),
            compare_last: true,
            pushed: 0,
            repeats: 0,
            recent_hits: 0,
            periods: 0,
            use_recent: true,
            recent: Box::new([(0, u32::MAX); RECENT]),
        }
    }

    #[inline(always)]
    pub(crate) fn push(&mut self, v: &str) {
        let v = v.as_bytes();
        // Many columns hold a handful of values, one of them most of the time (signature and
        // TLS versions, owners, authentication types): no hashing when the row before had it.
        // But where rows alternate between values the comparison is a branch the CPU cannot
        // predict, and costs more than it saves (1M generated lines, whose owners, buckets and
        // agents are drawn at random: user time -6% without it). So it is made only while at
        // least three rows in four repeat the row before, counted over the last `PERIOD`.
        if self.compare_last
            && let Some(&last) = self.keys.last()
            && self.holds(last as u32, v)
        {
            self.push_key(last as u32, self.use_recent);
            return;
        }
        // Then the value last seen with its fingerprint, while that finds at least half the
        // values (tried again every eighth period when it does not).
        let fp = if self.use_recent {
            let fp = fingerprint(v);
            let (seen, k) = self.recent[recent_slot(fp)];
            if seen == fp && self.holds(k, v) {
                self.push_key(k, true);
                return;
            }
            Some(fp)
        } else {
            None
        };
        let hash = INTERN.hash_one(v);
        let DictCol {
            values,
            table,
            hashes,
            ..
        } = self;
        let key = match table.entry(
            hash,
            |&k| same(values.value(k as usize), v),
            |&k| hashes[k as usize],
        ) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                let k = hashes.len() as u32;
                // SAFETY: `v` is the bytes of the `&str` this was called with.
                values.push(unsafe { std::str::from_utf8_unchecked(v) });
                hashes.push(hash);
                e.insert(k);
                k
            }
        };
        if let Some(fp) = fp {
            self.recent[recent_slot(fp)] = (fp, key);
        }
        self.push_key(key, false);
    }

    /// Whether `key` is interned and holds `v`.
    #[inline(always)]
    fn holds(&self, key: u32, v: &[u8]) -> bool {
        (key as usize) < self.hashes.len() && same(self.values.value(key as usize), v)
    }

    /// Append a row of `key`, counting it (whether it was the row before's, whether `recent`
    /// found it); every `PERIOD` values decide whether to compare the next ones with the row
    /// before and to look them up in `recent`.
    #[inline(always)]
    fn push_key(&mut self, key: u32, recent: bool) {
        let repeat = self.keys.last() == Some(&(key as i32));
        self.keys.push(key as i32);
        self.repeats += u32::from(repeat);
        self.recent_hits += u32::from(recent);
        self.pushed += 1;
        if self.pushed == PERIOD {
            self.compare_last = self.repeats >= PERIOD / 4 * 3;
            self.periods = self.periods.wrapping_add(1);
            self.use_recent = self.recent_hits >= PERIOD / 2 || self.periods.is_multiple_of(8);
            (self.pushed, self.repeats, self.recent_hits) = (0, 0, 0);
        }
    }

    /// Bytes of the distinct values stored.
    pub(crate) fn value_bytes(&self) -> usize {
        self.values.value_bytes()
    }

    #[inline(always)]
    pub(crate) fn push_null(&mut self) {
        self.nulls.push(self.keys.len() as u32);
        self.keys.push(0);
    }

    pub(crate) fn finish(self) -> DictionaryArray<Int32Type> {
        let nulls = validity(self.keys.len(), &self.nulls);
        let keys = Int32Array::new(ScalarBuffer::from(self.keys), nulls);
        let values = Arc::new(self.values.finish());
        // SAFETY: every key of a valid row indexes a value pushed before it, and NULL rows'
        // keys are 0, within the values whenever any row is valid; with no value at all, every
        // row is NULL and a key of 0 into no values is never read (arrow's own null-only
        // dictionaries are built so).
        unsafe { DictionaryArray::new_unchecked(keys, values) }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray, StringBuilder};
    use arrow::datatypes::DataType;

    use super::*;

    /// `values` pushed into `col` and into a `StringBuilder`; the builder's array.
    fn fill<C>(
        values: &[Option<String>],
        col: &mut C,
        push: fn(&mut C, &str),
        push_null: fn(&mut C),
    ) -> StringArray {
        let mut arrow = StringBuilder::new();
        for v in values {
            match v {
                Some(v) => {
                    push(col, v);
                    arrow.append_value(v);
                }
                None => {
                    push_null(col);
                    arrow.append_null();
                }
            }
        }
        arrow.finish()
    }

    /// Rows that alternate between values, then long runs of one value, then alternating
    /// again: the column stops and starts comparing with the row before, and holds the same
    /// values either way.
    #[test]
    fn dict_col_compares_with_the_row_before_while_rows_repeat() {
        let value = |i: usize| {
            let v = if (3000..6000).contains(&i) {
                i / 500
            } else {
                i % 7
            };
            (!i.is_multiple_of(97)).then(|| format!("v{v}"))
        };
        let mut ours = DictCol::with_capacity(16, 16);
        let mut arrow = StringBuilder::new();
        let mut modes = Vec::new();
        for i in 0..9000 {
            match value(i) {
                Some(v) => {
                    ours.push(&v);
                    arrow.append_value(&v);
                }
                None => {
                    ours.push_null();
                    arrow.append_null();
                }
            }
            if modes.last() != Some(&ours.compare_last) {
                modes.push(ours.compare_last);
            }
        }
        assert_eq!(modes, [true, false, true, false]);
        let plain = arrow::compute::cast(&ours.finish(), &DataType::Utf8).unwrap();
        assert_eq!(plain.as_string::<i32>(), &arrow.finish());
    }

    /// Values whose fingerprints collide (same length and ends), then a few values that
    /// alternate: the column stops looking values up by fingerprint and starts again, and
    /// holds the same values, in first-use order, either way.
    #[test]
    fn dict_col_looks_values_up_by_fingerprint_while_that_finds_them() {
        let value = |i: usize| match i {
            0..5000 => format!("GET /a/{:03}/b HTTP/1.1", (i * 7) % 300),
            _ => format!("owner-{:02}-{}", i % 20, "x".repeat(40)),
        };
        let mut ours = DictCol::with_capacity(16, 16);
        let mut arrow = StringBuilder::new();
        let mut modes = Vec::new();
        for i in 0..20_000 {
            let v = value(i);
            ours.push(&v);
            arrow.append_value(&v);
            if modes.last() != Some(&ours.use_recent) {
                modes.push(ours.use_recent);
            }
        }
        assert_eq!(modes[..3], [true, false, true]);
        let ours = ours.finish();
        let dict: Vec<&str> = ours.values().as_string::<i32>().iter().flatten().collect();
        let mut firsts: Vec<String> = Vec::new();
        for i in 0..20_000 {
            if !firsts.contains(&value(i)) {
                firsts.push(value(i));
            }
        }
        assert_eq!(dict, firsts);
        let plain = arrow::compute::cast(&ours, &DataType::Utf8).unwrap();
        assert_eq!(plain.as_string::<i32>(), &arrow.finish());
    }

    proptest::proptest! {
        /// The inline number column builds the array `PrimitiveBuilder` builds.
        #[test]
        fn num_col_is_a_primitive_builder(
            values in proptest::collection::vec(proptest::option::of(proptest::num::i64::ANY), 0..60),
        ) {
            let mut ours = NumCol::<arrow::datatypes::Int64Type>::with_capacity(0);
            let mut arrow = arrow::array::Int64Builder::new();
            for v in &values {
                match v {
                    Some(v) => ours.push(*v),
                    None => ours.push_null(),
                }
                arrow.append_option(*v);
            }
            let ours = ours.finish();
            ours.to_data().validate_full().unwrap();
            proptest::prop_assert_eq!(ours, arrow.finish());
        }

        /// The inline string column builds the array `StringBuilder` builds: same values,
        /// nulls and offsets, from any capacity guess.
        #[test]
        fn str_col_is_a_string_builder(
            values in proptest::collection::vec(proptest::option::of(".{0,12}"), 0..60),
            cap in 0usize..64,
        ) {
            let mut ours = StrCol::with_capacity(cap, cap);
            let arrow = fill(&values, &mut ours, StrCol::push, StrCol::push_null);
            proptest::prop_assert_eq!(ours.value_bytes(), arrow.values().len());
            let ours = ours.finish();
            ours.to_data().validate_full().unwrap();
            proptest::prop_assert_eq!(ours, arrow);
        }

        /// The interning column holds the values `StringBuilder` holds, each distinct value
        /// once, in the order rows first use them.
        #[test]
        fn dict_col_is_a_string_builder(
            values in proptest::collection::vec(proptest::option::of("[ab]{0,3}|.{0,20}"), 0..80),
            cap in 0usize..64,
        ) {
            let mut ours = DictCol::with_capacity(cap, cap);
            let arrow = fill(&values, &mut ours, DictCol::push, DictCol::push_null);
            let ours = ours.finish();
            ours.to_data().validate_full().unwrap();
            let mut firsts: Vec<&str> = Vec::new();
            for v in values.iter().flatten() {
                if !firsts.contains(&v.as_str()) {
                    firsts.push(v);
                }
            }
            let dict: Vec<&str> = ours.values().as_string::<i32>().iter().flatten().collect();
            proptest::prop_assert_eq!(dict, firsts);
            let plain = arrow::compute::cast(&ours, &DataType::Utf8).unwrap();
            proptest::prop_assert_eq!(plain.as_string::<i32>(), &arrow);
        }
    }
}
