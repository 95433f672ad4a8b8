//! A JSON reader made for records: one pass over the text, values validated as they are met,
//! each record's values landing in its per-record slots ([`State`]) the way serde's visitors
//! ([`super::NodeSeed`]) put them there.
//!
//! serde_json with a visitor per object level and a raw value per leaf spent about 30,000
//! instructions on each 1.4 KB CloudTrail record, two thirds of the CloudTrail ingest; most
//! of it was generic machinery (visitor calls, raw-value buffering, a second scan of every
//! string to find escapes). This reader knows where it is in the schema and scans each byte
//! once, eight at a time inside strings.
//!
//! It accepts only what serde_json accepts and reads it to the same values; whatever it is
//! not sure of (malformed text, an escape in a key it must decode that serde would reject,
//! nesting deeper than [`DEPTH`]) it declines, and the caller reads the text with serde
//! instead, which accepts it or says what is wrong. Tests hold the two readers to the same
//! slots on generated and mutated records.

use std::borrow::Cow;

use super::{Child, Kind, Leaf, Node, Plan, State, Val, convert};

/// This reader does not take the text on: serde reads it instead (and says why it fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Declined;

type Res<T> = Result<T, Declined>;

/// How deep free-form values may nest before the reader declines (serde_json skips any depth).
pub(super) const DEPTH: u32 = 100;

/// A byte of 1 in each byte of a word, and each byte's high bit (SWAR; `keys` uses them too).
pub(super) const ONES: u64 = 0x0101_0101_0101_0101;
pub(super) const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each zero byte of `x`; exact up to the lowest one (borrows run upwards).
#[inline]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// Bytes of `w` that end a run of plain string text: `"`, `\` and control characters.
#[inline]
fn stops(w: u64) -> u64 {
    zero_bytes(w ^ (ONES * u64::from(b'"')))
        | zero_bytes(w ^ (ONES * u64::from(b'\\')))
        | (w.wrapping_sub(ONES * 0x20) & !w & HIGHS)
}

/// [`stops`] of the 16 bytes at `b[i..]` (which must be there), one bit each.
#[cfg(target_arch = "x86_64")]
#[inline]
fn stops16(b: &[u8], i: usize) -> u32 {
    use std::arch::x86_64::*;
    assert!(i + 16 <= b.len());
    // SAFETY: SSE2 is part of x86_64; the 16 bytes read are inside `b` (checked above).
    unsafe {
        let x = _mm_loadu_si128(b.as_ptr().add(i).cast());
        let quote = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8));
        let low = _mm_set1_epi8(0x1f);
        let control = _mm_cmpeq_epi8(_mm_max_epu8(x, low), low);
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
    }
}

/// Index of the first `"`, `\` or control byte of `b` at or after `i`, or `b.len()`.
#[inline(always)]
fn to_stop(b: &[u8], mut i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    while i + 16 <= b.len() {
        let m = stops16(b, i);
        if m != 0 {
            return i + m.trailing_zeros() as usize;
        }
        i += 16;
    }
    while let Some(w) = b.get(i..i + 8) {
        let m = stops(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && !matches!(b[i], b'"' | b'\\' | 0..0x20) {
        i += 1;
    }
    i
}

/// A position in JSON text that is valid UTF-8 (so slices cut at ASCII bytes are `str`s).
pub(super) struct Scan<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Scan<'a> {
    pub(super) fn new(s: &'a str) -> Self {
        Scan { s, i: 0 }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    #[inline]
    fn ws(&mut self) {
        let b = self.s.as_bytes();
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = b.get(self.i) {
            self.i += 1;
        }
    }

    /// Whitespace, then `c`, then whitespace.
    #[inline]
    fn eat(&mut self, c: u8) -> Res<()> {
        self.ws();
        if self.peek() != Some(c) {
            return Err(Declined);
        }
        self.i += 1;
        self.ws();
        Ok(())
    }

    /// Only whitespace is left (serde's `Deserializer::end`).
    pub(super) fn end(&mut self) -> Res<()> {
        self.ws();
        if self.i == self.s.len() {
            Ok(())
        } else {
            Err(Declined)
        }
    }

    /// The string whose opening quote is at the position: the range of its contents, and
    /// whether it holds escapes (each checked as serde_json's `ignore_str` checks them).
    #[inline(always)]
    fn string(&mut self) -> Res<(usize, usize, bool)> {
        let b = self.s.as_bytes();
        let start = self.i + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            i = to_stop(b, i);
            match *b.get(i).ok_or(Declined)? {
                b'"' => {
                    self.i = i + 1;
                    return Ok((start, i, escaped));
                }
                b'\\' => {
                    escaped = true;
                    i = match b.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i + 2,
                        Some(b'u') => {
                            let hex = b.get(i + 2..i + 6).ok_or(Declined)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(Declined);
                            }
                            i + 6
                        }
                        _ => return Err(Declined),
                    };
                }
                _ => return Err(Declined),
            }
        }
    }

    /// The text of the string `(start, end, escaped)`, decoded (by serde when it has escapes:
    /// it decides what a `\u` surrogate means).
    #[inline(always)]
    fn text(&self, (start, end, escaped): (usize, usize, bool)) -> Res<Cow<'a, str>> {
        if !escaped {
            return Ok(Cow::Borrowed(&self.s[start..end]));
        }
        serde_json::from_str::<String>(&self.s[start - 1..end + 1])
            .map(Cow::Owned)
            .map_err(|_| Declined)
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Res<()> {
        let b = self.s.as_bytes();
        let mut i = self.i + usize::from(b[self.i] == b'-');
        let digits = |mut i: usize| {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        i = match b.get(i) {
            Some(b'0') => i + 1,
            Some(b'1'..=b'9') => digits(i + 1),
            _ => return Err(Declined),
        };
        if b.get(i) == Some(&b'.') {
            let end = digits(i + 1);
            if end == i + 1 {
                return Err(Declined);
            }
            i = end;
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let end = digits(i);
            if end == i {
                return Err(Declined);
            }
            i = end;
        }
        self.i = i;
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Res<()> {
        if self.s.as_bytes()[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Declined)
        }
    }

    /// After an opening bracket: whether the object or array ends right away (at `close`).
    #[inline]
    fn empty(&mut self, close: u8) -> bool {
        self.i += 1;
        self.ws();
        let empty = self.peek() == Some(close);
        self.i += usize::from(empty);
        empty
    }

    /// After a member or element: whether another follows (`,`) or the object or array
    /// ends (`close`).
    #[inline]
    fn more(&mut self, close: u8) -> Res<bool> {
        self.ws();
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                self.ws();
                Ok(true)
            }
            Some(c) if c == close => {
                self.i += 1;
                Ok(false)
            }
            _ => Err(Declined),
        }
    }

    /// Skip the value at the position (not whitespace), checking it as serde_json's
    /// `ignore_value` does.
    fn value(&mut self, depth: u32) -> Res<()> {
        self.value_with(depth, &mut "", &mut |_, _| {})
    }

    /// [`Scan::value`], calling `found(key, text)` for each string value in it with the last
    /// key met before it, as [`super::split::strings`] does (raw text: escapes undecoded).
    fn value_with<F: FnMut(&'a str, &'a str)>(
        &mut self,
        depth: u32,
        key: &mut &'a str,
        found: &mut F,
    ) -> Res<()> {
        match self.peek().ok_or(Declined)? {
            b'"' => {
                let (start, end, _) = self.string()?;
                found(key, &self.s[start..end]);
                Ok(())
            }
            b'{' => {
                let depth = depth.checked_sub(1).ok_or(Declined)?;
                if self.empty(b'}') {
                    return Ok(());
                }
                loop {
                    if self.peek() != Some(b'"') {
                        return Err(Declined);
                    }
                    let (start, end, _) = self.string()?;
                    *key = &self.s[start..end];
                    self.eat(b':')?;
                    self.value_with(depth, key, found)?;
                    if !self.more(b'}')? {
                        return Ok(());
                    }
                }
            }
            b'[' => {
                let depth = depth.checked_sub(1).ok_or(Declined)?;
                if self.empty(b']') {
                    return Ok(());
                }
                loop {
                    self.value_with(depth, key, found)?;
                    if !self.more(b']')? {
                        return Ok(());
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Declined),
        }
    }

    /// The raw text of the value at the position, skipped.
    #[inline]
    fn raw(&mut self) -> Res<&'a str> {
        let start = self.i;
        self.value(DEPTH)?;
        Ok(&self.s[start..self.i])
    }

    /// Read the object (or `null`) at the position into `st` as [`super::NodeSeed`] does:
    /// keys matched to `node`'s children ignoring ASCII case, leaves converted to their kind,
    /// nested objects read the same way, anything else (and a leaf seen twice) kept in
    /// `st.unknown` under its dotted path.
    pub(super) fn node(&mut self, plan: &Plan, node: &Node, st: &mut State<'a>) -> Res<()> {
        match self.peek() {
            Some(b'{') => {}
            Some(b'n') => return self.literal(b"null"),
            _ => return Err(Declined),
        }
        if let Some(id) = node.struct_id {
            st.present[id] = true;
        }
        if self.empty(b'}') {
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(Declined);
            }
            let key = self.string()?;
            let key = self.text(key)?;
            self.eat(b':')?;
            match node.keys.get(&key) {
                Some(Child::Leaf(i)) if matches!(st.vals[*i], Val::Null) => {
                    let v = self.leaf(&plan.leaves[*i], *i, st)?;
                    st.set(*i, v);
                }
                Some(Child::Node(n)) => self.node(plan, n, st)?,
                // Not in the schema, or a leaf seen before.
                _ => {
                    let raw = self.raw()?;
                    st.unknown.push((format!("{}{key}", node.prefix), raw));
                }
            }
            if !self.more(b'}')? {
                return Ok(());
            }
        }
    }

    /// The value at the position read as leaf `id`. A string without escapes, the common
    /// case, is its text (as `convert` would read it). The string values of a free-form
    /// block with indicators are noted in `st.strings` (with their keys) for the indicator
    /// lists, which then need not scan the block again.
    #[inline]
    fn leaf(&mut self, leaf: &Leaf, id: usize, st: &mut State<'a>) -> Res<Val<'a>> {
        let start = self.i;
        match (self.peek(), &leaf.kind) {
            (Some(b'n'), _) => return self.literal(b"null").map(|()| Val::Null),
            (_, Kind::Json) if !leaf.indicators.is_empty() => {
                let from = st.strings.len();
                let strings = &mut st.strings;
                self.value_with(DEPTH, &mut "", &mut |k, v| strings.push((k, v)))?;
                st.blobs.push((id, from, st.strings.len()));
            }
            (Some(b'"'), Kind::Str) => {
                let (from, to, escaped) = self.string()?;
                if !escaped {
                    return Ok(Val::Str(Cow::Borrowed(&self.s[from..to])));
                }
            }
            _ => self.value(DEPTH)?,
        }
        convert(&leaf.kind, &self.s[start..self.i]).map_err(|_| Declined)
    }

    /// Read the text, one record (or `null`) and whitespace around it, into `st`.
    pub(super) fn record(&mut self, plan: &Plan, st: &mut State<'a>) -> Res<()> {
        self.ws();
        self.node(plan, &plan.root, st)?;
        self.end()
    }

    /// Walk an envelope document (`{"<records>": [...], ...}`): `record` is called at the
    /// first byte of each element of the records array and must read it; other members are
    /// skipped. Whether the records key was there (as written: an escaped spelling is another
    /// key, as the careful path's [`super::split::members`] sees it); a second one declines.
    pub(super) fn envelope(
        &mut self,
        records: &str,
        mut record: impl FnMut(&mut Self) -> Res<()>,
    ) -> Res<bool> {
        self.ws();
        if self.peek() != Some(b'{') {
            return Err(Declined);
        }
        let mut found = false;
        if self.empty(b'}') {
            return Ok(false);
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(Declined);
            }
            let key = self.string()?;
            let is_records = !key.2 && &self.s[key.0..key.1] == records;
            if key.2 {
                // serde decodes every key it meets: one it cannot decode fails the document.
                self.text(key)?;
            }
            self.eat(b':')?;
            if !is_records {
                self.value(DEPTH)?;
            } else if found {
                return Err(Declined);
            } else {
                found = true;
                if self.peek() != Some(b'[') {
                    return Err(Declined);
                }
                if !self.empty(b']') {
                    loop {
                        record(self)?;
                        if !self.more(b']')? {
                            break;
                        }
                    }
                }
            }
            if !self.more(b'}')? {
                return Ok(found);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skips(s: &str) -> Option<usize> {
        let mut sc = Scan::new(s);
        sc.value(DEPTH).ok().map(|()| sc.i)
    }

    #[test]
    fn strings_end_at_their_quote_and_note_escapes() {
        for (s, want) in [
            (r#""""#, Some((1, 1, false))),
            (r#""abc" x"#, Some((1, 4, false))),
            (r#""0123456789abcdef\"x" "#, Some((1, 20, true))),
            (r#""é ü 0123456789""#, Some((1, 17, false))),
            (r#""\u00e9\n""#, Some((1, 9, true))),
            ("\"tab\there\"", None),
            (r#""\x""#, None),
            (r#""\u00g9""#, None),
            (r#""\u00"#, None),
            (r#""open"#, None),
            ("\"0123456789abcdef0123\u{1}\"", None),
        ] {
            let mut sc = Scan::new(s);
            assert_eq!(sc.string().ok(), want, "{s:?}");
        }
    }

    #[test]
    fn values_are_checked_as_serde_json_checks_them() {
        for s in [
            "0",
            "-0",
            "1.5",
            "-12e+3",
            "3E7",
            "true",
            "false",
            "null",
            "[]",
            "{}",
            r#"{"a":[1,{"b":null}],"c":"d"}"#,
            " [ 1 , 2 ] ",
        ] {
            let t = s.trim();
            assert_eq!(skips(t), Some(t.len()), "{s:?}");
            assert!(serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok());
        }
        for s in [
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "+1",
            "tru",
            "nul",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{1:2}",
            "[1 2]",
            "{",
            "[",
            "",
            "x",
        ] {
            assert!(skips(s).is_none_or(|end| end < s.len()), "{s:?}");
        }
        let deep = format!(
            "{}{}",
            "[".repeat(DEPTH as usize + 1),
            "]".repeat(DEPTH as usize + 1)
        );
        assert_eq!(skips(&deep), None);
    }

    #[test]
    fn stops_flag_the_first_special_byte() {
        let w = |b: &[u8; 8]| stops(u64::from_le_bytes(*b));
        assert_eq!(w(b"abcdefgh"), 0);
        assert_eq!(w(b"abc\"efgh").trailing_zeros() / 8, 3);
        assert_eq!(w(b"\\bc\"efgh").trailing_zeros() / 8, 0);
        assert_eq!(w(b"ab\x1f\"\xc3\xa9gh").trailing_zeros() / 8, 2);
        assert_eq!(w(b"\xff\xfe\x80\x7f !~\x00").trailing_zeros() / 8, 7);
    }
}
