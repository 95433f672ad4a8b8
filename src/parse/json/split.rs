//! Structural scanning of JSON text: where values start and end, without building them.
//!
//! Used to cut a document into records before each is parsed on its own (so one malformed
//! record is quarantined and its neighbours are kept), to find an envelope's record array, and
//! to pull indicator candidates out of free-form blocks. The scanner tracks strings (with
//! escapes) and bracket depth only; whatever else is wrong inside a value is left to the real
//! parser, which then rejects just that value.

/// Why a value could not be delimited.
pub type ScanError = &'static str;

/// Index of the first non-whitespace byte at or after `pos`.
pub fn skip_ws(b: &[u8], mut pos: usize) -> usize {
    while pos < b.len() && matches!(b[pos], b' ' | b'\t' | b'\n' | b'\r') {
        pos += 1;
    }
    pos
}

/// Index just past the string whose opening quote is at `pos`.
pub fn skip_string(b: &[u8], pos: usize) -> Result<usize, ScanError> {
    let mut i = pos + 1;
    loop {
        match memchr::memchr2(b'"', b'\\', &b[i.min(b.len())..]) {
            None => return Err("unterminated string"),
            Some(k) if b[i + k] == b'\\' => i += k + 2,
            Some(k) => return Ok(i + k + 1),
        }
    }
}

/// Bytes that matter to [`skip_value`] inside an object or array.
static SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'{' as usize] = true;
    t[b'}' as usize] = true;
    t[b'[' as usize] = true;
    t[b']' as usize] = true;
    t
};

/// Index just past the JSON value starting at `pos` (which must not be whitespace).
pub fn skip_value(b: &[u8], pos: usize) -> Result<usize, ScanError> {
    match b.get(pos) {
        None => Err("unexpected end of input"),
        Some(b'"') => skip_string(b, pos),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut i = pos;
            while i < b.len() {
                let c = b[i];
                if !SPECIAL[c as usize] {
                    i += 1;
                    continue;
                }
                match c {
                    b'"' => {
                        i = skip_string(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    _ => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(i + 1);
                        }
                    }
                }
                i += 1;
            }
            Err("unexpected end of input inside an object or array")
        }
        Some(_) => {
            let n = b[pos..]
                .iter()
                .take_while(|c| !matches!(c, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r'))
                .count();
            if n == 0 {
                Err("expected a value")
            } else {
                Ok(pos + n)
            }
        }
    }
}

/// Walk the members of the object starting at `pos` (`{`), calling `f(key, value_start)` with
/// the key's raw text (no quotes, escapes left as they are) before the value is scanned.
/// Returns the index past the closing brace; when `f` returns false the walk stops there and
/// returns that value's start.
pub fn members<'a>(
    b: &'a [u8],
    pos: usize,
    mut f: impl FnMut(&'a [u8], usize) -> bool,
) -> Result<usize, (usize, ScanError)> {
    if b.get(pos) != Some(&b'{') {
        return Err((pos, "expected an object"));
    }
    let mut p = skip_ws(b, pos + 1);
    if b.get(p) == Some(&b'}') {
        return Ok(p + 1);
    }
    loop {
        if b.get(p) != Some(&b'"') {
            return Err((p, "expected a key"));
        }
        let key_end = skip_string(b, p).map_err(|e| (p, e))?;
        let key = &b[p + 1..key_end - 1];
        p = skip_ws(b, key_end);
        if b.get(p) != Some(&b':') {
            return Err((p, "expected ':' after a key"));
        }
        let vstart = skip_ws(b, p + 1);
        if !f(key, vstart) {
            return Ok(vstart);
        }
        let vend = skip_value(b, vstart).map_err(|e| (vstart, e))?;
        p = skip_ws(b, vend);
        match b.get(p) {
            Some(b',') => p = skip_ws(b, p + 1),
            Some(b'}') => return Ok(p + 1),
            _ => return Err((p, "expected ',' or '}' in an object")),
        }
    }
}

/// Call `f(start, end)` for each element of the array starting at `pos` (`[`). On a
/// structural error, returns the index where the broken element starts and why.
pub fn elements(
    b: &[u8],
    pos: usize,
    mut f: impl FnMut(usize, usize),
) -> Result<usize, (usize, ScanError)> {
    if b.get(pos) != Some(&b'[') {
        return Err((pos, "expected an array"));
    }
    let mut p = skip_ws(b, pos + 1);
    if b.get(p) == Some(&b']') {
        return Ok(p + 1);
    }
    loop {
        let end = skip_value(b, p).map_err(|e| (p, e))?;
        f(p, end);
        let q = skip_ws(b, end);
        match b.get(q) {
            Some(b',') => p = skip_ws(b, q + 1),
            Some(b']') => return Ok(q + 1),
            _ => return Err((q, "expected ',' or ']' in an array")),
        }
    }
}

/// Call `f(key, value)` for every string value in the JSON text `b`, with the key of the
/// member it belongs to (for array elements, the array's key; `""` at the top). Strings with
/// escapes are passed undecoded. Stops quietly at malformed text.
pub fn strings<'a>(s: &'a str, mut f: impl FnMut(&'a str, &'a str)) {
    let b = s.as_bytes();
    // Every key and value is cut right after and right before an ASCII `"`, so at character
    // boundaries of `s`: no UTF-8 check is needed (it was a tenth of indicator extraction).
    let text_at = |from: usize, to: usize| s.get(from..to).unwrap_or_default();
    let mut key = "";
    let mut i = 0;
    while let Some(k) = memchr::memchr(b'"', &b[i.min(b.len())..]) {
        let start = i + k;
        let Ok(end) = skip_string(b, start) else {
            return;
        };
        let text = text_at(start + 1, end - 1);
        let next = skip_ws(b, end);
        if b.get(next) == Some(&b':') {
            key = text;
            i = next + 1;
        } else {
            f(key, text);
            i = end;
        }
    }
}

/// How deep objects and arrays nest in `b` (strings skipped; malformed text counted as met).
pub fn max_depth(b: &[u8]) -> usize {
    let (mut depth, mut max, mut i) = (0usize, 0, 0);
    while i < b.len() {
        match b[i] {
            b'"' => {
                i = skip_string(b, i).unwrap_or(b.len());
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_values() {
        let b = br#"{"a":"x\"}","b":[1,{"c":"]"}]} tail"#;
        assert_eq!(skip_value(b, 0), Ok(b.len() - 5));
        assert_eq!(skip_value(b"123,", 0), Ok(3));
        assert_eq!(skip_value(b"\"ab", 0), Err("unterminated string"));
        assert!(skip_value(b"{\"a\":[1,2}", 0).is_err());
        assert_eq!(skip_value(b"", 0), Err("unexpected end of input"));
        assert_eq!(max_depth(br#"{"a":[{"b":"[[[["}],"c":{}}"#), 3);
        assert_eq!(max_depth(b"\"open [["), 0);
    }

    #[test]
    fn walks_members_and_elements() {
        let b = br#"{ "Records" : [ {"a":1} , {"b":2} ], "x": null }"#;
        let mut keys = Vec::new();
        let mut records = Vec::new();
        members(b, 0, |k, s| {
            keys.push(String::from_utf8_lossy(k).into_owned());
            if k == b"Records" {
                elements(b, s, |s, e| records.push(&b[s..e])).unwrap();
            }
            true
        })
        .unwrap();
        assert_eq!(keys, ["Records", "x"]);
        assert_eq!(records, [&br#"{"a":1}"#[..], br#"{"b":2}"#]);
        let broken = br#"[{"a":1},{"b":"x]"#;
        let mut seen = 0;
        let err = elements(broken, 0, |_, _| seen += 1).unwrap_err();
        assert_eq!((seen, err.0), (1, 9));
    }

    #[test]
    fn finds_strings_with_their_keys() {
        let b = r#"{"roleArn":"arn:aws:iam::1:role/x","items":[{"instanceId":"i-1"},"z"],"é":"ü","n":5}"#;
        let mut got = Vec::new();
        strings(b, |k, v| got.push((k.to_string(), v.to_string())));
        assert_eq!(
            got,
            [
                ("roleArn".into(), "arn:aws:iam::1:role/x".into()),
                ("instanceId".into(), "i-1".into()),
                ("instanceId".into(), "z".into()),
                ("é".into(), "ü".into()),
            ] as [(String, String); 4]
        );
    }
}
