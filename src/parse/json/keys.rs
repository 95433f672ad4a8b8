//! The keys of one object level of a schema, looked up as JSON spells them: ignoring ASCII
//! case, without lower-casing a copy of each key read.
//!
//! A record's keys were copied, lower-cased and hashed into a `HashMap` one by one; on
//! CloudTrail (35 keys a record, nearly all camelCase) the copy and the table's scattered
//! entries made the lookup a quarter of the JSON reader's time. Here a key's first and last
//! eight bytes are lower-cased as two words (SWAR), hashed, and compared as words with the
//! stored key's: a key of up to 16 bytes is matched in a few instructions.

use super::scan::{HIGHS, ONES};

/// Keys (stored lower case) with their values, in an open-addressed table at most half full.
#[derive(Debug)]
pub(super) struct Keys<V> {
    entries: Vec<Entry<V>>,
    /// Index + 1 into `entries`, 0 for an empty slot; a power of two long.
    slots: Vec<u32>,
}

#[derive(Debug)]
struct Entry<V> {
    words: Words,
    key: String,
    value: V,
}

impl<V> Default for Keys<V> {
    fn default() -> Self {
        Keys {
            entries: Vec::new(),
            slots: vec![0; 2],
        }
    }
}

/// Up to 8 bytes, little-endian, zero-padded.
#[inline(always)]
fn load(b: &[u8]) -> u64 {
    let n = b.len();
    if let Some(w) = b.first_chunk::<8>() {
        return u64::from_le_bytes(*w);
    }
    let u32_at = |i: usize| u64::from(u32::from_le_bytes(b[i..i + 4].try_into().expect("4")));
    match n {
        // Two overlapping halves: the bytes they share are the same in both.
        4.. => u32_at(0) | u32_at(n - 4) << (8 * (n - 4)),
        1.. => {
            let at = |i: usize| u64::from(b[i]) << (8 * i);
            at(0) | at(n / 2) | at(n - 1)
        }
        0 => 0,
    }
}

/// `w` with its ASCII upper case letters made lower case, all eight at once.
#[inline(always)]
fn lower(w: u64) -> u64 {
    let low7 = w & !HIGHS;
    let at_least_a = low7.wrapping_add(ONES * u64::from(0x80 - b'A'));
    let above_z = low7.wrapping_add(ONES * u64::from(0x7f - b'Z'));
    let upper = at_least_a & !above_z & !w & HIGHS;
    w | (upper >> 2)
}

/// A key's length and its first and last eight bytes, lower case. For keys of up to 16
/// bytes, equal words are equal keys (ignoring ASCII case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Words {
    len: usize,
    first: u64,
    last: u64,
}

impl Words {
    #[inline(always)]
    fn of(key: &[u8]) -> Words {
        let n = key.len();
        Words {
            len: n,
            first: lower(load(&key[..n.min(8)])),
            last: if n > 8 { lower(load(&key[n - 8..])) } else { 0 },
        }
    }

    #[inline(always)]
    fn hash(&self) -> u64 {
        (self.first ^ self.last.rotate_left(29) ^ self.len as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

impl<V> Keys<V> {
    #[inline(always)]
    fn slot(&self, w: &Words) -> usize {
        let bits = self.slots.len().trailing_zeros();
        (w.hash() >> (64 - bits)) as usize
    }

    /// The value of `key`, matched ignoring ASCII case.
    #[inline(always)]
    pub(super) fn get(&self, key: &str) -> Option<&V> {
        let key = key.as_bytes();
        let w = Words::of(key);
        let mask = self.slots.len() - 1;
        let mut at = self.slot(&w);
        loop {
            let e = self
                .entries
                .get((self.slots[at] as usize).checked_sub(1)?)?;
            if e.words == w
                && (key.len() <= 16
                    || key[8..key.len() - 8]
                        .eq_ignore_ascii_case(&e.key.as_bytes()[8..key.len() - 8]))
            {
                return Some(&e.value);
            }
            at = (at + 1) & mask;
        }
    }

    pub(super) fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        let e = self
            .entries
            .iter_mut()
            .find(|e| e.key.eq_ignore_ascii_case(key))?;
        Some(&mut e.value)
    }

    pub(super) fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Add `key` (lower case, not there yet).
    pub(super) fn insert(&mut self, key: String, value: V) {
        debug_assert!(!self.contains_key(&key) && !key.bytes().any(|b| b.is_ascii_uppercase()));
        let words = Words::of(key.as_bytes());
        self.entries.push(Entry { words, key, value });
        let len = (self.entries.len() * 2).next_power_of_two().max(2);
        self.slots = vec![0; len];
        for i in 0..self.entries.len() {
            let mut at = self.slot(&self.entries[i].words);
            while self.slots[at] != 0 {
                at = (at + 1) & (len - 1);
            }
            self.slots[at] = i as u32 + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_ignoring_ascii_case_only() {
        let mut k = Keys::default();
        let names = [
            "eventtime",
            "eventname",
            "a",
            "",
            "useridentity",
            "sessioncontext",
            "arn",
            "type",
            "x-amz-id-2",
            "ünïcode",
            "bucketname",
            "eventtime2",
            "eventtim",
            "clientprovidedhostheader",
            "clientprovidedhostheader2",
            "clientprovidedhostheadex",
        ];
        for (i, n) in names.iter().enumerate() {
            k.insert(n.to_string(), i);
        }
        for (i, n) in names.iter().enumerate() {
            assert_eq!(k.get(n), Some(&i), "{n}");
            assert_eq!(k.get(&n.to_ascii_uppercase()), Some(&i), "{n}");
        }
        assert_eq!(k.get("eventTime"), Some(&0));
        assert_eq!(k.get("ÜNÏCODE"), None);
        assert_eq!(k.get("ARN "), None);
        assert_eq!(k.get("eventtime "), None);
        assert_eq!(k.get("@"), None);
        assert_eq!(k.get("`"), None);
        assert_eq!(k.get("[]"), None);
        assert_eq!(k.get("clientProvidedHostHeader"), Some(&13));
        assert_eq!(k.get("clientProvidedXostHeader"), None);
        assert_eq!(k.get("x-amz-id-3"), None);
        *k.get_mut("EventName").unwrap() = 99;
        assert_eq!(k.get("eventname"), Some(&99));
        assert!(Keys::<u8>::default().get("x").is_none());
        // Every byte of a short key counts, whatever its length.
        for n in 0..=16 {
            let key = "abcdefghijklmnop"[..n].to_string();
            let mut one = Keys::default();
            one.insert(key.clone(), ());
            assert!(one.get(&key.to_ascii_uppercase()).is_some());
            for i in 0..n {
                let mut other = key.clone().into_bytes();
                other[i] = b'z';
                assert!(
                    one.get(std::str::from_utf8(&other).unwrap()).is_none(),
                    "{n} {i}"
                );
            }
        }
    }
}
