//! JSON log types (CloudTrail and custom JSON-lines types), parsed as their schema says.
//!
//! Input is either one record per line, or documents whose envelope key holds an array of
//! records (`{"Records": [...]}`, as CloudTrail delivers): [`JsonParser::whole_document`]
//! tells the reader which, from the first bytes of a file. An envelope is read in one pass,
//! each record appended as the reader meets it. When anything in it does not go through (a
//! malformed record, a value of the wrong type, a record without event time), the document is
//! read again the careful way: cut into records by a structural scan ([`split`]), each record
//! then parsed on its own, so that the bad record is quarantined and every other record of
//! the file is kept. Other documents (arrays of records, pretty-printed records) take the
//! careful way directly.
//!
//! Each record is read in one pass into per-record slots, one per leaf column, zero-copy where
//! the text has no escapes; only a record that parsed whole is appended to the column
//! builders. The reader is `scan`, made for this; what it declines (malformed text, above
//! all) serde_json reads instead (`NodeSeed`), to the same slots or to the error that
//! quarantines the record. Keys match column paths case-insensitively (`eventTime` → `eventtime`).
//! Free-form blocks (`json` columns) keep the record's exact text. Fields the schema does not
//! declare, at any depth, go to the `unknown_fields` column under their dotted path, so a field
//! AWS adds later is queryable, not lost.
//!
//! Indicators: string leaves feed their `p_any_*` lists as declared; `json` leaves with
//! indicators are scanned for ARNs anywhere and for IPs, account ids, instance ids, domains and
//! user names under keys named for them ([`crate::parse::indicators::key_feeds`]).
//!
//! A record is quarantined, with the reason naming the record and the field, when it is not a
//! JSON object, is malformed, has a value that does not fit its column's type, or has no event
//! time. A document holding none of the records but one of `skip_documents_with`'s keys (a
//! CloudTrail digest file) is skipped with a note.

mod keys;
mod scan;
pub mod split;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBufferBuilder, BooleanBuilder, ListArray, ListBuilder,
    StringBuilder, StructArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{
    DataType, Field, Fields, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::columns::{DictCol, NumCol, StrCol};
use super::indicators::{classify, feeds, key_feeds};
use super::time::TimeFormat;
use super::{
    Parsed, Parser, Part, Quarantined, RowSources, SourceInfo, StandardFields, is_blank, lines,
    utf8,
};
use crate::error::{Error, Result};
use crate::schema::{Column, ColumnType, Indicator, LogSchema};

/// How a leaf value is read and stored.
#[derive(Debug, Clone)]
enum Kind {
    Str,
    Json,
    I32,
    I64,
    F64,
    Bool,
    Time(TimeFormat),
    List(Box<Kind>),
}

impl Kind {
    fn of(c: &Column, ty: &ColumnType) -> Result<Kind, String> {
        Ok(match ty {
            ColumnType::String => Kind::Str,
            ColumnType::Json => Kind::Json,
            ColumnType::Int => Kind::I32,
            ColumnType::BigInt => Kind::I64,
            ColumnType::Double => Kind::F64,
            ColumnType::Boolean => Kind::Bool,
            ColumnType::Timestamp => Kind::Time(match &c.time_format {
                Some(f) => TimeFormat::parse(f)?,
                None => TimeFormat::Rfc3339,
            }),
            ColumnType::Array(inner) => Kind::List(Box::new(Kind::of(c, inner)?)),
            ColumnType::Struct => return Err("a struct is not a leaf".into()),
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Json => "JSON",
            Kind::I32 => "an int",
            Kind::I64 => "a bigint",
            Kind::F64 => "a double",
            Kind::Bool => "a boolean",
            Kind::Time(_) => "a timestamp",
            Kind::List(_) => "an array",
        }
    }
}

/// A value read for one leaf of one record.
#[derive(Debug, Clone, PartialEq)]
enum Val<'a> {
    Null,
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<Val<'a>>),
}

/// A column the record's values land in (a top-level column or a struct's field).
#[derive(Debug)]
struct Leaf {
    kind: Kind,
    /// Dotted column name, for errors (`useridentity.arn`).
    name: String,
    /// Indicator kinds, each with the indicator outputs (indexes) it feeds.
    indicators: Vec<(Indicator, Vec<usize>)>,
    /// Interned as it is built ([`DictCol`]): one of [`LogSchema::interned_columns`].
    intern: bool,
}

/// An object level of the record: its keys (lower case) and, for a struct column, its id.
#[derive(Debug, Default)]
struct Node {
    keys: keys::Keys<Child>,
    struct_id: Option<usize>,
    /// Dotted JSON path of this object, for unknown-field names (`userIdentity.`).
    prefix: String,
}

#[derive(Debug)]
enum Child {
    Leaf(usize),
    Node(Node),
}

/// How the output columns are assembled from leaves and struct validity.
#[derive(Debug)]
enum Out {
    Leaf(usize),
    Struct {
        id: usize,
        fields: Fields,
        children: Vec<Out>,
    },
}

/// The compiled schema.
#[derive(Debug)]
struct Plan {
    root: Node,
    leaves: Vec<Leaf>,
    structs: usize,
    columns: Vec<Out>,
    event_time: usize,
    unknown: Option<usize>,
    records_field: Option<String>,
    skip: Vec<String>,
    detect: Vec<String>,
    outputs: Vec<&'static str>,
    /// `"<records_field>"` and `"<skip key>"`, to tell plain records apart cheaply.
    needles: Vec<memchr::memmem::Finder<'static>>,
}

impl Plan {
    fn new(schema: &LogSchema) -> Result<Plan, String> {
        let opts = schema.json.clone().unwrap_or_default();
        let outputs = schema.indicator_columns();
        let mut plan = Plan {
            root: Node::default(),
            leaves: Vec::new(),
            structs: 0,
            columns: Vec::new(),
            event_time: 0,
            unknown: None,
            records_field: opts.records_field.clone(),
            skip: opts.skip_documents_with.clone(),
            detect: opts.detect.clone(),
            outputs,
            needles: opts
                .records_field
                .iter()
                .chain(&opts.skip_documents_with)
                .map(|k| memchr::memmem::Finder::new(format!("\"{k}\"").as_bytes()).into_owned())
                .collect(),
        };
        let interned = schema.interned_columns();
        let mut root = Node::default();
        for c in &schema.columns {
            let out = if opts.unknown_fields.as_deref() == Some(c.name.as_str()) {
                let id = plan.leaf(c, &c.ty, c.name.clone())?;
                plan.unknown = Some(id);
                Out::Leaf(id)
            } else {
                plan.add(&mut root, c, "")?
            };
            if c.name == schema.event_time
                && let Out::Leaf(id) = out
            {
                plan.event_time = id;
            }
            if let Out::Leaf(id) = out
                && interned.contains(&c.name)
            {
                plan.leaves[id].intern = true;
            }
            plan.columns.push(out);
        }
        plan.root = root;
        Ok(plan)
    }

    fn leaf(&mut self, c: &Column, ty: &ColumnType, name: String) -> Result<usize, String> {
        let kind = Kind::of(c, ty).map_err(|e| format!("column {name:?}: {e}"))?;
        let indicators = c
            .indicators
            .iter()
            .map(|&k| {
                let outs = (self.outputs.iter().enumerate())
                    .filter(|(_, o)| feeds(k, o))
                    .map(|(i, _)| i)
                    .collect();
                (k, outs)
            })
            .collect();
        self.leaves.push(Leaf {
            kind,
            name,
            indicators,
            intern: false,
        });
        Ok(self.leaves.len() - 1)
    }

    /// Add column `c` under object `node` (whose columns are named `at…`).
    fn add(&mut self, node: &mut Node, c: &Column, at: &str) -> Result<Out, String> {
        let name = format!("{at}{}", c.name);
        let path: Vec<String> = c
            .json_path()
            .split('.')
            .map(str::to_ascii_lowercase)
            .collect();
        let raw_path: Vec<&str> = c.json_path().split('.').collect();
        // Walk (creating) the intermediate objects of a dotted path.
        let mut here = node;
        for (i, seg) in path[..path.len() - 1].iter().enumerate() {
            let prefix = format!("{}{}.", here.prefix, raw_path[i]);
            if !here.keys.contains_key(seg) {
                let node = Node {
                    prefix,
                    ..Node::default()
                };
                here.keys.insert(seg.clone(), Child::Node(node));
            }
            here = match here.keys.get_mut(seg).expect("just inserted") {
                Child::Node(n) if n.struct_id.is_none() => n,
                _ => {
                    return Err(format!(
                        "column {name:?}: path {:?} conflicts with another column",
                        c.json_path()
                    ));
                }
            };
        }
        let last = path.last().expect("split yields one").clone();
        if here.keys.contains_key(&last) {
            return Err(format!(
                "column {name:?}: path {:?} is used by another column",
                c.json_path()
            ));
        }
        let out = if c.ty == ColumnType::Struct {
            let id = self.structs;
            self.structs += 1;
            let mut sub = Node {
                struct_id: Some(id),
                prefix: format!("{}{}.", here.prefix, raw_path[raw_path.len() - 1]),
                ..Node::default()
            };
            let mut children = Vec::new();
            for f in &c.fields {
                children.push(self.add(&mut sub, f, &format!("{name}."))?);
            }
            here.keys.insert(last, Child::Node(sub));
            Out::Struct {
                id,
                fields: c.fields.iter().map(Column::field).collect(),
                children,
            }
        } else {
            let id = self.leaf(c, &c.ty, name)?;
            here.keys.insert(last, Child::Leaf(id));
            Out::Leaf(id)
        };
        Ok(out)
    }
}

/// What [`JsonParser::read_both`] compares: slots, struct presence, unknown fields and
/// indicator lists.
type RecordView<'a> = (
    Vec<Val<'a>>,
    Vec<bool>,
    Vec<(String, &'a str)>,
    Vec<Vec<String>>,
);

/// Drop `v`, inline when it holds nothing to free (`drop_in_place` of a `Val`, recursive
/// through lists, is a call: 2% of CloudTrail ingest's instructions for slots holding
/// borrowed text).
#[inline(always)]
fn release(v: Val<'_>) {
    match v {
        Val::List(_) | Val::Str(Cow::Owned(_)) => drop(v),
        _ => std::mem::forget(v),
    }
}

/// Per-record slots, reused across records.
struct State<'a> {
    vals: Vec<Val<'a>>,
    /// The slots of `vals` set to a value ([`State::set`]).
    filled: Vec<u32>,
    present: Vec<bool>,
    unknown: Vec<(String, &'a str)>,
    /// Free-form leaves with indicators whose string values the reader noted, each with its
    /// range of `strings` (the serde path notes none: the indicators then scan the text).
    blobs: Vec<(usize, usize, usize)>,
    /// (key, value) of each string value in those leaves, as [`split::strings`] gives them.
    strings: Vec<(&'a str, &'a str)>,
}

impl<'a> State<'a> {
    fn new(plan: &Plan) -> Self {
        State {
            vals: vec![Val::Null; plan.leaves.len()],
            filled: Vec::with_capacity(plan.leaves.len()),
            present: vec![false; plan.structs],
            unknown: Vec::new(),
            blobs: Vec::new(),
            strings: Vec::new(),
        }
    }

    /// Leaf `i`'s value for this record.
    #[inline]
    fn set(&mut self, i: usize, v: Val<'a>) {
        if !matches!(v, Val::Null) {
            self.filled.push(i as u32);
        }
        release(std::mem::replace(&mut self.vals[i], v));
    }

    fn reset(&mut self) {
        // Only the slots set since the last reset (most of a record's leaves are absent).
        for i in self.filled.drain(..) {
            release(std::mem::replace(&mut self.vals[i as usize], Val::Null));
        }
        self.present.iter_mut().for_each(|p| *p = false);
        self.unknown.clear();
        self.blobs.clear();
        self.strings.clear();
    }
}

/// A key as the parser found it: borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Reads one object level into the state.
struct NodeSeed<'p, 's, 'a> {
    plan: &'p Plan,
    node: &'p Node,
    st: &'s mut State<'a>,
}

impl<'de, 'p, 's> DeserializeSeed<'de> for NodeSeed<'p, 's, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 'p, 's> Visitor<'de> for NodeSeed<'p, 's, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.node.prefix.is_empty() {
            f.write_str("a JSON object")
        } else {
            write!(
                f,
                "a JSON object at {}",
                self.node.prefix.trim_end_matches('.')
            )
        }
    }

    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let NodeSeed { plan, node, st } = self;
        if let Some(id) = node.struct_id {
            st.present[id] = true;
        }
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match node.keys.get(&key) {
                Some(Child::Leaf(i)) => {
                    let raw = map.next_value::<&'de RawValue>()?.get();
                    if !matches!(st.vals[*i], Val::Null) {
                        st.unknown.push((format!("{}{key}", node.prefix), raw));
                        continue;
                    }
                    let leaf = &plan.leaves[*i];
                    let v = convert(&leaf.kind, raw)
                        .map_err(|e| de::Error::custom(format!("field {}: {e}", leaf.name)))?;
                    st.set(*i, v);
                }
                Some(Child::Node(n)) => map.next_value_seed(NodeSeed {
                    plan,
                    node: n,
                    st: &mut *st,
                })?,
                None => {
                    let raw = map.next_value::<&'de RawValue>()?.get();
                    st.unknown.push((format!("{}{key}", node.prefix), raw));
                }
            }
        }
        Ok(())
    }
}

/// The text of a JSON string literal, borrowed unless it holds escapes.
fn unquote(s: &str) -> Result<Cow<'_, str>, String> {
    let inner = &s[1..s.len() - 1];
    if memchr::memchr(b'\\', inner.as_bytes()).is_none() {
        Ok(Cow::Borrowed(inner))
    } else {
        serde_json::from_str::<String>(s)
            .map(Cow::Owned)
            .map_err(|e| e.to_string())
    }
}

fn shown(s: &str) -> String {
    let mut end = s.len().min(60);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if end < s.len() {
        format!("{}…", &s[..end])
    } else {
        s.to_string()
    }
}

/// Read a raw JSON value as `kind`.
fn convert<'a>(kind: &Kind, s: &'a str) -> Result<Val<'a>, String> {
    let wrong = || format!("expected {}, got {}", kind.name(), shown(s));
    let first = s.as_bytes().first().copied().unwrap_or(b'n');
    if first == b'n' {
        return Ok(Val::Null);
    }
    Ok(match kind {
        Kind::Json => Val::Str(Cow::Borrowed(s)),
        Kind::Str if first == b'"' => Val::Str(unquote(s)?),
        Kind::Str => Val::Str(Cow::Borrowed(s)),
        Kind::List(inner) if first == b'[' => {
            let items: Vec<&'a RawValue> = serde_json::from_str(s).map_err(|e| e.to_string())?;
            Val::List(
                items
                    .into_iter()
                    .map(|r| convert(inner, r.get()))
                    .collect::<Result<_, _>>()?,
            )
        }
        Kind::List(inner) => Val::List(vec![convert(inner, s)?]),
        Kind::Bool => match s {
            "true" | "\"true\"" => Val::Bool(true),
            "false" | "\"false\"" => Val::Bool(false),
            _ => return Err(wrong()),
        },
        Kind::I32 | Kind::I64 | Kind::F64 | Kind::Time(_) => {
            let (text, quoted) = if first == b'"' {
                (unquote(s)?, true)
            } else {
                (Cow::Borrowed(s), false)
            };
            let t = text.trim();
            if quoted && t.is_empty() {
                return Ok(Val::Null);
            }
            match kind {
                Kind::I32 => Val::Int(t.parse::<i32>().map_err(|_| wrong())? as i64),
                Kind::I64 => Val::Int(t.parse::<i64>().map_err(|_| wrong())?),
                Kind::F64 => Val::Float(t.parse::<f64>().map_err(|_| wrong())?),
                Kind::Time(f) => {
                    let us = if quoted {
                        f.parse_text(t)
                    } else {
                        t.parse::<f64>().ok().and_then(|v| f.from_number(v))
                    };
                    Val::Int(us.ok_or_else(wrong)?)
                }
                _ => unreachable!("numeric kinds only"),
            }
        }
    })
}

/// Column builders for a chunk.
enum Builder {
    Str(StrCol),
    Dict(DictCol),
    I32(NumCol<Int32Type>),
    I64(NumCol<Int64Type>),
    F64(NumCol<Float64Type>),
    Bool(BooleanBuilder),
    Time(NumCol<TimestampMicrosecondType>),
    List {
        offsets: Vec<i32>,
        valid: BooleanBufferBuilder,
        item: Box<Builder>,
        field: Arc<Field>,
    },
}

impl Builder {
    /// A builder for `rows` values (and `bytes` of text, for strings).
    fn with_capacity(kind: &Kind, rows: usize, bytes: usize) -> Builder {
        match kind {
            Kind::Str | Kind::Json => Builder::Str(StrCol::with_capacity(rows, bytes)),
            Kind::I32 => Builder::I32(NumCol::with_capacity(rows)),
            Kind::I64 => Builder::I64(NumCol::with_capacity(rows)),
            Kind::F64 => Builder::F64(NumCol::with_capacity(rows)),
            Kind::Bool => Builder::Bool(BooleanBuilder::with_capacity(rows)),
            Kind::Time(_) => Builder::Time(NumCol::with_capacity(rows)),
            Kind::List(inner) => Builder::List {
                offsets: vec![0],
                valid: BooleanBufferBuilder::new(0),
                item: Box::new(Builder::with_capacity(inner, rows, bytes)),
                field: Arc::new(Field::new("item", item_type(inner), true)),
            },
        }
    }

    fn append(&mut self, v: &Val<'_>) {
        match (self, v) {
            (Builder::Str(b), Val::Str(s)) => b.push(s),
            (Builder::Str(b), _) => b.push_null(),
            (Builder::Dict(b), Val::Str(s)) => b.push(s),
            (Builder::Dict(b), _) => b.push_null(),
            (Builder::I32(b), Val::Int(i)) => b.push(*i as i32),
            (Builder::I32(b), _) => b.push_null(),
            (Builder::I64(b), Val::Int(i)) => b.push(*i),
            (Builder::I64(b), _) => b.push_null(),
            (Builder::F64(b), Val::Float(f)) => b.push(*f),
            (Builder::F64(b), _) => b.push_null(),
            (Builder::Bool(b), Val::Bool(x)) => b.append_value(*x),
            (Builder::Bool(b), _) => b.append_null(),
            (Builder::Time(b), Val::Int(i)) => b.push(*i),
            (Builder::Time(b), _) => b.push_null(),
            (
                Builder::List {
                    offsets,
                    valid,
                    item,
                    ..
                },
                v,
            ) => {
                let last = *offsets.last().expect("starts with 0");
                match v {
                    Val::List(items) => {
                        items.iter().for_each(|i| item.append(i));
                        offsets.push(last + items.len() as i32);
                        valid.append(true);
                    }
                    _ => {
                        offsets.push(last);
                        valid.append(false);
                    }
                }
            }
        }
    }

    /// Text bytes held so far (0 for non-text builders).
    fn text_bytes(&self) -> usize {
        match self {
            Builder::Str(b) => b.value_bytes(),
            Builder::Dict(b) => b.value_bytes(),
            Builder::List { item, .. } => item.text_bytes(),
            _ => 0,
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Builder::Str(b) => Arc::new(b.finish()),
            Builder::Dict(b) => Arc::new(b.finish()),
            Builder::I32(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Bool(mut b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
            Builder::List {
                offsets,
                mut valid,
                item,
                field,
            } => Arc::new(ListArray::new(
                field,
                OffsetBuffer::new(offsets.into()),
                item.finish(),
                Some(NullBuffer::new(valid.finish())),
            )),
        }
    }
}

fn item_type(kind: &Kind) -> DataType {
    match kind {
        Kind::Str | Kind::Json => DataType::Utf8,
        Kind::I32 => DataType::Int32,
        Kind::I64 => DataType::Int64,
        Kind::F64 => DataType::Float64,
        Kind::Bool => DataType::Boolean,
        Kind::Time(_) => crate::schema::TIMESTAMP,
        Kind::List(inner) => DataType::List(Arc::new(Field::new("item", item_type(inner), true))),
    }
}

/// Everything a chunk's records are appended to.
struct Batch {
    leaves: Vec<Builder>,
    structs: Vec<BooleanBufferBuilder>,
    indicators: Vec<ListBuilder<StringBuilder>>,
    event_times: Vec<i64>,
    rows: Vec<u64>,
    quarantined: Vec<Quarantined>,
    notes: Vec<String>,
    lines: u64,
    /// Scratch: where each indicator list's values for the current record start.
    starts: Vec<usize>,
    /// The chunk's text is valid UTF-8 (checked once), so records need no check of their own.
    utf8: bool,
}

/// Parses JSON records of one log type.
#[derive(Debug)]
pub struct JsonParser {
    schema: Arc<LogSchema>,
    standard: StandardFields,
    plan: Plan,
    hints: std::sync::Mutex<Hints>,
}

/// Sizes seen in the last chunk, to size the next chunk's builders.
#[derive(Debug, Clone)]
struct Hints {
    /// Input bytes per record.
    record_bytes: usize,
    /// Text bytes per record, per leaf.
    leaf_bytes: Vec<usize>,
}

impl JsonParser {
    /// A parser for `schema` (whose `parser` is `json`).
    pub fn new(schema: Arc<LogSchema>) -> Result<Self> {
        let plan = Plan::new(&schema).map_err(|message| Error::Schema {
            file: schema.log_type.clone(),
            message,
        })?;
        let standard = StandardFields::interned(schema.clone());
        let hints = Hints {
            record_bytes: 1024,
            leaf_bytes: vec![16; plan.leaves.len()],
        };
        Ok(JsonParser {
            schema,
            standard,
            plan,
            hints: std::sync::Mutex::new(hints),
        })
    }

    /// Empty builders for a chunk of `bytes`, sized from what earlier chunks held (so
    /// builders do not grow, copy and fault in fresh pages record after record).
    fn batch(&self, bytes: usize) -> Batch {
        let hints = self.hints.lock().expect("not poisoned").clone();
        // A quarter more than the last chunk's average: chunks vary, and a builder that runs
        // out copies everything it holds into a buffer twice as large.
        let rows = bytes / hints.record_bytes.max(1) * 5 / 4 + 16;
        Batch {
            leaves: (self.plan.leaves.iter().zip(&hints.leaf_bytes))
                .map(|(l, per_row)| match l.intern {
                    // Its text is the distinct values: about the last chunk's bytes of them.
                    true => Builder::Dict(DictCol::with_capacity(rows, rows * per_row)),
                    false => Builder::with_capacity(&l.kind, rows, rows * per_row),
                })
                .collect(),
            structs: (0..self.plan.structs)
                .map(|_| BooleanBufferBuilder::new(1024))
                .collect(),
            indicators: self
                .plan
                .outputs
                .iter()
                .map(|_| {
                    ListBuilder::with_capacity(StringBuilder::with_capacity(rows, rows * 48), rows)
                })
                .collect(),
            event_times: Vec::new(),
            rows: Vec::new(),
            quarantined: Vec::new(),
            notes: Vec::new(),
            lines: 0,
            starts: Vec::with_capacity(self.plan.outputs.len()),
            utf8: false,
        }
    }

    /// Parse one record's text and append it, or say why it cannot be.
    fn record<'a>(
        &self,
        text: &'a [u8],
        st: &mut State<'a>,
        out: &mut Batch,
    ) -> Result<(), String> {
        st.reset();
        let text = if out.utf8 {
            // SAFETY: the chunk is valid UTF-8 and records are cut at ASCII delimiters.
            unsafe { std::str::from_utf8_unchecked(text) }
        } else {
            std::str::from_utf8(text).map_err(|e| format!("invalid UTF-8: {e}"))?
        };
        if scan::Scan::new(text).record(&self.plan, st).is_err() {
            // serde reads what the scanner declines, and says what is wrong with it.
            st.reset();
            self.read_serde(text, st)?;
        }
        self.append(st, out).map_err(|why| {
            if text.trim_start().starts_with('{') {
                why
            } else {
                "not a JSON object".into()
            }
        })
    }

    /// `text`, one record, read into `st` by serde's visitors ([`NodeSeed`]), or serde's
    /// word on what is wrong with it.
    fn read_serde<'a>(&self, text: &'a str, st: &mut State<'a>) -> Result<(), String> {
        let mut de = serde_json::Deserializer::from_str(text);
        let seed = NodeSeed {
            plan: &self.plan,
            node: &self.plan.root,
            st,
        };
        seed.deserialize(&mut de).map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())
    }

    /// Append a record read into `st`, or say why it cannot be (it has no event time).
    fn append(&self, st: &mut State<'_>, out: &mut Batch) -> Result<(), String> {
        let Val::Int(event_time) = st.vals[self.plan.event_time] else {
            return Err(format!(
                "field {}: missing (it is the event time)",
                self.plan.leaves[self.plan.event_time].name
            ));
        };
        if let Some(u) = self.plan.unknown {
            let v = unknown_json(&st.unknown);
            st.set(u, v);
        }
        // The record is whole: append it.
        for (b, v) in out.leaves.iter_mut().zip(&st.vals) {
            b.append(v);
        }
        for (b, p) in out.structs.iter_mut().zip(&st.present) {
            b.append(*p);
        }
        out.event_times.push(event_time);
        self.indicators(st, out);
        Ok(())
    }

    /// An envelope document (`{"Records": [...]}`) read in one pass: serde walks the
    /// document and each record is read and appended to `out` as it comes, numbered 1, 2, …
    /// with no structural scan before it (that scan was a tenth of CloudTrail ingest time).
    /// False when `doc` is not such a document or anything in it does not go through (a
    /// record that is malformed, holds a value of the wrong type or has no event time; text
    /// after the envelope): `out` may then hold some of its records, and the document is for
    /// the careful path, which cuts records apart first so that a bad one is quarantined
    /// alone.
    fn envelope(&self, doc: &[u8], out: &mut Batch) -> bool {
        let Some(records) = self.plan.records_field.as_deref() else {
            return false;
        };
        // `needles[0]` is `"<records key>"` when there is a records key. A document whose
        // head does not name it (a digest file, a record of its own) is not worth a try.
        let head = &doc[..doc.len().min(64 << 10)];
        if doc.get(split::skip_ws(doc, 0)) != Some(&b'{')
            || self.plan.needles[0].find(head).is_none()
        {
            return false;
        }
        let Some(text) = utf8(doc) else {
            return false;
        };
        out.utf8 = true;
        let mut st = State::new(&self.plan);
        let first = out.lines;
        let mut scan = scan::Scan::new(text);
        let found = scan.envelope(records, |scan| {
            st.reset();
            scan.node(&self.plan, &self.plan.root, &mut st)?;
            self.append(&mut st, out).map_err(|_| scan::Declined)?;
            // Records of a document are numbered 1, 2, … (as `Numbering::Document` does).
            out.lines += 1;
            out.rows.push(out.lines - first);
            Ok(())
        });
        found == Ok(true) && scan.end().is_ok()
    }

    /// `docs` read as envelopes in one pass into one set of builders ([`Self::read_together`]);
    /// `None` when one of them does not go through.
    fn envelopes(&self, docs: &[Part<'_>], parse_time: i64) -> Result<Option<Vec<Parsed>>> {
        let read = |doc: &Part<'_>, out: &mut Batch| self.envelope(doc.text, out);
        self.read_together(docs, parse_time, read)
    }

    /// [`Parser::parse_documents`] of documents parsed one by one (an envelope in one pass,
    /// anything else carefully): their rows concatenated into the first one's batch.
    fn each_alone(&self, docs: &[Part<'_>], parse_time: i64) -> Result<Vec<Parsed>> {
        let mut parsed = (docs.iter())
            .map(
                |d| match self.envelopes(std::slice::from_ref(d), parse_time)? {
                    Some(mut one) => Ok(one.pop().expect("one document")),
                    None => self.careful(d.text, d.source, parse_time),
                },
            )
            .collect::<Result<Vec<_>>>()?;
        let mut batches: Vec<arrow::array::RecordBatch> =
            parsed.iter_mut().filter_map(|p| p.batch.take()).collect();
        let batch = match batches.len() {
            0 | 1 => batches.pop(),
            _ => Some(arrow::compute::concat_batches(
                &batches[0].schema(),
                &batches,
            )?),
        };
        if let Some(first) = parsed.first_mut() {
            first.batch = batch;
        }
        Ok(parsed)
    }

    /// A document read value by value and record by record, each cut apart by a structural
    /// scan first, so that a malformed record is quarantined alone and the others are kept.
    fn careful(&self, doc: &[u8], source: &SourceInfo, parse_time: i64) -> Result<Parsed> {
        let mut out = self.batch(doc.len());
        out.utf8 = utf8(doc).is_some();
        let mut st = State::new(&self.plan);
        let mut pos = split::skip_ws(doc, 0);
        while pos < doc.len() {
            let next = out.rows.len() as u64 + out.quarantined.len() as u64 + 1;
            match split::skip_value(doc, pos) {
                Ok(end) => {
                    self.value(
                        doc,
                        (pos, end),
                        Numbering::Document { next },
                        &mut st,
                        &mut out,
                    );
                    pos = split::skip_ws(doc, end);
                }
                Err(_) if doc[pos] == b'{' && self.plan.records_field.is_some() => {
                    // A broken (e.g. truncated) envelope: keep the records before the break.
                    self.value(
                        doc,
                        (pos, doc.len()),
                        Numbering::Document { next },
                        &mut st,
                        &mut out,
                    );
                    break;
                }
                Err(why) => {
                    let n = Numbering::Document { next }.at(0);
                    self.bad(
                        doc,
                        pos,
                        doc.len(),
                        n,
                        format!("malformed JSON: {why}"),
                        &mut out,
                    );
                    break;
                }
            }
        }
        self.finish(out, doc.len(), RowSources::One(source), parse_time)
    }

    /// Append the record's `p_any_*` lists. Values go straight into the list builders;
    /// a value already in the record's list is not added twice.
    fn indicators(&self, st: &State<'_>, out: &mut Batch) {
        if out.indicators.is_empty() {
            return;
        }
        let lists = &mut out.indicators;
        let starts = &mut out.starts;
        starts.clear();
        starts.extend(lists.iter_mut().map(|b| b.values().len()));
        let outputs = &self.plan.outputs;
        let mut add = |v: &str, kind: Indicator, targets: &[usize]| {
            for &o in targets {
                if let Some(x) = classify(v, kind, outputs[o]) {
                    let values = lists[o].values();
                    let offsets = values.offsets_slice();
                    let bytes = values.values_slice();
                    let seen = (starts[o]..values.len()).any(|i| {
                        &bytes[offsets[i] as usize..offsets[i + 1] as usize] == x.as_bytes()
                    });
                    if !seen {
                        values.append_value(x);
                    }
                }
            }
        };
        for (i, (leaf, v)) in self.plan.leaves.iter().zip(&st.vals).enumerate() {
            if leaf.indicators.is_empty() {
                continue;
            }
            match (v, &leaf.kind) {
                (Val::Str(s), Kind::Json) => {
                    let mut each = |key: &str, value: &str| {
                        for (kind, targets) in &leaf.indicators {
                            if may_be(*kind, value) && key_feeds(*kind, key) {
                                add(value, *kind, targets);
                            }
                        }
                    };
                    match st.blobs.iter().find(|b| b.0 == i) {
                        Some(&(_, from, to)) => {
                            (st.strings[from..to].iter()).for_each(|&(k, v)| each(k, v))
                        }
                        None => split::strings(s, each),
                    }
                }
                (Val::Str(s), _) => {
                    for (kind, targets) in &leaf.indicators {
                        add(s, *kind, targets);
                    }
                }
                (Val::List(items), _) => {
                    for item in items {
                        if let Val::Str(s) = item {
                            for (kind, targets) in &leaf.indicators {
                                add(s, *kind, targets);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        for (b, &start) in lists.iter_mut().zip(starts.iter()) {
            let any = b.values().len() > start;
            b.append(any);
        }
    }

    /// Handle one top-level value (`text`, at `offset` of `doc`): a record, an envelope of
    /// records, or a document to skip. `n` numbers records; `line` is the physical line.
    fn value<'a>(
        &self,
        doc: &'a [u8],
        text: (usize, usize),
        numbering: Numbering,
        st: &mut State<'a>,
        out: &mut Batch,
    ) {
        let (start, end) = text;
        let value = &doc[start..end];
        let array = doc.get(start) == Some(&b'[');
        if !array && !self.plan.needles.iter().any(|f| f.find(value).is_some()) {
            return self.one(doc, start, end, numbering.at(0), st, out);
        }
        match self.framing(doc, start) {
            Framing {
                records: Some(vs), ..
            } => {
                let mut k = 0u64;
                let res = split::elements(doc, vs, |s, e| {
                    k += 1;
                    self.one(doc, s, e, numbering.at(k), st, out);
                });
                if let Err((at, why)) = res {
                    k += 1;
                    let rest_end = end.max(at);
                    self.bad(
                        doc,
                        at,
                        rest_end,
                        numbering.at(k),
                        format!("malformed JSON: {why}"),
                        out,
                    );
                }
            }
            Framing {
                skip: Some(key),
                complete: true,
                ..
            } => {
                out.notes.push(format!(
                    "{} holds no records (it has {key:?}: e.g. a digest file); skipped",
                    numbering.describe(doc, start),
                ));
            }
            _ => self.one(doc, start, end, numbering.at(0), st, out),
        }
    }

    /// Parse one record, quarantining it when it does not parse.
    fn one<'a>(
        &self,
        doc: &'a [u8],
        start: usize,
        end: usize,
        n: Numbered,
        st: &mut State<'a>,
        out: &mut Batch,
    ) {
        match self.record(&doc[start..end], st, out) {
            Ok(()) => {
                out.lines += 1;
                out.rows.push(n.row);
            }
            Err(why) => self.bad(doc, start, end, n, why, out),
        }
    }

    fn bad(&self, doc: &[u8], start: usize, end: usize, n: Numbered, why: String, out: &mut Batch) {
        out.lines += 1;
        let line = n
            .line
            .unwrap_or_else(|| 1 + memchr::memchr_iter(b'\n', &doc[..start]).count() as u64);
        let reason = match n.record {
            Some(r) => format!("record {r} (line {line}): {why}"),
            None => why,
        };
        out.quarantined.push(Quarantined {
            line,
            raw: String::from_utf8_lossy(&doc[start..end]).into_owned(),
            reason,
        });
    }

    /// Append the records of `chunk`'s lines (whole lines, the first numbered `first_line`).
    fn lines_into(&self, chunk: &[u8], first_line: u64, out: &mut Batch) {
        out.utf8 = utf8(chunk).is_some();
        let mut st = State::new(&self.plan);
        for (n, line) in lines(chunk, first_line) {
            if is_blank(line) {
                continue;
            }
            let start = line.as_ptr() as usize - chunk.as_ptr() as usize;
            let s = start + split::skip_ws(line, 0);
            self.value(
                chunk,
                (s, start + line.len()),
                Numbering::Line(n),
                &mut st,
                out,
            );
        }
    }

    fn finish(
        &self,
        out: Batch,
        bytes: usize,
        sources: RowSources<'_>,
        parse_time: i64,
    ) -> Result<Parsed> {
        if let Some(n) = std::num::NonZeroUsize::new(out.event_times.len()) {
            let mut hints = self.hints.lock().expect("not poisoned");
            hints.record_bytes = (bytes / n).max(1);
            for (h, b) in hints.leaf_bytes.iter_mut().zip(&out.leaves) {
                *h = b.text_bytes() / n + 1;
            }
        }
        let Batch {
            leaves,
            structs,
            indicators,
            event_times,
            rows,
            quarantined,
            notes,
            lines,
            ..
        } = out;
        let batch = if event_times.is_empty() {
            None
        } else {
            let mut leaves: Vec<Option<ArrayRef>> =
                leaves.into_iter().map(|b| Some(b.finish())).collect();
            let mut structs: Vec<Option<NullBuffer>> = structs
                .into_iter()
                .map(|mut b| Some(NullBuffer::new(b.finish())))
                .collect();
            let columns = self
                .plan
                .columns
                .iter()
                .map(|o| assemble(o, &mut leaves, &mut structs))
                .collect::<Result<Vec<_>>>()?;
            let indicators = indicators
                .into_iter()
                .map(|mut b| Arc::new(b.finish()) as ArrayRef)
                .collect();
            Some(self.standard.assemble(
                columns,
                indicators,
                event_times.into(),
                &rows,
                sources,
                parse_time,
            )?)
        };
        Ok(Parsed {
            batch,
            quarantined,
            lines,
            notes,
        })
    }

    /// Whether the record reader ([`scan`]) and serde's visitors read `text`, one record, to
    /// the same values and indicators, or both reject it: what the `cloudtrail` fuzz target
    /// checks.
    #[doc(hidden)]
    pub fn readers_agree(&self, text: &str) -> bool {
        match self.read_both(text) {
            (Some(fast), Some(slow)) => fast == slow,
            (None, None) => true,
            // Nesting deeper than the reader takes is serde's alone.
            (None, Some(_)) => split::max_depth(text.as_bytes()) >= scan::DEPTH as usize,
            (Some(_), None) => false,
        }
    }

    /// `text` read as one record by the reader and by serde: the slots and the indicator
    /// lists they give (from the strings the reader noted, or from the text scanned again
    /// after serde), or `None` when rejected.
    fn read_both<'a>(&self, text: &'a str) -> (Option<RecordView<'a>>, Option<RecordView<'a>>) {
        let view = |st: State<'a>| {
            let mut out = self.batch(1024);
            self.indicators(&st, &mut out);
            let lists = (out.indicators.iter_mut())
                .map(|b| {
                    let l = b.finish();
                    let v = arrow::array::AsArray::as_string::<i32>(l.values());
                    v.iter()
                        .map(|s| s.unwrap_or_default().to_string())
                        .collect()
                })
                .collect();
            (st.vals, st.present, st.unknown, lists)
        };
        let mut fast = State::new(&self.plan);
        let fast =
            (scan::Scan::new(text).record(&self.plan, &mut fast).is_ok()).then(|| view(fast));
        let mut slow = State::new(&self.plan);
        let read = self.read_serde(text, &mut slow).is_ok();
        (fast, read.then(|| view(slow)))
    }

    /// Whether [`JsonParser::detect_score`] of `head`, a prefix of a file, is what any longer
    /// prefix would give: the record it reads (or the document it skips) is whole in `head`.
    pub fn detect_settled(&self, head: &[u8]) -> bool {
        self.plan.detect.is_empty() || self.detect_view(head).1
    }

    /// What detection reads of `head`: the first record (of the envelope or array, else the
    /// top-level value, else the first line), or that the document is one to skip; and
    /// whether that is whole in `head`.
    fn detect_view<'h>(&self, head: &'h [u8]) -> (Seen<'h>, bool) {
        let start = split::skip_ws(head, 0);
        let framing = self.framing(head, start);
        // The first record only: walking the rest would scan the whole head.
        let first = framing.records.and_then(|vs| {
            let s = split::skip_ws(head, vs + 1);
            (head.get(s) != Some(&b']'))
                .then(|| split::skip_value(head, s).ok().map(|e| (s, e)))
                .flatten()
        });
        if framing.skip.is_some() && first.is_none() {
            // Settled when the whole document was walked and holds no records.
            return (Seen::Skip, framing.records.is_none() && framing.complete);
        }
        match first {
            Some((s, e)) => (Seen::Record(&head[s..e]), true),
            None => match split::skip_value(head, start) {
                Ok(e) => (Seen::Record(&head[start..e]), true),
                Err(_) => match lines(head, 1).map(|(_, l)| l).find(|l| !is_blank(l)) {
                    Some(line) => (Seen::Record(line), false),
                    None => (Seen::Nothing, false),
                },
            },
        }
    }

    /// Whether the file whose first bytes are `head` is one document of records (an envelope,
    /// a document to skip, a JSON array of records, or pretty-printed records) rather than one
    /// record per line.
    fn is_document(&self, head: &[u8]) -> bool {
        let start = split::skip_ws(head, 0);
        // A JSON array of records (an export), an envelope, or a document to skip. Asked
        // first: it stops at the envelope's key, where the test below would scan a one-line
        // document (a CloudTrail delivery) whole.
        let f = self.framing(head, start);
        if f.records.is_some() || f.skip.is_some() {
            return true;
        }
        // A first record spread over several lines (pretty-printed) is not JSON lines.
        let line_end =
            memchr::memchr(b'\n', &head[start.min(head.len())..]).map_or(head.len(), |i| start + i);
        let first_line_whole = split::skip_value(&head[..line_end], start)
            .is_ok_and(|e| split::skip_ws(&head[..line_end], e) == line_end);
        !first_line_whole && line_end < head.len()
    }

    /// How the top-level value at `start` of `b` holds records. `b` may end before the value
    /// does (the head of a file): then `complete` is false.
    fn framing(&self, b: &[u8], start: usize) -> Framing<'_> {
        if b.get(start) == Some(&b'[') {
            return Framing {
                records: Some(start),
                skip: None,
                complete: true,
            };
        }
        let envelope = self.plan.records_field.as_deref().map(str::as_bytes);
        let (mut records, mut skip) = (None, None);
        let walked = split::members(b, start, |key, vs| {
            if Some(key) == envelope && b.get(vs) == Some(&b'[') {
                records = Some(vs);
                return false;
            }
            skip = skip.or_else(|| {
                let k = self.plan.skip.iter().find(|k| k.as_bytes() == key);
                k.map(String::as_str)
            });
            true
        });
        Framing {
            records,
            skip,
            complete: walked.is_ok(),
        }
    }

    /// Whether `head` (the first bytes of a file) holds this log type: its first record has
    /// every `detect` key, or it is a document to skip. Returns the number of keys matched.
    pub fn detect_score(&self, head: &[u8]) -> Option<usize> {
        if self.plan.detect.is_empty() {
            return None;
        }
        let record = match self.detect_view(head).0 {
            Seen::Skip => return Some(self.plan.detect.len()),
            Seen::Record(record) => record,
            Seen::Nothing => return None,
        };
        let mut keys = Vec::new();
        split::members(record, split::skip_ws(record, 0), |k, _| {
            keys.push(k);
            true
        })
        .ok()?;
        self.plan
            .detect
            .iter()
            .all(|d| keys.iter().any(|k| k.eq_ignore_ascii_case(d.as_bytes())))
            .then_some(self.plan.detect.len())
    }
}

/// What detection reads of a file's head (see [`JsonParser::detect_view`]).
enum Seen<'h> {
    /// A document to skip (a digest file).
    Skip,
    /// The record whose keys tell the log type.
    Record(&'h [u8]),
    /// Nothing but blanks.
    Nothing,
}

/// How a top-level value holds records (see [`JsonParser::framing`]).
struct Framing<'p> {
    /// Start of the array whose elements are the records: a top-level array, or the
    /// envelope's `records_field`.
    records: Option<usize>,
    /// A `skip_documents_with` key the value has.
    skip: Option<&'p str>,
    /// Every member of the value was walked.
    complete: bool,
}

/// A cheap test of whether `value` has the shape of an indicator of `kind`, before its key
/// is looked at.
fn may_be(kind: Indicator, value: &str) -> bool {
    let b = value.as_bytes();
    match kind {
        Indicator::AwsArn => value.starts_with("arn:"),
        Indicator::Ip => {
            b.first().is_some_and(u8::is_ascii_hexdigit)
                && (value.contains('.') || value.contains(':'))
        }
        Indicator::AwsAccountId => b.len() == 12,
        Indicator::AwsInstanceId => value.starts_with("i-"),
        Indicator::Domain => value.contains('.'),
        Indicator::Username => !b.is_empty(),
    }
}

/// The unknown fields of a record as one JSON object, NULL when there are none.
fn unknown_json<'a>(fields: &[(String, &'a str)]) -> Val<'a> {
    if fields.is_empty() {
        return Val::Null;
    }
    let mut s = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&serde_json::to_string(k).unwrap_or_else(|_| "\"\"".into()));
        s.push(':');
        s.push_str(v);
    }
    s.push('}');
    Val::Str(Cow::Owned(s))
}

fn assemble(
    out: &Out,
    leaves: &mut [Option<ArrayRef>],
    structs: &mut [Option<NullBuffer>],
) -> Result<ArrayRef> {
    Ok(match out {
        Out::Leaf(i) => leaves[*i].take().expect("each leaf assembled once"),
        Out::Struct {
            id,
            fields,
            children,
        } => {
            let arrays = children
                .iter()
                .map(|c| assemble(c, leaves, structs))
                .collect::<Result<Vec<_>>>()?;
            Arc::new(StructArray::try_new(
                fields.clone(),
                arrays,
                structs[*id].take(),
            )?)
        }
    })
}

/// How records of a chunk are numbered (for `p_row_id` and quarantine lines).
#[derive(Debug, Clone, Copy)]
enum Numbering {
    /// A whole document: records are numbered 1, 2, … across it.
    Document { next: u64 },
    /// One line: a plain record is its line number; an envelope's k-th record is
    /// `line << 20 | k`, so ids stay unique.
    Line(u64),
}

/// A record's numbers.
#[derive(Debug, Clone, Copy)]
struct Numbered {
    row: u64,
    line: Option<u64>,
    record: Option<u64>,
}

impl Numbering {
    fn at(self, k: u64) -> Numbered {
        match self {
            Numbering::Document { next } => Numbered {
                row: next + k.max(1) - 1,
                line: None,
                record: Some(next + k.max(1) - 1),
            },
            Numbering::Line(line) if k == 0 => Numbered {
                row: line,
                line: Some(line),
                record: None,
            },
            Numbering::Line(line) => Numbered {
                row: (line << 20) | k,
                line: Some(line),
                record: Some(k),
            },
        }
    }

    fn describe(self, doc: &[u8], start: usize) -> String {
        match self {
            Numbering::Document { .. } => format!(
                "the document at line {}",
                1 + memchr::memchr_iter(b'\n', &doc[..start]).count()
            ),
            Numbering::Line(l) => format!("line {l}"),
        }
    }
}

impl Parser for JsonParser {
    fn schema(&self) -> &Arc<LogSchema> {
        &self.schema
    }

    fn whole_document(&self, head: &[u8]) -> bool {
        self.is_document(head)
    }

    /// The parts' records go into one set of builders (for small files, one each would be
    /// hundreds of builders per file), in the first part's batch, in input order.
    fn parse_parts(&self, parts: &[Part<'_>], parse_time: i64) -> Result<Vec<Parsed>> {
        let read = |part: &Part<'_>, out: &mut Batch| {
            self.lines_into(part.text, part.first_line, out);
            true
        };
        let parsed = self.read_together(parts, parse_time, read)?;
        Ok(parsed.expect("lines are always read"))
    }

    /// Envelopes (CloudTrail deliveries) go into one set of builders, as lines of small files
    /// do in [`Parser::parse_parts`]: 5,000 deliveries of 40 records each parsed into fresh
    /// builders (hundreds per document) and time-sorted as batches of their own cost more than
    /// reading them. Should any document not be an envelope that goes through in one pass,
    /// each is parsed alone (carefully where needed) and the batches are concatenated.
    fn parse_documents(&self, docs: &[Part<'_>], parse_time: i64) -> Result<Vec<Parsed>> {
        match self.envelopes(docs, parse_time)? {
            Some(parsed) => Ok(parsed),
            None => self.each_alone(docs, parse_time),
        }
    }
}

impl JsonParser {
    /// `parts` read one after another by `read` into one set of builders: one [`Parsed`] per
    /// part with its own counts, quarantined records and notes, the rows of all in the first
    /// one's batch, each row with its own part's source. `None` as soon as `read` gives up on
    /// a part (the builders then hold some of its records).
    fn read_together(
        &self,
        parts: &[Part<'_>],
        parse_time: i64,
        mut read: impl FnMut(&Part<'_>, &mut Batch) -> bool,
    ) -> Result<Option<Vec<Parsed>>> {
        let bytes = parts.iter().map(|p| p.text.len()).sum();
        let mut out = self.batch(bytes);
        let mut parsed = Vec::with_capacity(parts.len());
        let mut of_row: Vec<u32> = Vec::new();
        for (p, part) in parts.iter().enumerate() {
            let lines_before = out.lines;
            if !read(part, &mut out) {
                return Ok(None);
            }
            if parts.len() > 1 {
                of_row.resize(out.rows.len(), p as u32);
            }
            parsed.push(Parsed {
                batch: None,
                quarantined: std::mem::take(&mut out.quarantined),
                lines: out.lines - lines_before,
                notes: std::mem::take(&mut out.notes),
            });
        }
        let sources: Vec<&SourceInfo> = parts.iter().map(|p| p.source).collect();
        let sources = match parts {
            [one] => RowSources::One(one.source),
            _ => RowSources::PerRow {
                sources: &sources,
                of_row: &of_row,
            },
        };
        let all = self.finish(out, bytes, sources, parse_time)?;
        if let Some(first) = parsed.first_mut() {
            first.batch = all.batch;
        }
        Ok(Some(parsed))
    }
}

#[cfg(test)]
mod tests;
