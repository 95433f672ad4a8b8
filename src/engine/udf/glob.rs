//! `glob_match(value, pattern)`: Python `fnmatch.fnmatchcase` semantics, as Panther rules use.
//!
//! `*` matches any run of characters (including `/`), `?` one character, `[seq]` one character
//! in the set (ranges allowed), `[!seq]` one not in it; everything else is literal. Matching is
//! case-sensitive and anchored at both ends.

use std::sync::{Arc, OnceLock};

use arrow::array::BooleanArray;
use arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, ScalarValue, plan_err};
use datafusion::logical_expr::DocSection;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use regex::Regex;

use super::{expect_args, literal_str, scalar_str, strings};

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

/// The `glob_match` function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct GlobMatch {
    signature: Signature,
}

impl GlobMatch {
    pub fn new() -> Self {
        GlobMatch {
            signature: Signature::string(2, Volatility::Immutable),
        }
    }
}

impl Default for GlobMatch {
    fn default() -> Self {
        Self::new()
    }
}

fn doc() -> &'static Documentation {
    static DOC: OnceLock<Documentation> = OnceLock::new();
    DOC.get_or_init(|| {
        Documentation::builder(
            DocSection {
                include: true,
                label: "Security Functions",
                description: None,
            },
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
        let compile = |p: &str| {
            fnmatch_regex(p).map_err(|e| {
                datafusion::error::DataFusionError::Execution(format!(
                    "glob_match: invalid pattern {p:?}: {e}"
                ))
            })
        };
        // Fast path: one pattern for the whole batch.
        if let Some(p) = scalar_str(&args.args[1]) {
            let Some(p) = p else {
                return Ok(ColumnarValue::Scalar(ScalarValue::Boolean(None)));
            };
            let re = compile(&p)?;
            return super::map_bool(&args.args[0], rows, |v| Some(re.is_match(v)));
        }
        let values = strings(&args.args[0], rows)?;
        let patterns = strings(&args.args[1], rows)?;
        let mut cache: Option<(String, Regex)> = None;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn m(v: &str, p: &str) -> bool {
        fnmatch_regex(p).unwrap().is_match(v)
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
