//! Indicator extraction: the `p_any_*` lists, computed from the columns a schema marks.
//!
//! One pass over the parsed columns per batch, generic over log types: each `p_any_*` column
//! collects, per row, the valid values of every column that feeds it, de-duplicated, in column
//! order. An empty list is stored as NULL (as Panther omits the field).

use std::sync::Arc;

use arrow::array::builder::NullBufferBuilder;
use arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, ListArray, ListBuilder, StringArray, StringBuilder,
};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Int32Type};
use std::collections::HashMap;

use crate::schema::{Indicator, LogSchema};

/// How one `p_any_*` column is filled: its name and the (column, kind) pairs feeding it.
#[derive(Debug, Clone)]
struct Output {
    column: &'static str,
    sources: Vec<(usize, Indicator)>,
}

/// The plan for a log type: which columns feed which list.
#[derive(Debug, Clone)]
pub struct IndicatorPlan {
    outputs: Vec<Output>,
}

impl IndicatorPlan {
    /// Build the plan for a schema; outputs follow [`LogSchema::indicator_columns`].
    pub fn new(schema: &LogSchema) -> Self {
        let outputs = schema
            .indicator_columns()
            .into_iter()
            .map(|column| {
                let mut sources = Vec::new();
                for (i, c) in schema.columns.iter().enumerate() {
                    for &kind in &c.indicators {
                        if feeds(kind, column) {
                            sources.push((i, kind));
                        }
                    }
                }
                Output { column, sources }
            })
            .collect();
        IndicatorPlan { outputs }
    }

    /// Compute every `p_any_*` column for `columns` (the declared columns of a batch).
    pub fn build(&self, columns: &[ArrayRef], rows: usize) -> Vec<ArrayRef> {
        self.outputs
            .iter()
            .map(|out| build_output(out, columns, rows))
            .collect()
    }
}

/// True when values of `kind` contribute to the list `column`: their own list, and for ARNs
/// also the account list (the ARN's account).
pub fn feeds(kind: Indicator, column: &str) -> bool {
    kind.column() == column || (kind == Indicator::AwsArn && column == ACCOUNTS)
}

const ACCOUNTS: &str = "p_any_aws_account_ids";

/// A column feeding a list, downcast once per batch rather than once per row.
enum Feed<'a> {
    Str(&'a StringArray),
    List(&'a ListArray, &'a StringArray),
    /// A dictionary column: its keys, and what each distinct value yields (classified once).
    Dict(&'a Int32Array, Vec<Option<&'a str>>),
}

fn build_output(out: &Output, columns: &[ArrayRef], rows: usize) -> ArrayRef {
    let feeds: Vec<(Feed, Indicator)> = out
        .sources
        .iter()
        .filter_map(|&(col, kind)| {
            let array = &columns[col];
            let feed = match array.data_type() {
                DataType::Utf8 => Feed::Str(array.as_string::<i32>()),
                DataType::List(_) => {
                    let l = array.as_list::<i32>();
                    Feed::List(l, l.values().as_string_opt::<i32>()?)
                }
                DataType::Dictionary(k, _) if **k == DataType::Int32 => {
                    let d = array.as_dictionary::<Int32Type>();
                    let values = d.values().as_string_opt::<i32>()?;
                    let classified = (values.iter())
                        .map(|v| v.and_then(|v| classify(v, kind, out.column)))
                        .collect();
                    Feed::Dict(d.keys(), classified)
                }
                _ => return None,
            };
            Some((feed, kind))
        })
        .collect();
    if feeds.iter().all(|(f, _)| matches!(f, Feed::Dict(..))) {
        return from_dictionaries(&feeds, rows);
    }
    // Every value is part of a value of a feed, once per row: the feeds' bytes bound the list's,
    // so its buffer is never grown (a copy into fresh pages).
    let bound: usize = feeds
        .iter()
        .map(|(f, _)| match f {
            Feed::Str(a) => a.value_data().len(),
            Feed::List(_, s) => s.value_data().len(),
            Feed::Dict(keys, classified) => (keys.iter())
                .map(|k| k.and_then(|k| classified[k as usize]).map_or(0, str::len))
                .sum(),
        })
        .sum();
    let mut builder = ListBuilder::with_capacity(StringBuilder::with_capacity(rows, bound), rows);
    let mut values: Vec<&str> = Vec::with_capacity(8);
    for row in 0..rows {
        values.clear();
        for (feed, kind) in &feeds {
            match feed {
                Feed::Str(a) => {
                    if a.is_valid(row) {
                        collect(a.value(row), *kind, out.column, &mut values);
                    }
                }
                Feed::Dict(keys, classified) => {
                    if keys.is_valid(row)
                        && let Some(v) = classified[keys.value(row) as usize]
                        && !values.contains(&v)
                    {
                        values.push(v);
                    }
                }
                Feed::List(l, s) => {
                    if l.is_valid(row) {
                        let offsets = l.value_offsets();
                        for i in offsets[row] as usize..offsets[row + 1] as usize {
                            if s.is_valid(i) {
                                collect(s.value(i), *kind, out.column, &mut values);
                            }
                        }
                    }
                }
            }
        }
        if values.is_empty() {
            builder.append_null();
        } else {
            for v in &values {
                builder.values().append_value(v);
            }
            builder.append(true);
        }
    }
    Arc::new(builder.finish())
}

/// [`build_output`] when every feed is a dictionary column (what the access-log parser
/// hands over): the values the feeds' dictionaries yield are numbered once, so a row's list
/// is de-duplicated comparing numbers, and the list's buffers are written directly, each
/// value's bytes copied once, instead of through `ListBuilder` (a call with its own checks
/// per value and per row).
fn from_dictionaries(feeds: &[(Feed, Indicator)], rows: usize) -> ArrayRef {
    const NONE: u32 = u32::MAX;
    let mut distinct: Vec<&str> = Vec::new();
    let mut numbered_as: HashMap<&str, u32> = HashMap::new();
    // Per feed: its keys, and the number of the value each key yields (`NONE` for none).
    let feeds: Vec<(&Int32Array, Vec<u32>)> = feeds
        .iter()
        .map(|(f, _)| {
            let Feed::Dict(keys, classified) = f else {
                unreachable!("dictionary feeds only")
            };
            let numbered = (classified.iter())
                .map(|v| match v {
                    Some(v) => *numbered_as.entry(v).or_insert_with(|| {
                        distinct.push(v);
                        distinct.len() as u32 - 1
                    }),
                    None => NONE,
                })
                .collect();
            (*keys, numbered)
        })
        .collect();
    let number = |(keys, numbered): &(&Int32Array, Vec<u32>), row: usize| {
        if keys.is_valid(row) {
            numbered[keys.values()[row] as usize]
        } else {
            NONE
        }
    };
    // The rows' value numbers first, then their bytes into a buffer sized exactly (a growing
    // one would be copied into fresh pages).
    let mut numbers: Vec<u32> = Vec::with_capacity(rows);
    let mut list_offsets: Vec<i32> = Vec::with_capacity(rows + 1);
    list_offsets.push(0);
    let mut valid = NullBufferBuilder::new(rows);
    let mut bytes = 0;
    for row in 0..rows {
        let first = numbers.len();
        for feed in &feeds {
            let n = number(feed, row);
            if n != NONE && !numbers[first..].contains(&n) {
                numbers.push(n);
                bytes += distinct[n as usize].len();
            }
        }
        list_offsets.push(numbers.len() as i32);
        valid.append(numbers.len() > first);
    }
    let mut data: Vec<u8> = Vec::with_capacity(bytes);
    let mut value_offsets: Vec<i32> = Vec::with_capacity(numbers.len() + 1);
    value_offsets.push(0);
    for &n in &numbers {
        data.extend_from_slice(distinct[n as usize].as_bytes());
        value_offsets.push(data.len() as i32);
    }
    // SAFETY: the value offsets start at 0 and end each value's bytes, copied from a `&str`;
    // the list offsets start at 0, never decrease and end at the number of values.
    let strings = unsafe {
        StringArray::new_unchecked(
            OffsetBuffer::new_unchecked(ScalarBuffer::from(value_offsets)),
            Buffer::from_vec(data),
            None,
        )
    };
    let list = ListArray::new(
        Arc::new(Field::new_list_field(DataType::Utf8, true)),
        // SAFETY: as above.
        unsafe { OffsetBuffer::new_unchecked(ScalarBuffer::from(list_offsets)) },
        Arc::new(strings),
        valid.finish(),
    );
    Arc::new(list)
}

/// Add the indicator value `raw` yields for `kind` in list `column` to `values`, once.
pub fn collect<'a>(raw: &'a str, kind: Indicator, column: &str, values: &mut Vec<&'a str>) {
    if let Some(v) = classify(raw, kind, column)
        && !values.contains(&v)
    {
        values.push(v);
    }
}

/// The indicator value `raw` yields for `kind` in list `column`, if it is one.
pub fn classify<'a>(raw: &'a str, kind: Indicator, column: &str) -> Option<&'a str> {
    // Values rarely have surrounding whitespace: `str::trim` (Unicode-aware) only when an end
    // byte could be whitespace (ASCII space or control, or the start of a multi-byte char).
    let plain = |b: Option<&u8>| b.is_some_and(|&b| b > b' ' && b < 0x80);
    let bytes = raw.as_bytes();
    let raw = if plain(bytes.first()) && plain(bytes.last()) {
        raw
    } else {
        raw.trim()
    };
    match kind {
        Indicator::AwsArn if column == ACCOUNTS => arn_account(raw),
        Indicator::Ip => super::ip::parse_ip(raw).is_some().then_some(raw),
        Indicator::AwsArn => raw.starts_with("arn:").then_some(raw),
        Indicator::AwsAccountId => is_account_id(raw).then_some(raw),
        Indicator::Domain => is_domain(raw).then_some(raw),
        Indicator::AwsInstanceId => is_instance_id(raw).then_some(raw),
        Indicator::Username => (!raw.is_empty()).then_some(raw),
    }
}

/// Whether a string under JSON key `key` (inside a free-form block) can be an indicator of
/// `kind`: ARNs count under any key; other kinds only under keys named for them
/// (`sourceIPAddress`, `instanceId`, `accountId`, `privateDnsName`, `userName`, …), so a
/// random string that happens to look like an id is not taken for one.
pub fn key_feeds(kind: Indicator, key: &str) -> bool {
    let k = |s: &str| contains_ignore_case(key, s);
    match kind {
        Indicator::AwsArn => true,
        Indicator::Ip => {
            k("ipaddress")
                || k("ipv4")
                || k("ipv6")
                || key.ends_with("Ip")
                || key.ends_with("IP")
                || key.eq_ignore_ascii_case("ip")
        }
        Indicator::AwsAccountId => k("accountid") || key.eq_ignore_ascii_case("ownerid"),
        Indicator::AwsInstanceId => k("instanceid"),
        Indicator::Domain => {
            k("dnsname") || k("domain") || k("hostname") || key.eq_ignore_ascii_case("host")
        }
        Indicator::Username => key.eq_ignore_ascii_case("username"),
    }
}

fn contains_ignore_case(hay: &str, lower_needle: &str) -> bool {
    hay.len() >= lower_needle.len()
        && hay
            .as_bytes()
            .windows(lower_needle.len())
            .any(|w| w.eq_ignore_ascii_case(lower_needle.as_bytes()))
}

/// The account id of an ARN (`arn:partition:service:region:account:resource`), if it has one.
///
/// A byte scan rather than `splitn(6, ':')`: every requester ARN of an access log comes through
/// here, and `str::split` searched for each colon with a `memchr` call (2% of an ingest's
/// instructions).
pub fn arn_account(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?.as_bytes();
    // Past partition, service and region, each ended by a colon.
    let mut at = 0;
    for _ in 0..3 {
        at += rest.get(at..)?.iter().position(|&b| b == b':')? + 1;
    }
    // Then the account: exactly 12 digits, ending the ARN or followed by a colon.
    let account = rest.get(at..at + 12)?;
    (account.iter().all(u8::is_ascii_digit) && matches!(rest.get(at + 12), None | Some(b':')))
        .then(|| &arn[4 + at..4 + at + 12])
}

/// True for a 12-digit AWS account id.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_domain(s: &str) -> bool {
    s.len() < 254
        && s.contains('.')
        && super::ip::parse_ip(s).is_none()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn is_instance_id(s: &str) -> bool {
    s.strip_prefix("i-")
        .is_some_and(|h| (8..=17).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_accounts() {
        assert_eq!(
            arn_account("arn:aws:iam::123456789012:user/alice"),
            Some("123456789012")
        );
        assert_eq!(arn_account("arn:aws:s3:::bucket"), None);
        assert_eq!(
            arn_account("arn:aws:iam::cloudfront:user/CloudFront Origin"),
            None
        );
        assert_eq!(arn_account("nope"), None);
        assert_eq!(
            arn_account("arn:aws:iam::123456789012"),
            Some("123456789012")
        );
        assert_eq!(arn_account("arn:aws:iam::1234567890123:user/a"), None);
        assert_eq!(arn_account("arn:aws:iam::12345678901:user/a"), None);
        assert_eq!(arn_account("arn:aws:iam::12345678901x:user/a"), None);
        assert_eq!(arn_account("arn:aws:iam:"), None);
        assert_eq!(
            arn_account("arn:aws-cn:sts:cn-north-1:123456789012:assumed-role/r/s"),
            Some("123456789012")
        );
    }

    proptest::proptest! {
        /// The byte scan agrees with the obvious split on strings made of ARN-ish pieces.
        #[test]
        fn arn_account_is_the_fifth_part(
            parts in proptest::collection::vec(
                proptest::sample::select(vec!["arn", "aws", "", "iam", "123456789012", "1234", "x:y", "12345678901a"]),
                0..8,
            )
        ) {
            let arn = parts.join(":");
            let mut split = arn.splitn(6, ':');
            let expected = (split.next() == Some("arn"))
                .then(|| split.nth(3))
                .flatten()
                .filter(|a| is_account_id(a));
            proptest::prop_assert_eq!(arn_account(&arn), expected);
        }
    }

    proptest::proptest! {
        /// Lists built from dictionary columns hold what the same columns as plain strings
        /// give: each row's values in feed order, once, NULL when there are none.
        #[test]
        fn dictionary_feeds_give_the_lists_plain_ones_do(
            rows in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::option::of(proptest::sample::select(vec![
                        "10.0.0.1", " 10.0.0.1", "::1", "nope", "",
                        "arn:aws:iam::123456789012:user/a", "arn:aws:s3:::b",
                        "arn:aws:iam::210987654321:role/r",
                    ])),
                    3,
                ),
                0..60,
            ),
            sliced in 0usize..3,
        ) {
            use arrow::compute::cast;
            use arrow::datatypes::DataType::{Dictionary, Int32, Utf8};
            // Slices: keys and validity that do not start at 0.
            let from = sliced.min(rows.len());
            let n = rows.len() - from;
            let plain: Vec<ArrayRef> = (0..3)
                .map(|c| Arc::new(StringArray::from_iter(rows.iter().map(|r| r[c]))) as ArrayRef)
                .collect();
            let dicts: Vec<ArrayRef> = plain
                .iter()
                .map(|a| cast(a, &Dictionary(Box::new(Int32), Box::new(Utf8))).unwrap())
                .map(|a| a.slice(from, n))
                .collect();
            let plain: Vec<ArrayRef> = plain.iter().map(|a| a.slice(from, n)).collect();
            for (column, sources) in [
                ("p_any_ip_addresses", vec![(0, Indicator::Ip), (1, Indicator::Ip)]),
                ("p_any_aws_arns", vec![(1, Indicator::AwsArn), (2, Indicator::AwsArn)]),
                ("p_any_aws_account_ids", vec![(2, Indicator::AwsArn), (0, Indicator::AwsArn)]),
            ] {
                let out = Output { column, sources };
                let want = build_output(&out, &plain, n);
                let got = build_output(&out, &dicts, n);
                proptest::prop_assert_eq!(got.as_ref(), want.as_ref(), "{}", column);
            }
        }
    }

    #[test]
    fn value_kinds() {
        assert!(is_instance_id("i-0abc1234567890def"));
        assert!(!is_instance_id("i-xyz"));
        assert!(is_domain("s3.amazonaws.com"));
        assert!(!is_domain("10.0.0.1"));
    }

    #[test]
    fn values_are_trimmed_of_any_whitespace() {
        let ip = |raw| classify(raw, Indicator::Ip, "p_any_ip_addresses");
        assert_eq!(ip("10.0.0.1"), Some("10.0.0.1"));
        assert_eq!(ip(" 10.0.0.1\t"), Some("10.0.0.1"));
        assert_eq!(ip("\u{a0}10.0.0.1\u{2003}"), Some("10.0.0.1"));
        assert_eq!(ip("10.0.0.1\n"), Some("10.0.0.1"));
        assert_eq!(ip("é10.0.0.1"), None);
        assert_eq!(ip(""), None);
        assert_eq!(ip(" "), None);
    }
}
