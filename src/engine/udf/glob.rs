//! Glob matching with Python `fnmatch.fnmatchcase` semantics, as Panther rules use:
//! `glob_match(value, pattern)`, `glob_match_any(value, pattern, …)` and
//! `glob_map_match(key, value, mapping)`.
//!
//! `*` matches any run of characters (including `/`), `?` one character, `[seq]` one character
//! in the set (ranges allowed), `[!seq]` one not in it; everything else is literal. Matching is
//! case-sensitive and anchored at both ends.

use std::sync::{Arc, OnceLock};

use arrow::array::{Array, BooleanArray};
use arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, ScalarValue, plan_err};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use regex::Regex;

use super::{expect_args, literal_str, scalar_str, section, strings};

/// Translate an fnmatch pattern to an anchored regular expression (as Python's
/// `fnmatch.translate`). Fails only on patterns the regex engine cannot compile.
pub fn fnmatch_regex(pattern: &str) -> Result<Regex, regex::Error> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("(?s)^");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => {
                while i < chars.len() && chars[i] == '*' {
                    i += 1;
                }
                re.push_str(".*");
            }
            '?' => re.push('.'),
            '[' => {
                // Find the closing bracket; `]` right after `[` or `[!` is literal.
                let mut j = i;
                if j < chars.len() && chars[j] == '!' {
                    j += 1;
                }
                if j < chars.len() && chars[j] == ']' {
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    j += 1;
                }
                if j >= chars.len() {
                    re.push_str("\\[");
                } else {
                    let mut set = String::new();
                    let mut k = i;
                    if chars[k] == '!' {
                        set.push('^');
                        k += 1;
                    }
                    while k < j {
                        let ch = chars[k];
                        if ch == '\\' || ch == '[' || ch == '&' || ch == '~' || ch == '|' {
                            set.push('\\');
                        }
                        set.push(ch);
                        k += 1;
                    }
                    re.push('[');
                    re.push_str(&set);
                    re.push(']');
                    i = j + 1;
                }
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re)
}

/// A literal prefix or suffix, checked a machine word at a time: its (up to) 8 bytes nearest
/// the anchored end are compared as one masked `u64` load, which rejects almost every
/// non-matching value without a `memcmp` call; only values that pass compare the rest.
#[derive(Debug, Clone)]
struct Affix {
    bytes: Box<[u8]>,
    /// The word of the (up to) 8 anchored bytes, little-endian, zero where the mask is.
    word: u64,
    mask: u64,
    suffix: bool,
}

impl Affix {
    fn new(s: &str, suffix: bool) -> Self {
        let bytes: Box<[u8]> = s.as_bytes().into();
        let k = bytes.len().min(8);
        let mut buf = [0u8; 8];
        let mask = if k == 0 { 0 } else { u64::MAX >> (8 * (8 - k)) };
        let (word, mask) = if suffix {
            // The last k bytes of an 8-byte load end at the value's end: the high bytes.
            buf[8 - k..].copy_from_slice(&bytes[bytes.len() - k..]);
            (
                u64::from_le_bytes(buf),
                mask.checked_shl(8 * (8 - k) as u32).unwrap_or(0),
            )
        } else {
            buf[..k].copy_from_slice(&bytes[..k]);
            (u64::from_le_bytes(buf), mask)
        };
        Affix {
            bytes,
            word,
            mask,
            suffix,
        }
    }

    fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether `v` starts (or, for a suffix, ends) with the affix.
    #[inline(always)]
    fn is_affix_of(&self, v: &[u8]) -> bool {
        let (n, k) = (v.len(), self.bytes.len());
        if n < k {
            return false;
        }
        if n < 8 {
            return if self.suffix {
                v.ends_with(&self.bytes)
            } else {
                v.starts_with(&self.bytes)
            };
        }
        if self.suffix {
            let w = u64::from_le_bytes(v[n - 8..].try_into().expect("8 bytes"));
            w & self.mask == self.word && (k <= 8 || v[n - k..n - 8] == self.bytes[..k - 8])
        } else {
            let w = u64::from_le_bytes(v[..8].try_into().expect("8 bytes"));
            w & self.mask == self.word && (k <= 8 || v[8..k] == self.bytes[8..])
        }
    }
}

/// A compiled fnmatch pattern. Patterns whose only wildcard is `*` (the common case:
/// `REST.*.OBJECT`, `panther-*`) match by prefix, suffix and substring search, not by regex.
#[derive(Debug, Clone)]
pub struct Glob(Kind);

#[derive(Debug, Clone)]
enum Kind {
    /// No wildcard: the whole value.
    Exact(String),
    /// Literal prefix, substrings in order, literal suffix; `*` between each.
    Star {
        first: Affix,
        /// Substring searchers, built once.
        middle: Vec<memchr::memmem::Finder<'static>>,
        last: Affix,
    },
    Regex(Regex),
}

impl Glob {
    /// Compile `pattern`.
    pub fn new(pattern: &str) -> Result<Self, regex::Error> {
        if pattern.contains(['?', '[']) {
            return fnmatch_regex(pattern).map(|r| Glob(Kind::Regex(r)));
        }
        let mut parts = pattern.split('*');
        let first = parts.next().unwrap_or_default();
        let mut rest: Vec<&str> = parts.collect();
        // With no `*`, the pattern is all prefix and must match the whole value.
        let Some(last) = rest.pop() else {
            return Ok(Glob(Kind::Exact(first.to_string())));
        };
        Ok(Glob(Kind::Star {
            first: Affix::new(first, false),
            middle: rest
                .iter()
                .filter(|m| !m.is_empty())
                .map(|m| memchr::memmem::Finder::new(m.as_bytes()).into_owned())
                .collect(),
            last: Affix::new(last, true),
        }))
    }

    /// Whether `v` matches, anchored at both ends.
    #[inline(always)]
    pub fn is_match(&self, v: &str) -> bool {
        match &self.0 {
            Kind::Regex(re) => re.is_match(v),
            Kind::Exact(s) => v == s,
            Kind::Star {
                first,
                middle,
                last,
            } => {
                let v = v.as_bytes();
                if v.len() < first.len() + last.len()
                    || !first.is_affix_of(v)
                    || !last.is_affix_of(v)
                {
                    return false;
                }
                let mut hay = &v[first.len()..v.len() - last.len()];
                for m in middle {
                    match m.find(hay) {
                        Some(p) => hay = &hay[p + m.needle().len()..],
                        None => return false,
                    }
                }
                true
            }
        }
    }
}

fn compile_err(name: &str, p: &str, e: regex::Error) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Execution(format!("{name}: invalid pattern {p:?}: {e}"))
}

function_struct!(
    /// The `glob_match` function.
    GlobMatch,
    Signature::string(2, Volatility::Immutable)
);

fn doc() -> &'static Documentation {
    static DOC: OnceLock<Documentation> = OnceLock::new();
    DOC.get_or_init(|| {
        Documentation::builder(
            section(),
            "True when the value matches the fnmatch pattern (`*`, `?`, `[seq]`, `[!seq]`), \
             case-sensitive, as Python's fnmatch in Panther rules. NULL in, NULL out.",
            "glob_match(value, pattern)",
        )
        .with_sql_example(
            "SELECT glob_match(bucket, 'panther-bootstrap-*') FROM panther_logs.aws_s3serveraccess",
        )
        .with_argument("value", "String to test.")
        .with_argument("pattern", "fnmatch pattern.")
        .build()
    })
}

impl ScalarUDFImpl for GlobMatch {
    fn name(&self) -> &str {
        "glob_match"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }
    fn documentation(&self) -> Option<&Documentation> {
        Some(doc())
    }

    fn simplify(&self, args: Vec<Expr>, _: &SimplifyContext) -> DfResult<ExprSimplifyResult> {
        if let Some(p) = args.get(1).and_then(literal_str)
            && let Err(e) = fnmatch_regex(p)
        {
            return plan_err!("glob_match: invalid pattern {p:?}: {e}");
        }
        Ok(ExprSimplifyResult::Original(args))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        expect_args("glob_match", &args.args, 2)?;
        let rows = args.number_rows;
        let compile = |p: &str| Glob::new(p).map_err(|e| compile_err("glob_match", p, e));
        // Fast path: one pattern for the whole batch.
        if let Some(p) = scalar_str(&args.args[1]) {
            let Some(p) = p else {
                return Ok(ColumnarValue::Scalar(ScalarValue::Boolean(None)));
            };
            let re = compile(&p)?;
            return super::map_pred(&args.args[0], rows, |v| re.is_match(v));
        }
        let values = strings(&args.args[0], rows)?;
        let patterns = strings(&args.args[1], rows)?;
        let mut cache: Option<(String, Glob)> = None;
        let mut out = Vec::with_capacity(rows);
        for (v, p) in values.iter().zip(patterns.iter()) {
            out.push(match (v, p) {
                (Some(v), Some(p)) => {
                    if cache.as_ref().is_none_or(|(cp, _)| cp != p) {
                        cache = Some((p.to_string(), compile(p)?));
                    }
                    Some(cache.as_ref().expect("set").1.is_match(v))
                }
                _ => None,
            });
        }
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(out))))
    }
}

/// Literal patterns of arguments `from..` (NULL literals skipped); `None` when one is not a
/// literal.
fn literal_globs(name: &str, args: &[ColumnarValue], from: usize) -> DfResult<Option<Vec<Glob>>> {
    let mut out = Vec::new();
    for a in &args[from..] {
        match scalar_str(a) {
            Some(Some(p)) => out.push(Glob::new(&p).map_err(|e| compile_err(name, &p, e))?),
            Some(None) => {}
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}

function_struct!(
    /// `glob_match_any(value, pattern, …)`: true when the value matches any of the patterns.
    GlobMatchAny,
    Signature::variadic_any(Volatility::Immutable)
);

impl ScalarUDFImpl for GlobMatchAny {
    fn name(&self) -> &str {
        "glob_match_any"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            Documentation::builder(
                section(),
                "True when the value matches any of the fnmatch patterns (NULL patterns are \
                 skipped). NULL when the value is NULL.",
                "glob_match_any(value, pattern, ...)",
            )
            .with_sql_example("SELECT glob_match_any(bucket, 'prod-*', 'backup-*') FROM panther_logs.aws_s3serveraccess")
            .build()
        }))
    }
    fn simplify(&self, args: Vec<Expr>, _: &SimplifyContext) -> DfResult<ExprSimplifyResult> {
        if args.len() < 2 {
            return plan_err!("glob_match_any takes a value and at least one pattern");
        }
        for p in args[1..].iter().filter_map(literal_str) {
            if let Err(e) = fnmatch_regex(p) {
                return plan_err!("glob_match_any: invalid pattern {p:?}: {e}");
            }
        }
        Ok(ExprSimplifyResult::Original(args))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        if let Some(globs) = literal_globs(self.name(), &args.args, 1)? {
            return super::map_pred(&args.args[0], rows, |v| globs.iter().any(|g| g.is_match(v)));
        }
        let values = strings(&args.args[0], rows)?;
        let patterns: Vec<_> = args.args[1..]
            .iter()
            .map(|a| strings(a, rows))
            .collect::<DfResult<_>>()?;
        let mut out = Vec::with_capacity(rows);
        for (i, v) in values.iter().enumerate() {
            let Some(v) = v else {
                out.push(None);
                continue;
            };
            let mut hit = false;
            for p in patterns.iter().filter(|p| p.is_valid(i)) {
                let p = p.value(i);
                if Glob::new(p)
                    .map_err(|e| compile_err(self.name(), p, e))?
                    .is_match(v)
                {
                    hit = true;
                    break;
                }
            }
            out.push(Some(hit));
        }
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(out))))
    }
}

/// A `glob_map_match` mapping: key pattern → value patterns.
fn parse_mapping(json: &str) -> Result<Vec<(Glob, Vec<Glob>)>, String> {
    let map: std::collections::BTreeMap<String, Vec<String>> = serde_json::from_str(json)
        .map_err(|e| format!("mapping must be a JSON object of pattern lists ({e})"))?;
    map.iter()
        .map(|(k, vs)| {
            let key = Glob::new(k).map_err(|e| format!("invalid pattern {k:?}: {e}"))?;
            let values = vs
                .iter()
                .map(|v| Glob::new(v).map_err(|e| format!("invalid pattern {v:?}: {e}")))
                .collect::<Result<_, _>>()?;
            Ok((key, values))
        })
        .collect()
}

function_struct!(
    /// `glob_map_match(key, value, mapping)`: NULL when `key` is NULL or no key pattern of the
    /// mapping matches it; otherwise whether `value` matches a value pattern of a matching key (a
    /// NULL value matches none).
    GlobMapMatch,
    Signature::string(3, Volatility::Immutable)
);

impl ScalarUDFImpl for GlobMapMatch {
    fn name(&self) -> &str {
        "glob_map_match"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            Documentation::builder(
                section(),
                "Look up `key` in a JSON object whose keys and values are fnmatch patterns \
                 (`{\"bucket-*\": [\"role-a-*\", \"role-b\"]}`). NULL when `key` is NULL or \
                 no key pattern matches it; otherwise true when `value` matches one of the \
                 patterns listed for a matching key (a NULL value matches none). For \
                 allow-lists per bucket: `glob_map_match(bucket, requester, mapping) = false` \
                 is a requester (or an anonymous request) not allowed on that bucket.",
                "glob_map_match(key, value, mapping)",
            )
            .build()
        }))
    }
    fn simplify(&self, args: Vec<Expr>, _: &SimplifyContext) -> DfResult<ExprSimplifyResult> {
        match args.get(2) {
            Some(e) => match literal_str(e) {
                Some(m) => {
                    if let Err(e) = parse_mapping(m) {
                        return plan_err!("glob_map_match: {e}");
                    }
                }
                None if matches!(e, Expr::Literal(..)) => {}
                None => return plan_err!("glob_map_match: the mapping must be a literal"),
            },
            None => return plan_err!("glob_map_match takes (key, value, mapping)"),
        }
        Ok(ExprSimplifyResult::Original(args))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        expect_args(self.name(), &args.args, 3)?;
        let rows = args.number_rows;
        let Some(Some(m)) = scalar_str(&args.args[2]) else {
            return Ok(ColumnarValue::Scalar(ScalarValue::Boolean(None)));
        };
        let mapping = parse_mapping(&m).map_err(|e| {
            datafusion::error::DataFusionError::Execution(format!("glob_map_match: {e}"))
        })?;
        let keys = strings(&args.args[0], rows)?;
        let values = strings(&args.args[1], rows)?;
        // Answers and validity as bitmaps: NULL where the key is NULL or matches no pattern.
        let mut answer = arrow::array::BooleanBufferBuilder::new(rows);
        let mut valid = arrow::array::BooleanBufferBuilder::new(rows);
        for i in 0..keys.len() {
            let (mut hit, mut found) = (false, false);
            if keys.is_valid(i) {
                let k = keys.value(i);
                let v = values.is_valid(i).then(|| values.value(i));
                for (_, vgs) in mapping.iter().filter(|(kg, _)| kg.is_match(k)) {
                    found = true;
                    if v.is_some_and(|v| vgs.iter().any(|g| g.is_match(v))) {
                        hit = true;
                        break;
                    }
                }
            }
            answer.append(hit);
            valid.append(found);
        }
        let out = BooleanArray::new(
            answer.finish(),
            Some(arrow::buffer::NullBuffer::new(valid.finish())),
        );
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // Prefixes and suffixes shorter than, equal to and longer than the 8-byte word, on
        // values of every length around it.
        #[test]
        fn star_patterns_agree_with_the_regex_on_any_value(p in "[ab.*]{0,14}", v in "[ab.]{0,18}") {
            m(&v, &p);
        }
    }

    fn m(v: &str, p: &str) -> bool {
        let r = fnmatch_regex(p).unwrap().is_match(v);
        assert_eq!(Glob::new(p).unwrap().is_match(v), r, "{v:?} ~ {p:?}");
        r
    }

    #[test]
    fn star_patterns_agree_with_the_regex() {
        for (v, p) in [
            ("REST.GET.OBJECT", "REST.*.OBJECT"),
            ("REST.OBJECT", "REST.*.OBJECT"),
            ("REST..OBJECT", "REST.*.OBJECT"),
            ("aXbXc", "a*b*c"),
            ("abc", "a*b*b*c"),
            ("abbc", "a*b*b*c"),
            ("", ""),
            ("x", ""),
            ("anything", "**"),
            ("abc", "abc"),
            ("abcd", "abc"),
            ("ab", "ab*b"),
        ] {
            m(v, p);
        }
    }

    #[test]
    fn mapping_lookup() {
        let map = parse_mapping(r#"{"b-*": ["r1*", "r2"]}"#).unwrap();
        assert!(map[0].0.is_match("b-x") && map[0].1[0].is_match("r1z"));
        assert!(parse_mapping("[1]").is_err());
        assert!(parse_mapping(r#"{"a": ["[z-a]"]}"#).is_err());
    }

    #[test]
    fn fnmatch_semantics() {
        assert!(m(
            "panther-bootstrap-processeddata-us-east-1",
            "panther-bootstrap-*"
        ));
        assert!(m("a/b/c", "a*c"), "* crosses /");
        assert!(m("abc", "a?c"));
        assert!(!m("abbc", "a?c"));
        assert!(m("a1", "a[0-9]"));
        assert!(!m("ax", "a[0-9]"));
        assert!(m("ax", "a[!0-9]"));
        assert!(m("a]", "a[]]"));
        assert!(m("a[", "a["), "unclosed [ is literal");
        assert!(m("x.y+z", "x.y+z"));
        assert!(!m("xay+z", "x.y+z"), ". is literal");
        assert!(!m("ABC", "abc"), "case-sensitive");
        assert!(m(
            "arn:aws:sts::123:assumed-role/panther-log-analysis-AthenaApiFunctionRole-1A/panther-athena-api",
            "arn:aws:sts::*:assumed-role/panther-log-analysis-AthenaApiFunctionRole-*/panther-athena-api"
        ));
        assert!(m("", "*"));
        assert!(!m("x\ny", "x"));
    }
}
