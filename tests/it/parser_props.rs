//! Property tests for the S3 access log parser: random records rendered as log lines parse
//! back to the same values; arbitrary bytes never panic and always add up.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};
use proptest::prelude::*;
use seclake::parse::s3_access::S3AccessParser;
use seclake::parse::{Parser, SourceInfo};
use seclake::schema::Registry;

fn parser() -> S3AccessParser {
    S3AccessParser::new(
        Registry::builtin()
            .unwrap()
            .get("AWS.S3ServerAccess")
            .unwrap(),
    )
    .unwrap()
}

fn src() -> SourceInfo {
    SourceInfo {
        id: "ffffffffffffffffffffffffffffffff".into(),
        label: "prop".into(),
    }
}

/// A field value: `None` renders as `-`.
#[derive(Debug, Clone)]
enum V {
    Plain(Option<String>),
    Quoted(Option<String>),
    Int(Option<i64>),
}

fn plain() -> impl Strategy<Value = Option<String>> {
    prop::option::of("[A-Za-z0-9:/._%=+-]{1,30}".prop_filter("not '-'", |s| s != "-"))
}

fn quoted() -> impl Strategy<Value = Option<String>> {
    prop::option::of("[ -~]{0,40}".prop_filter("not '-'", |s| s != "-"))
}

fn record() -> impl Strategy<Value = (i64, Vec<V>, usize, Vec<String>)> {
    let strings = prop::collection::vec(plain(), 27);
    let quotes = prop::collection::vec(quoted(), 3);
    let ints = prop::collection::vec(prop::option::of(0i64..10_000_000_000), 5);
    let extra = prop::collection::vec("[a-z0-9-]{1,8}".prop_filter("not '-'", |s| s != "-"), 0..3);
    (
        0i64..4_000_000_000,
        strings,
        quotes,
        ints,
        prop::sample::select(vec![18usize, 24, 26, 27]),
        extra,
    )
        .prop_map(|(secs, strings, quotes, ints, n, extra)| {
            let mut fields = Vec::new();
            let (mut q, mut i) = (quotes.into_iter(), ints.into_iter());
            for (k, s) in strings.into_iter().enumerate() {
                fields.push(match k {
                    2 => V::Int(Some(secs)),
                    8 | 15 | 16 => V::Quoted(q.next().unwrap()),
                    9 => V::Int(i.next().unwrap().map(|v| v % 1000)),
                    11..=14 => V::Int(i.next().unwrap()),
                    _ => V::Plain(s),
                });
            }
            let extra = if n == 27 { extra } else { vec![] };
            (secs, fields, n, extra)
        })
}

fn render(fields: &[V], n: usize, extra: &[String]) -> String {
    let mut out = Vec::new();
    for (k, f) in fields.iter().take(n).enumerate() {
        out.push(match f {
            V::Int(Some(secs)) if k == 2 => {
                let t = chrono::DateTime::from_timestamp(*secs, 0).unwrap();
                t.format("[%d/%b/%Y:%H:%M:%S +0000]").to_string()
            }
            V::Int(v) => v.map_or("-".into(), |v| v.to_string()),
            V::Plain(v) => v.clone().unwrap_or_else(|| "-".into()),
            V::Quoted(v) => match v {
                None => "\"-\"".into(),
                Some(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
            },
        });
    }
    out.extend(extra.iter().cloned());
    out.join(" ")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn rendered_records_parse_back((secs, fields, n, extra) in record()) {
        let line = render(&fields, n, &extra);
        let p = parser().parse_chunk(line.as_bytes(), 1, &src(), 0).unwrap();
        prop_assert!(p.quarantined.is_empty(), "{:?} for {line}", p.quarantined);
        let b = p.batch.unwrap();
        let names = seclake::parse::s3_access::FIELDS;
        for (k, f) in fields.iter().enumerate() {
            let col = b.column_by_name(names[k].0).unwrap();
            let present = k < n;
            match f {
                V::Int(_) if k == 2 => {
                    let t = col.as_primitive::<TimestampMicrosecondType>();
                    prop_assert_eq!(t.value(0), secs * 1_000_000);
                }
                V::Int(v) => {
                    let got = if k == 9 {
                        let a = col.as_primitive::<Int32Type>();
                        a.is_valid(0).then(|| a.value(0) as i64)
                    } else {
                        let a = col.as_primitive::<Int64Type>();
                        a.is_valid(0).then(|| a.value(0))
                    };
                    prop_assert_eq!(got, if present { *v } else { None }, "field {}", names[k].0);
                }
                V::Plain(v) | V::Quoted(v) => {
                    // Interned columns are dictionaries: read as the strings they stand for.
                    let a = arrow::compute::cast(col, &arrow::datatypes::DataType::Utf8).unwrap();
                    let a = a.as_string::<i32>();
                    let got = a.is_valid(0).then(|| a.value(0).to_string());
                    prop_assert_eq!(got, if present { v.clone() } else { None }, "field {} of {}", names[k].0, line);
                }
            }
        }
        let extra_col = b.column_by_name("additionalfields").unwrap().as_list::<i32>();
        if extra.is_empty() {
            prop_assert!(extra_col.is_null(0));
        } else {
            let v = extra_col.value(0);
            let got: Vec<String> = (0..v.len()).map(|i| v.as_string::<i32>().value(i).to_string()).collect();
            prop_assert_eq!(got, extra);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_add_up(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let p = parser().parse_chunk(&bytes, 1, &src(), 0).unwrap();
        let rows = p.batch.map_or(0, |b| b.num_rows() as u64);
        prop_assert_eq!(rows + p.quarantined.len() as u64, p.lines);
    }

    #[test]
    fn mutated_real_lines_never_panic(cut in 0usize..600, insert in "[ \"\\[\\]\\\\-]{0,4}") {
        let base = "79a59df9 b [06/Feb/2019:00:00:38 +0000] 192.0.2.3 arn:aws:iam::1:user/x 3E5 REST.GET.OBJECT k \"GET /k HTTP/1.1\" 200 - 113 - 7 - \"-\" \"UA \\\"x\\\"\" - h SigV4 C AuthHeader host TLSv1.2 - - r";
        let cut = cut.min(base.len());
        let cut = (0..=cut).rev().find(|c| base.is_char_boundary(*c)).unwrap();
        let line = format!("{}{}{}", &base[..cut], insert, &base[cut..]);
        let p = parser().parse_chunk(line.as_bytes(), 1, &src(), 0).unwrap();
        let rows = p.batch.map_or(0, |b| b.num_rows() as u64);
        prop_assert_eq!(rows + p.quarantined.len() as u64, p.lines);
    }
}
