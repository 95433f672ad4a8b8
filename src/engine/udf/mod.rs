//! Security SQL functions, usable everywhere SQL is (queries, rules, policies).
//!
//! | function | returns |
//! |---|---|
//! | `glob_match(value, pattern)` | value matches an fnmatch pattern (`*`, `?`, `[seq]`, `[!seq]`) |
//! | `glob_match_any(value, pattern, …)` | value matches any of the patterns |
//! | `glob_map_match(key, value, mapping)` | NULL if no key pattern of the JSON mapping matches `key`, else whether `value` matches a pattern listed for it |
//! | `cidr_contains(cidr, ip)` | the IPv4/IPv6 address is inside the network |
//! | `ip_in_cidrs(ip, cidr, …)` | the address is inside any of the (literal) networks |
//! | `is_private_ip(ip)` / `is_public_ip(ip)` | address is (not) private, loopback, link-local, … |
//! | `arn_partition/arn_service/arn_region/arn_account/arn_resource(arn)` | that part of an ARN |
//! | `grants_allow_public(grants, permission)` | an ACL (JSON) gives AllUsers/AuthenticatedUsers the permission |
//! | `policy_denies_insecure_transport(policy)` | a bucket policy (JSON) denies requests without TLS |
//! | `policy_allows_public(policy)` | a bucket policy (JSON) allows `*` without a condition |
//!
//! All take NULL to NULL. A value that is not an address or ARN gives NULL; a literal pattern or
//! CIDR that is invalid is an error when the query is planned, naming the function and value.
//! The `json_*` functions of datafusion-functions-json are registered too (see
//! [`register`]).

/// A function of one fixed signature: its struct (holding the signature), `new` and `Default`.
macro_rules! function_struct {
    ($(#[$doc:meta])* $name:ident, $signature:expr) => {
        $(#[$doc])*
        #[derive(Debug, PartialEq, Eq, Hash)]
        pub struct $name {
            signature: Signature,
        }

        impl $name {
            pub fn new() -> Self {
                $name {
                    signature: $signature,
                }
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }
    };
}

mod arn;
mod bucket;
mod cidr;
mod glob;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, ScalarValue, exec_err};
use datafusion::logical_expr::{ColumnarValue, Expr, ScalarUDF};
use datafusion::prelude::SessionContext;

pub use crate::parse::ip::parse_ip;
pub use arn::ArnPart;
pub use bucket::{BucketCheck, Check};
pub use cidr::{CidrContains, IpClass, IpInCidrs, parse_cidr};
pub use glob::{Glob, GlobMapMatch, GlobMatch, GlobMatchAny, fnmatch_regex};

/// Every seclake function.
pub fn all() -> Vec<ScalarUDF> {
    let mut out = vec![
        ScalarUDF::from(GlobMatch::new()),
        ScalarUDF::from(GlobMatchAny::new()),
        ScalarUDF::from(GlobMapMatch::new()),
        ScalarUDF::from(CidrContains::new()),
        ScalarUDF::from(IpInCidrs::new()),
        ScalarUDF::from(BucketCheck::new(Check::GrantsAllowPublic)),
        ScalarUDF::from(BucketCheck::new(Check::DeniesInsecureTransport)),
        ScalarUDF::from(BucketCheck::new(Check::AllowsPublic)),
        ScalarUDF::from(IpClass::new(true)),
        ScalarUDF::from(IpClass::new(false)),
    ];
    out.extend(
        arn::Part::ALL
            .iter()
            .map(|p| ScalarUDF::from(ArnPart::new(*p))),
    );
    out
}

/// Register seclake's functions and the JSON functions on a session.
pub fn register(ctx: &mut SessionContext) -> DfResult<()> {
    for f in all() {
        ctx.register_udf(f);
    }
    datafusion_functions_json::register_all(ctx)?;
    Ok(())
}

/// Where seclake's functions appear in the function documentation.
fn section() -> datafusion::logical_expr::DocSection {
    datafusion::logical_expr::DocSection {
        include: true,
        label: "Security Functions",
        description: None,
    }
}

/// A string argument as a Utf8 array of `rows` rows (scalars are expanded).
fn strings(arg: &ColumnarValue, rows: usize) -> DfResult<StringArray> {
    let array: ArrayRef = arg.to_array(rows)?;
    let array = if array.data_type() == &DataType::Utf8 {
        array
    } else {
        arrow::compute::cast(&array, &DataType::Utf8)?
    };
    Ok(array.as_string::<i32>().clone())
}

/// The string value of a scalar argument: `Some(None)` for a NULL literal, `None` for an array.
fn scalar_str(arg: &ColumnarValue) -> Option<Option<String>> {
    match arg {
        ColumnarValue::Scalar(s) => Some(match s {
            ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
                v.clone()
            }
            s if s.is_null() => None,
            s => Some(s.to_string()),
        }),
        ColumnarValue::Array(_) => None,
    }
}

/// The string of a literal expression, if the expression is one.
fn literal_str(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)), _)
        | Expr::Literal(ScalarValue::LargeUtf8(Some(s)), _)
        | Expr::Literal(ScalarValue::Utf8View(Some(s)), _) => Some(s),
        _ => None,
    }
}

/// Apply `f` to each string of `arg`, NULL to NULL (and where `f` answers `None`).
///
/// Answers are gathered as bytes and packed into the value and validity bitmaps 64 at a
/// time, not pushed through `Option<bool>` into a builder: these functions run over every
/// event of a rule (`NOT ip_in_cidrs(remoteip, …)`).
fn map_bool(
    arg: &ColumnarValue,
    rows: usize,
    mut f: impl FnMut(&str) -> Option<bool>,
) -> DfResult<ColumnarValue> {
    use arrow::buffer::{BooleanBuffer, NullBuffer};
    const NULL: u8 = 2;
    if let Some(v) = scalar_str(arg) {
        return Ok(ColumnarValue::Scalar(ScalarValue::Boolean(
            v.and_then(|s| f(&s)),
        )));
    }
    let a = strings(arg, rows)?;
    let answers: Vec<u8> = (0..a.len())
        .map(|i| {
            if a.is_null(i) {
                return NULL;
            }
            f(a.value(i)).map_or(NULL, u8::from)
        })
        .collect();
    let n = answers.len();
    let values = BooleanBuffer::collect_bool(n, |i| answers[i] == 1);
    let nulls = answers
        .contains(&NULL)
        .then(|| NullBuffer::new(BooleanBuffer::collect_bool(n, |i| answers[i] != NULL)));
    Ok(ColumnarValue::Array(Arc::new(BooleanArray::new(
        values, nulls,
    ))))
}

/// Apply the total predicate `f` to each string of `arg`, NULL to NULL: the answers go
/// straight into a bitmap and the input's null mask is reused.
fn map_pred(
    arg: &ColumnarValue,
    rows: usize,
    mut f: impl FnMut(&str) -> bool,
) -> DfResult<ColumnarValue> {
    if let Some(v) = scalar_str(arg) {
        return Ok(ColumnarValue::Scalar(ScalarValue::Boolean(
            v.map(|s| f(&s)),
        )));
    }
    // A dictionary of no more values than rows (as parsers intern them): each value once, and
    // each row its key's answer, instead of a copy of every row's string matched row by row.
    if let ColumnarValue::Array(a) = arg
        && let Some(d) = a.as_dictionary_opt::<arrow::datatypes::Int32Type>()
        && let Some(values) = d.values().as_string_opt::<i32>()
        && values.len() <= a.len()
    {
        let answers = arrow::buffer::BooleanBuffer::collect_bool(values.len(), |i| {
            // SAFETY: i < values.len(); NULL slots hold an empty (valid) string.
            f(unsafe { values.value_unchecked(i) })
        });
        let keys = d.keys().values();
        // (The key of a NULL row may be anything: such rows answer false, under the mask.)
        let out = arrow::buffer::BooleanBuffer::collect_bool(keys.len(), |r| {
            answers.len() > keys[r] as usize && answers.value(keys[r] as usize)
        });
        return Ok(ColumnarValue::Array(Arc::new(BooleanArray::new(
            out,
            d.logical_nulls(),
        ))));
    }
    let a = strings(arg, rows)?;
    let values = arrow::buffer::BooleanBuffer::collect_bool(a.len(), |i| {
        // SAFETY: i < a.len(); NULL slots hold an empty (valid) string.
        f(unsafe { a.value_unchecked(i) })
    });
    Ok(ColumnarValue::Array(Arc::new(BooleanArray::new(
        values,
        a.nulls().cloned(),
    ))))
}

fn expect_args(name: &str, args: &[ColumnarValue], n: usize) -> DfResult<()> {
    if args.len() != n {
        return exec_err!("{name} takes {n} argument(s), got {}", args.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, Int32Array};
    use arrow::datatypes::Int32Type;
    use proptest::prelude::*;

    proptest! {
        /// Over a dictionary, `map_pred` answers as over the same strings decoded, NULLs (in
        /// the keys or the values) included, whatever a NULL row's key holds.
        #[test]
        fn map_pred_on_a_dictionary_is_map_pred_on_its_strings(
            values in proptest::collection::vec(proptest::option::weighted(0.9, "[ab]{0,3}"), 1..6),
            rows in proptest::collection::vec(proptest::option::weighted(0.8, 0usize..100), 0..40),
        ) {
            let n = values.len();
            let keys = Int32Array::from_iter(rows.iter().map(|r| r.map(|k| (k % n) as i32)));
            // A NULL row's key set past the values, as a writer may leave it.
            let (_, keys_buf, nulls) = keys.into_parts();
            let keys_buf: Vec<i32> = keys_buf
                .iter()
                .enumerate()
                .map(|(i, &k)| if rows[i].is_none() { 1000 } else { k })
                .collect();
            let keys = Int32Array::new(keys_buf.into(), nulls);
            let dict = DictionaryArray::<Int32Type>::try_new(
                keys,
                Arc::new(StringArray::from(values.clone())),
            )
            .unwrap();
            let rows_n = dict.len();
            let plain: ArrayRef = arrow::compute::cast(&dict, &DataType::Utf8).unwrap();
            let pred = |s: &str| s.starts_with('a');
            let got = map_pred(&ColumnarValue::Array(Arc::new(dict)), rows_n, pred)
                .unwrap()
                .into_array(rows_n)
                .unwrap();
            let want = map_pred(&ColumnarValue::Array(plain), rows_n, pred)
                .unwrap()
                .into_array(rows_n)
                .unwrap();
            prop_assert_eq!(got.as_ref(), want.as_ref());
        }
    }
}
