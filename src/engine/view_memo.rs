//! Memos keyed by where a string view points, for values that repeat.
//!
//! Parquet stores a column of few distinct values with a dictionary per column chunk, and the
//! reader hands DataFusion string views into that dictionary: every row holding one value
//! carries the same (data buffer, offset, length). An expression that works out something per
//! value (whether it matches a pattern, which distinct value it is) can remember the answer
//! per place in the buffer and skip the work for every later row, across batches, for as long
//! as the buffer is in use. [`BufferMemo`] keeps a few recently used buffers alive (so their
//! addresses cannot be reused for other bytes) with one slot of remembered state per 4 bytes.
//!
//! Only views of more than 12 bytes point into a buffer (shorter values are inlined in the view
//! itself). Long values are at least 13 bytes apart in a dictionary, so a 4-byte slot holds one
//! value; where views overlap, the [`Slot::key`] (length and offset within the slot) tells them
//! apart.

use std::collections::VecDeque;

use arrow::buffer::Buffer;

/// Longest value remembered (the key keeps its length in 13 bits).
pub const MAX_LEN: u32 = (1 << 13) - 2;

/// Where a view's value is remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Index of the data buffer in the array.
    pub buffer: usize,
    /// Slot within that buffer's entry.
    pub index: usize,
    /// `(len + 1) << 3 | (offset & 3) << 1`: never 0, and its lowest bit is free for a flag.
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
        index: offset / 4,
        key: (((len + 1) << 3) | (((offset & 3) as u32) << 1)) as u16,
    })
}

/// A remembered data buffer: one slot of state per 4 bytes of it (`T::default()` = nothing
/// known).
pub struct Entry<T> {
    buffer: Buffer,
    pub slots: Vec<T>,
}

impl<T: Copy + Default> Entry<T> {
    fn new(buffer: &Buffer) -> Self {
        Entry {
            buffer: buffer.clone(),
            slots: vec![T::default(); buffer.len() / 4 + 1],
        }
    }

    fn is(&self, b: &Buffer) -> bool {
        self.buffer.as_ptr() == b.as_ptr() && self.buffer.len() == b.len()
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
