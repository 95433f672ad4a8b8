//! Memos keyed by where a string view points, for values that repeat.
//!
//! Parquet stores a column of few distinct values with a dictionary per column chunk, and the
//! reader hands DataFusion string views into that dictionary: every row holding one value
//! carries the same (data buffer, offset, length). An expression that works out something per
//! value (whether it matches a pattern, which distinct value it is) can remember the answer
//! per place in the buffer and skip the work for every later row, across batches, for as long
//! as the buffer is in use. [`BufferMemo`] keeps a few recently used buffers alive (so their
//! addresses cannot be reused for other bytes) with one slot of remembered state per 16 bytes.
//!
//! Only views of more than 12 bytes point into a buffer (shorter values are inlined in the view
//! itself). In a Parquet page each value follows its 4-byte length, so long values start at
//! least 17 bytes apart and a 16-byte slot holds one value; where values share a slot (views
//! that overlap, or 13-to-15-byte values packed without lengths) the [`Slot::key`] (length and
//! offset within the slot) tells them apart, and they take turns in it. A slot per 16 bytes
//! rather than per 4 makes memos a quarter the size (a `key` dictionary page of ~200 KB: 25 KB
//! of `LIKE` memo instead of 100 KB).

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, GenericStringArray, OffsetSizeTrait};
use arrow::buffer::{Buffer, NullBuffer};
use arrow::datatypes::{DataType, Int32Type};
use datafusion::common::{Result, internal_err};
use datafusion::error::DataFusionError;
use hashbrown::{HashMap, HashTable};

use super::dict_scan::{padded, same_values};

/// The hasher of interners and memo maps (fixed: nothing here is keyed by untrusted input
/// that could be chosen to collide, and a fixed state is the fastest).
pub type Hasher = foldhash::fast::FixedState;

/// Longest value remembered (the key keeps its length in 11 bits).
pub const MAX_LEN: u32 = (1 << 11) - 2;

/// Bytes of a data buffer per memo slot.
const SLOT_BYTES: usize = 16;

/// Where a view's value is remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Index of the data buffer in the array.
    pub buffer: usize,
    /// Slot within that buffer's entry.
    pub index: usize,
    /// `(len + 1) << 5 | (offset & 15) << 1`: never 0, and its lowest bit is free for a flag.
    pub key: u16,
}

/// The slot of a view, or `None` for inlined values (12 bytes or fewer) and values longer than
/// [`MAX_LEN`].
pub fn slot(view: u128) -> Option<Slot> {
    let len = view as u32;
    if len <= 12 || len > MAX_LEN {
        return None;
    }
    let buffer = (view >> 64) as u32 as usize;
    let offset = (view >> 96) as u32 as usize;
    Some(Slot {
        buffer,
        index: offset / SLOT_BYTES,
        key: (((len + 1) << 5) | (((offset % SLOT_BYTES) as u32) << 1)) as u16,
    })
}

/// A remembered data buffer: one slot of state per `SLOT_BYTES` (16) bytes of it (`T::default()` =
/// nothing known).
pub struct Entry<T> {
    buffer: Buffer,
    pub slots: Vec<T>,
}

impl<T: Copy + Default> Entry<T> {
    fn new(buffer: &Buffer) -> Self {
        Entry {
            buffer: buffer.clone(),
            slots: vec![T::default(); buffer.len() / SLOT_BYTES + 1],
        }
    }

    fn is(&self, b: &Buffer) -> bool {
        self.buffer.as_ptr() == b.as_ptr() && self.buffer.len() == b.len()
    }
}

/// State worked out once per dictionary (per value of a column chunk's dictionary), for the
/// most recently used dictionaries. A column chunk's batches are new dictionary arrays over
/// the same values buffers, so entries are found by those buffers ([`same_values`]); an entry
/// holds its values array, so the buffers cannot be freed and their addresses reused meanwhile.
#[derive(Debug)]
pub struct DictionaryMemo<T> {
    entries: VecDeque<(ArrayRef, T)>,
    /// Dictionaries kept at most.
    keep: usize,
}

impl<T> DictionaryMemo<T> {
    pub fn new(keep: usize) -> Self {
        DictionaryMemo {
            entries: VecDeque::new(),
            keep,
        }
    }

    /// Make the entry of `values`, if there is one, the most recent; whether there is one.
    pub fn touch(&mut self, values: &ArrayRef) -> bool {
        match self
            .entries
            .iter()
            .position(|(v, _)| same_values(v, values))
        {
            Some(i) => {
                let e = self.entries.remove(i).expect("present");
                self.entries.push_back(e);
                true
            }
            None => false,
        }
    }

    /// Remember `state` for `values` as the most recent entry, dropping the oldest beyond the
    /// limit.
    pub fn insert(&mut self, values: &ArrayRef, state: T) {
        self.entries.push_back((Arc::clone(values), state));
        if self.entries.len() > self.keep {
            self.entries.pop_front();
        }
    }

    /// The most recent entry's state (after [`Self::touch`] or [`Self::insert`]).
    pub fn last(&self) -> &T {
        &self
            .entries
            .back()
            .expect("an entry was touched or inserted")
            .1
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The values arrays held and the state of each.
    pub fn iter(&self) -> impl Iterator<Item = &(ArrayRef, T)> {
        self.entries.iter()
    }
}

/// Set `out[i]` to [`NONE`] for each NULL row `i`.
pub fn mark_nulls(out: &mut [u32], nulls: Option<&NullBuffer>) {
    if let Some(nulls) = nulls {
        for i in nulls
            .iter()
            .enumerate()
            .filter(|(_, valid)| !valid)
            .map(|(i, _)| i)
        {
            out[i] = NONE;
        }
    }
}

/// The most recently used buffers' entries.
pub struct BufferMemo<T> {
    entries: VecDeque<Entry<T>>,
    /// Buffers kept at most.
    keep: usize,
    /// Larger buffers are not remembered.
    max_buffer: usize,
}

impl<T: Copy + Default> BufferMemo<T> {
    pub fn new(keep: usize, max_buffer: usize) -> Self {
        BufferMemo {
            entries: VecDeque::new(),
            keep,
            max_buffer,
        }
    }

    /// The entries of an array's data buffers, in order (`None` for buffers too large),
    /// taken out of the memo: give them back with [`BufferMemo::put_back`].
    pub fn take(&mut self, buffers: &[Buffer]) -> Vec<Option<Entry<T>>> {
        buffers
            .iter()
            .map(|b| {
                if b.len() > self.max_buffer {
                    return None;
                }
                Some(match self.entries.iter().position(|e| e.is(b)) {
                    Some(i) => self.entries.remove(i).expect("present"),
                    None => Entry::new(b),
                })
            })
            .collect()
    }

    /// Return entries as the most recently used, dropping the oldest beyond the limit.
    pub fn put_back(&mut self, entries: Vec<Option<Entry<T>>>) {
        self.entries.extend(entries.into_iter().flatten());
        while self.entries.len() > self.keep {
            self.entries.pop_front();
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Bytes of remembered state (the buffers themselves are the arrays').
    pub fn size(&self) -> usize {
        self.entries
            .iter()
            .map(|e| e.slots.capacity() * std::mem::size_of::<T>())
            .sum()
    }
}

impl<T> std::fmt::Debug for BufferMemo<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferMemo")
            .field("buffers", &self.entries.len())
            .field("keep", &self.keep)
            .finish()
    }
}

/// No value (NULL) in an id list from [`Interner::ids_of`].
pub const NONE: u32 = u32::MAX;

/// Data buffers an [`Interner`] remembers (a partition reads a few column chunks at once).
const INTERNER_BUFFERS: usize = 8;
/// Larger buffers are not remembered (the memo takes twice the buffer's bytes). Parquet's
/// dictionary pages are at most 1 MiB by default.
const INTERNER_MAX_BUFFER: usize = 4 << 20;

/// Distinct strings, each stored once and numbered from 0 in order of arrival.
///
/// Views are mapped to ids without looking at their bytes where possible: a value of 12 bytes
/// or fewer is its view (a hash lookup of 16 bytes), a longer one is remembered where its view
/// points ([`BufferMemo`]), so the rows of a dictionary-encoded column cost an array lookup
/// each instead of hashing and comparing their bytes.
#[derive(Debug)]
pub struct Interner {
    /// Bytes of every value, back to back; value `i` ends at `ends[i]`.
    bytes: Vec<u8>,
    ends: Vec<usize>,
    /// Ids, found by their value's bytes.
    ids: HashTable<u32>,
    hasher: Hasher,
    /// Inlined values (the view is the value) -> id.
    inline: HashMap<u128, u32, Hasher>,
    /// Longer values: `Slot::key << 32 | id` where their views point.
    memo: BufferMemo<u64>,
    /// The id of each value of recent dictionaries ([`NONE`] for NULL), [`padded`].
    dictionaries: DictionaryMemo<Vec<u32>>,
}

impl Default for Interner {
    fn default() -> Self {
        Interner {
            bytes: Vec::new(),
            ends: Vec::new(),
            ids: HashTable::new(),
            hasher: Hasher::default(),
            inline: HashMap::default(),
            memo: BufferMemo::new(INTERNER_BUFFERS, INTERNER_MAX_BUFFER),
            dictionaries: DictionaryMemo::new(INTERNER_BUFFERS),
        }
    }
}

impl Interner {
    fn value_in<'a>(bytes: &'a [u8], ends: &[usize], id: u32) -> &'a [u8] {
        let i = id as usize;
        let start = if i == 0 { 0 } else { ends[i - 1] };
        &bytes[start..ends[i]]
    }

    /// The bytes of value `id`.
    pub fn value(&self, id: u32) -> &[u8] {
        Self::value_in(&self.bytes, &self.ends, id)
    }

    /// The id of `v`, given one if it is new.
    fn intern(&mut self, v: &[u8]) -> Result<u32> {
        let (bytes, ends, hasher) = (&mut self.bytes, &mut self.ends, &self.hasher);
        let h = hasher.hash_one(v);
        let entry = self.ids.entry(
            h,
            |&id| Self::value_in(bytes, ends, id) == v,
            |&id| hasher.hash_one(Self::value_in(bytes, ends, id)),
        );
        Ok(match entry {
            hashbrown::hash_table::Entry::Occupied(e) => *e.get(),
            hashbrown::hash_table::Entry::Vacant(e) => {
                let id = u32::try_from(ends.len())
                    .ok()
                    .filter(|id| *id < NONE - 1)
                    .ok_or_else(|| {
                        DataFusionError::ResourcesExhausted(
                            "more than 4 billion distinct strings".into(),
                        )
                    })?;
                bytes.extend_from_slice(v);
                ends.push(bytes.len());
                e.insert(id);
                id
            }
        })
    }

    /// Set `out` to the id of each row of a string array ([`NONE`] for NULL).
    pub fn ids_of(&mut self, values: &dyn Array, out: &mut Vec<u32>) -> Result<()> {
        out.clear();
        out.reserve(values.len());
        match values.data_type() {
            DataType::Utf8View => {
                let a = values.as_string_view();
                let mut entries = self.memo.take(a.data_buffers());
                // Runs of one value are common (sorted or clustered data): check the previous
                // view first.
                let (mut prev_view, mut prev_id) = (None::<u128>, NONE);
                let nulls = a.nulls();
                // Written in place (NULL rows stay NONE): a push per row re-read the vector's
                // length and capacity from memory.
                out.resize(a.len(), NONE);
                for (i, (&view, o)) in a.views().iter().zip(out.iter_mut()).enumerate() {
                    if nulls.is_some_and(|n| n.is_null(i)) {
                        continue;
                    }
                    if prev_view == Some(view) {
                        *o = prev_id;
                        continue;
                    }
                    let id = if view as u32 <= 12 {
                        match self.inline.get(&view) {
                            Some(id) => *id,
                            None => {
                                let id = self.intern(a.value(i).as_bytes())?;
                                self.inline.insert(view, id);
                                id
                            }
                        }
                    } else {
                        match slot(view)
                            .and_then(|s| Some((s, entries.get_mut(s.buffer)?.as_mut()?)))
                        {
                            Some((s, e)) => {
                                let known = e.slots[s.index];
                                if (known >> 32) as u16 == s.key {
                                    known as u32
                                } else {
                                    let id = self.intern(a.value(i).as_bytes())?;
                                    e.slots[s.index] = ((s.key as u64) << 32) | id as u64;
                                    id
                                }
                            }
                            None => self.intern(a.value(i).as_bytes())?,
                        }
                    };
                    (prev_view, prev_id) = (Some(view), id);
                    *o = id;
                }
                self.memo.put_back(entries);
            }
            DataType::Utf8 => self.offset_ids(values.as_string::<i32>(), out)?,
            DataType::LargeUtf8 => self.offset_ids(values.as_string::<i64>(), out)?,
            DataType::Dictionary(k, _) if k.as_ref() == &DataType::Int32 => {
                let d = values.as_dictionary::<Int32Type>();
                let ids = self.dictionary_ids(d.values())?;
                let mask = ids.len() - 1;
                let keys = d.keys();
                // In bounds by the mask ([`padded`]): a NULL row's key may be anything, and
                // its id is set to NONE below.
                out.extend(keys.values().iter().map(|&k| ids[k as usize & mask]));
                mark_nulls(out, keys.nulls());
            }
            DataType::Dictionary(_, _) => {
                let plain = arrow::compute::cast(values, &DataType::Utf8View)?;
                self.ids_of(&plain, out)?
            }
            t => return internal_err!("interning strings given {t}"),
        }
        Ok(())
    }

    /// Dictionaries whose values' ids are remembered.
    #[cfg(test)]
    pub fn dictionaries_remembered(&self) -> usize {
        self.dictionaries.len()
    }

    /// The id of each value of a dictionary's `values`, worked out once per dictionary,
    /// [`padded`] with [`NONE`].
    fn dictionary_ids(&mut self, values: &ArrayRef) -> Result<&[u32]> {
        if !self.dictionaries.touch(values) {
            let mut ids = Vec::new();
            self.ids_of(values.as_ref(), &mut ids)?;
            self.dictionaries.insert(values, padded(ids, NONE));
        }
        Ok(self.dictionaries.last())
    }

    /// Ids of the rows of an offset-based string array (no views to remember: each value is
    /// hashed).
    fn offset_ids<O: OffsetSizeTrait>(
        &mut self,
        values: &GenericStringArray<O>,
        out: &mut Vec<u32>,
    ) -> Result<()> {
        for v in values.iter() {
            out.push(match v {
                Some(v) => self.intern(v.as_bytes())?,
                None => NONE,
            });
        }
        Ok(())
    }

    /// Bytes held.
    pub fn size(&self) -> usize {
        self.bytes.capacity()
            + self.ends.capacity() * 8
            + self.ids.capacity() * 5
            + self.inline.capacity() * 21
            + self.memo.size()
            + self
                .dictionaries
                .iter()
                .map(|(v, ids)| v.get_array_memory_size() + ids.capacity() * 4)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringViewArray;

    /// Thousands of short (inlined) values with NULLs, in batches that revisit them in other
    /// orders: every row gets its own value's id, and each value one id.
    #[test]
    fn ids_of_short_values_are_stable_across_batches() {
        let mut interner = Interner::default();
        let mut out = Vec::new();
        for round in 0..3u64 {
            let values: Vec<Option<String>> = (0..5000u64)
                .map(|i| (i % 97 != 0).then(|| format!("v{}", (i * 7919 + round * 13) % 4000)))
                .collect();
            let a = StringViewArray::from_iter(values.iter().cloned());
            interner.ids_of(&a, &mut out).unwrap();
            for (v, id) in values.iter().zip(&out) {
                match v {
                    Some(v) => assert_eq!(interner.value(*id), v.as_bytes()),
                    None => assert_eq!(*id, NONE),
                }
            }
        }
        assert_eq!(interner.ends.len(), 4000);
    }
}
