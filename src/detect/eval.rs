//! Rules compiled to DataFusion physical expressions and evaluated over whole record batches.
//!
//! A [`RuleSet`] holds the enabled rules of one log type, compiled against the schema of the
//! batches they will see (the parser's batches on ingest, the lake's on replay). Compiling
//! type-checks: a condition must be boolean, a title or dedup expression must cast to a string,
//! and every column must exist; errors name the rule and its file. Evaluating a batch gives,
//! per rule that matched anything, the matching rows with their titles, dedup strings and
//! alert context.
//!
//! [`events_to_batch`] turns JSON events (rule tests, `rules eval`) into the same batches the
//! parser produces, matching Panther's field names to columns case-insensitively.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, ListArray, RecordBatch, StringArray};
use arrow::compute::{FilterBuilder, cast, prep_null_mask_filter};
use arrow::datatypes::{DataType, Int32Type, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

use super::rule::Rule;
use crate::error::{Error, Result};
use crate::parse::SourceInfo;
use crate::parse::standard::StandardFields;
use crate::schema::{ColumnType, LogSchema};

/// A SQL session with seclake's functions, for compiling expressions.
pub fn expr_session() -> Result<SessionContext> {
    let mut ctx = SessionContext::new();
    crate::engine::udf::register(&mut ctx)?;
    Ok(ctx)
}

/// Compile a SQL expression against `schema`, checking that its type is one `want` accepts.
pub fn compile_expr(
    ctx: &SessionContext,
    schema: &SchemaRef,
    sql: &str,
    want: fn(&DataType) -> bool,
) -> Result<Arc<dyn PhysicalExpr>, String> {
    let df_schema = DFSchema::try_from(schema.as_ref().clone()).map_err(|e| e.to_string())?;
    let expr = ctx
        .parse_sql_expr(sql, &df_schema)
        .map_err(|e| e.find_root().to_string())?;
    // Simplify as the query planner would: some functions (coalesce) only run simplified, and
    // seclake's functions check literal patterns and networks here.
    let state = ctx.state();
    let simplifier = ExprSimplifier::new(
        SimplifyContext::builder()
            .with_schema(Arc::new(df_schema.clone()))
            .with_config_options(Arc::clone(state.config_options()))
            .build(),
    );
    let expr = simplifier
        .coerce(expr, &df_schema)
        .and_then(|e| simplifier.simplify(e))
        .map_err(|e| e.find_root().to_string())?;
    let phys = ctx
        .create_physical_expr(expr, &df_schema)
        .map_err(|e| e.find_root().to_string())?;
    let ty = phys.data_type(schema).map_err(|e| e.to_string())?;
    if !want(&ty) {
        return Err(format!("{sql:?} has type {ty}"));
    }
    Ok(phys)
}

/// `b` with NULL as false: a row selection from a condition's result.
pub fn null_as_false(b: BooleanArray) -> BooleanArray {
    if b.null_count() > 0 {
        prep_null_mask_filter(&b)
    } else {
        b
    }
}

/// Indices (ascending) of the columns of `schema` the SQL expression reads.
fn referenced_columns(
    ctx: &SessionContext,
    schema: &SchemaRef,
    sql: &str,
) -> Result<Vec<usize>, String> {
    let df_schema = DFSchema::try_from(schema.as_ref().clone()).map_err(|e| e.to_string())?;
    let expr = ctx
        .parse_sql_expr(sql, &df_schema)
        .map_err(|e| e.find_root().to_string())?;
    let mut idx: Vec<usize> = expr
        .column_refs()
        .into_iter()
        .filter_map(|c| schema.index_of(&c.name).ok())
        .collect();
    idx.sort_unstable();
    idx.dedup();
    Ok(idx)
}

fn is_bool(t: &DataType) -> bool {
    matches!(t, DataType::Boolean | DataType::Null)
}

fn is_stringable(t: &DataType) -> bool {
    arrow::compute::can_cast_types(t, &DataType::Utf8)
}

/// One rule, compiled.
#[derive(Debug)]
pub struct CompiledRule {
    pub rule: Arc<Rule>,
    condition: Arc<dyn PhysicalExpr>,
    /// Columns the condition reads: it is evaluated on the batch projected to these, so that
    /// DataFusion's short-circuit `AND` (which filters its input before the right side) copies
    /// only them, not whole events.
    condition_columns: Vec<usize>,
    title: Option<Arc<dyn PhysicalExpr>>,
    dedup: Option<Arc<dyn PhysicalExpr>>,
    context: Vec<usize>,
}

impl CompiledRule {
    /// Compile `rule` for batches of `schema`.
    pub fn new(ctx: &SessionContext, rule: Arc<Rule>, schema: &SchemaRef) -> Result<Self> {
        let compile = |what: &str, sql: &str, want| -> Result<_> {
            let sql = rule.expand(what, sql)?;
            compile_expr(ctx, schema, &sql, want).map_err(|m| rule.error(format!("{what}: {m}")))
        };
        // Type-check against the whole schema (errors name any column), then compile against
        // the columns the condition reads.
        compile("Condition", &rule.condition, is_bool)
            .map_err(|e| with_hint(e, "must be a boolean expression"))?;
        let condition_columns =
            referenced_columns(ctx, schema, &rule.expand("Condition", &rule.condition)?)
                .map_err(|m| rule.error(format!("Condition: {m}")))?;
        let projected = Arc::new(schema.project(&condition_columns)?);
        let condition = compile_expr(
            ctx,
            &projected,
            &rule.expand("Condition", &rule.condition)?,
            is_bool,
        )
        .map_err(|m| rule.error(format!("Condition: {m}")))?;
        let condition = super::per_value::rewrite(condition, &projected)?;
        let title = rule
            .title
            .as_deref()
            .map(|t| compile("Title", t, is_stringable))
            .transpose()?;
        let dedup = rule
            .dedup
            .as_deref()
            .map(|t| compile("Dedup", t, is_stringable))
            .transpose()?;
        let context = rule
            .alert_context
            .iter()
            .map(|c| {
                schema.index_of(&c.to_ascii_lowercase()).map_err(|_| {
                    rule.error(format!(
                        "AlertContext: {c:?} is not a column of the log type"
                    ))
                })
            })
            .collect::<Result<_>>()?;
        Ok(CompiledRule {
            rule,
            condition,
            condition_columns,
            title,
            dedup,
            context,
        })
    }

    /// Rows of `batch` the condition holds for (NULL counts as false).
    pub fn matches(&self, batch: &RecordBatch) -> Result<BooleanArray> {
        let v = self
            .condition
            .evaluate(&batch.project(&self.condition_columns)?)?
            .into_array(batch.num_rows())?;
        Ok(null_as_false(v.as_boolean_opt().cloned().unwrap_or_else(
            || BooleanArray::from(vec![false; batch.num_rows()]),
        )))
    }

    /// The matching rows of `batch` with their titles, dedup strings and context, or `None`.
    pub fn eval(&self, batch: &RecordBatch) -> Result<Option<RuleMatches>> {
        let mask = self.matches(batch)?;
        self.eval_masked(batch, &mask)
    }

    /// [`CompiledRule::eval`] for rows `mask` (from [`CompiledRule::matches`]) selects.
    pub fn eval_masked(
        &self,
        batch: &RecordBatch,
        mask: &BooleanArray,
    ) -> Result<Option<RuleMatches>> {
        if mask.true_count() == 0 {
            return Ok(None);
        }
        let rows = filter_rows(batch, mask)?;
        let n = rows.num_rows();
        let titles = match &self.title {
            Some(e) => strings_or(e.evaluate(&rows)?.into_array(n)?, &self.rule.id)?,
            None => StringArray::from(vec![self.rule.id.as_str(); n]),
        };
        let dedups = match &self.dedup {
            Some(e) => strings_or(e.evaluate(&rows)?.into_array(n)?, "")?,
            None => titles.clone(),
        };
        let context = if self.context.is_empty() {
            None
        } else {
            Some(context_json(&rows.project(&self.context)?)?)
        };
        Ok(Some(RuleMatches {
            rows,
            titles,
            dedups,
            context,
        }))
    }
}

/// The rows of `batch` that `mask` (no NULLs: [`null_as_false`]) selects, as
/// `filter_record_batch` gives them. Lists of strings (the indicator columns) are copied run by
/// run of selected rows here: Arrow filters lists through `MutableArrayData`, a call per run
/// and per child buffer (with the default rules, 60% of the filter's instructions went there).
fn filter_rows(batch: &RecordBatch, mask: &BooleanArray) -> Result<RecordBatch> {
    let predicate = FilterBuilder::new(mask).optimize().build();
    let columns = (batch.columns().iter())
        .map(|c| match c.as_list_opt::<i32>() {
            Some(list)
                if mask.null_count() == 0 && list.values().as_string_opt::<i32>().is_some() =>
            {
                Ok(Arc::new(filter_string_lists(list, mask, &predicate)?) as ArrayRef)
            }
            _ => predicate.filter(c),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new_with_options(
        batch.schema(),
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(predicate.count())),
    )?)
}

/// The rows of `list` (a list of strings) that `mask` (without NULLs, built into `predicate`)
/// selects: offsets and strings copied a run of selected rows at a time, the lists' validity
/// filtered whole.
fn filter_string_lists(
    list: &ListArray,
    mask: &BooleanArray,
    predicate: &arrow::compute::FilterPredicate,
) -> std::result::Result<ListArray, arrow::error::ArrowError> {
    use arrow::array::BooleanBufferBuilder;
    use arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
    let strings = list.values().as_string::<i32>();
    let (offsets, string_offsets) = (list.value_offsets(), strings.value_offsets());
    let rows = predicate.count();
    let mut new_offsets: Vec<i32> = Vec::with_capacity(rows + 1);
    new_offsets.push(0);
    let mut new_string_offsets: Vec<i32> = vec![0];
    let mut bytes: Vec<u8> = Vec::new();
    let list_nulls = match list.nulls() {
        Some(n) => {
            let valid = predicate.filter(&BooleanArray::new(n.inner().clone(), None))?;
            Some(NullBuffer::new(valid.as_boolean().values().clone()))
        }
        None => None,
    };
    let mut string_nulls = strings.nulls().map(|_| BooleanBufferBuilder::new(0));
    for (start, end) in arrow::compute::SlicesIterator::new(mask) {
        let (first, last) = (offsets[start] as usize, offsets[end] as usize);
        let shift = new_offsets[new_offsets.len() - 1] - offsets[start];
        new_offsets.extend(offsets[start + 1..=end].iter().map(|o| o + shift));
        let (from, to) = (string_offsets[first], string_offsets[last]);
        let shift = new_string_offsets[new_string_offsets.len() - 1] - from;
        new_string_offsets.extend(string_offsets[first + 1..=last].iter().map(|o| o + shift));
        bytes.extend_from_slice(&strings.value_data()[from as usize..to as usize]);
        // (Bits copied from the mask's bytes: a sliced buffer would take and drop a reference
        // per run.)
        if let (Some(b), Some(n)) = (string_nulls.as_mut(), strings.nulls()) {
            b.append_packed_range(n.offset() + first..n.offset() + last, n.validity());
        }
    }
    let field = match list.data_type() {
        DataType::List(f) => Arc::clone(f),
        _ => unreachable!("a list array"),
    };
    // SAFETY: offsets taken from valid arrays, shifted to start at 0 and still ascending;
    // the bytes are whole strings of a valid string array, cut at its offsets.
    let strings = unsafe {
        StringArray::new_unchecked(
            OffsetBuffer::new_unchecked(ScalarBuffer::from(new_string_offsets)),
            bytes.into(),
            string_nulls.map(|mut b| NullBuffer::new(b.finish())),
        )
    };
    Ok(ListArray::new(
        field,
        OffsetBuffer::new(ScalarBuffer::from(new_offsets)),
        Arc::new(strings),
        list_nulls,
    ))
}

fn with_hint(e: Error, hint: &str) -> Error {
    match e {
        Error::Detection { file, id, message } if message.contains("has type") => {
            Error::Detection {
                file,
                id,
                message: format!("{message}; it {hint}"),
            }
        }
        e => e,
    }
}

/// `a` as strings, NULL replaced by `default`.
fn strings_or(a: ArrayRef, default: &str) -> Result<StringArray> {
    let s = cast(&a, &DataType::Utf8)?;
    let s = s.as_string::<i32>();
    Ok(if s.null_count() == 0 {
        s.clone()
    } else {
        s.iter().map(|v| Some(v.unwrap_or(default))).collect()
    })
}

/// Each row of `batch` as a JSON object string, NULL fields left out (as arrow-json writes
/// them). Strings, numbers, booleans and timestamps are written directly, a row at a time into
/// one buffer; batches with other column types go through arrow-json.
pub fn context_json(batch: &RecordBatch) -> Result<StringArray> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};

    enum Col<'a> {
        Str(&'a StringArray),
        /// A dictionary of strings (the parser interns repeated values): keys, values.
        Dict(&'a [i32], &'a StringArray),
        /// A dictionary of no more values than rows: keys, and each value written as a JSON
        /// string once (`offsets` into `text`), copied for each row of it.
        Written {
            keys: &'a [i32],
            offsets: Vec<usize>,
            text: Vec<u8>,
        },
        /// Written as is (numbers, booleans).
        Bare(ArrayFormatter<'a>),
        /// Written as a JSON string (timestamps).
        Quoted(ArrayFormatter<'a>),
    }
    let opts = FormatOptions::default();
    let mut cols = Vec::with_capacity(batch.num_columns());
    for (f, a) in batch.schema().fields().iter().zip(batch.columns()) {
        let col = match f.data_type() {
            DataType::Utf8 => Col::Str(a.as_string::<i32>()),
            t if *t == crate::engine::dict_scan::dictionary_type() => {
                let d = a.as_dictionary::<Int32Type>();
                let values = d.values().as_string::<i32>();
                if values.len() <= batch.num_rows() {
                    let mut text = Vec::with_capacity(values.value_data().len() + 2 * values.len());
                    let mut offsets = Vec::with_capacity(values.len() + 1);
                    offsets.push(0);
                    for i in 0..values.len() {
                        push_json_str(&mut text, values.value(i));
                        offsets.push(text.len());
                    }
                    Col::Written {
                        keys: d.keys().values(),
                        offsets,
                        text,
                    }
                } else {
                    Col::Dict(d.keys().values(), values)
                }
            }
            t if t.is_integer() || matches!(t, DataType::Boolean) => {
                Col::Bare(ArrayFormatter::try_new(a.as_ref(), &opts)?)
            }
            DataType::Timestamp(_, None) => {
                Col::Quoted(ArrayFormatter::try_new(a.as_ref(), &opts)?)
            }
            _ => return context_json_arrow(batch),
        };
        let mut key = Vec::new();
        serde_json::to_writer(&mut key, f.name()).map_err(json_err)?;
        cols.push((key, a, col));
    }
    let n = batch.num_rows();
    // Room for every row: its strings' bytes (escapes aside), keys, quotes and separators, and
    // up to 24 bytes for each other value; a builder that grows copies what it holds.
    let bytes: usize = cols
        .iter()
        .map(|(key, _, col)| {
            let values = match col {
                Col::Str(s) => {
                    let o = s.value_offsets();
                    (o[n] - o[0]) as usize
                }
                // (Keys of NULL rows may be anything.)
                Col::Written { keys, offsets, .. } => (keys.iter())
                    .filter(|&&k| (k as usize) + 1 < offsets.len())
                    .map(|&k| offsets[k as usize + 1] - offsets[k as usize])
                    .sum(),
                Col::Dict(keys, values) => (keys.iter())
                    .filter(|&&k| (k as usize) < values.len())
                    .map(|&k| values.value_length(k as usize) as usize)
                    .sum(),
                Col::Bare(_) | Col::Quoted(_) => 24 * n,
            };
            values + (key.len() + 4) * n
        })
        .sum();
    let mut out = arrow::array::StringBuilder::with_capacity(n, bytes + 2 * n);
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    let mut text = String::new();
    let io = |e| Error::io("json", e);
    for r in 0..n {
        buf.clear();
        buf.push(b'{');
        let mut first = true;
        for (key, a, col) in &cols {
            if a.is_null(r) {
                continue;
            }
            if !first {
                buf.push(b',');
            }
            first = false;
            buf.extend_from_slice(key);
            buf.push(b':');
            match col {
                Col::Str(s) => push_json_str(&mut buf, s.value(r)),
                Col::Dict(keys, values) => push_json_str(&mut buf, values.value(keys[r] as usize)),
                Col::Written {
                    keys,
                    offsets,
                    text,
                } => {
                    let k = keys[r] as usize;
                    buf.extend_from_slice(&text[offsets[k]..offsets[k + 1]]);
                }
                Col::Bare(f) => {
                    use std::io::Write;
                    write!(buf, "{}", f.value(r)).map_err(io)?
                }
                Col::Quoted(f) => {
                    use std::fmt::Write;
                    text.clear();
                    write!(text, "{}", f.value(r))
                        .map_err(|e| Error::invalid(format!("context JSON: {e}")))?;
                    push_json_str(&mut buf, &text);
                }
            }
        }
        buf.push(b'}');
        // SAFETY: `buf` is ASCII punctuation around keys serde_json wrote, JSON strings made
        // from `&str`s (their bytes, or serde_json's escaping of them) and `Display` output:
        // all UTF-8.
        out.append_value(unsafe { std::str::from_utf8_unchecked(&buf) });
    }
    Ok(out.finish())
}

/// Append `s` as a JSON string, byte for byte what serde_json writes. Context values (bucket
/// names, keys, addresses, agents) rarely hold a character JSON escapes; such a string is
/// checked eight bytes at a time ([`needs_json_escape`]) and copied whole, where serde_json
/// looks every byte up in its escape table (2.6% of an ingest with rules).
fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    if needs_json_escape(s.as_bytes()) {
        serde_json::to_writer(&mut *buf, s).expect("writing to a Vec cannot fail");
        return;
    }
    buf.reserve(s.len() + 2);
    buf.push(b'"');
    buf.extend_from_slice(s.as_bytes());
    buf.push(b'"');
}

/// Whether `b` holds a byte JSON strings escape: `"`, `\` or a control character below 0x20.
/// Eight bytes at a time, with the classic "has a zero byte" and "has a byte less than n"
/// word tests (exact as yes/no answers).
fn needs_json_escape(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let word = |x: u64| {
        (x.wrapping_sub(ONES * 0x20) & !x & HIGH)
            | zero(x ^ (ONES * u64::from(b'"')))
            | zero(x ^ (ONES * u64::from(b'\\')))
    };
    let mut words = b.chunks_exact(8);
    let mut hits = 0;
    for w in &mut words {
        hits |= word(u64::from_le_bytes(w.try_into().expect("eight bytes")));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        // Padded with a byte that needs no escape.
        let mut w = [b'a'; 8];
        w[..rest.len()].copy_from_slice(rest);
        hits |= word(u64::from_le_bytes(w));
    }
    hits != 0
}

fn json_err(e: serde_json::Error) -> Error {
    Error::Json {
        context: "alert context".into(),
        source: e,
    }
}

/// [`context_json`] through arrow-json, for any column types.
fn context_json_arrow(batch: &RecordBatch) -> Result<StringArray> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
        w.write(batch)?;
        w.finish()?;
    }
    let text = String::from_utf8_lossy(&buf);
    Ok(text.lines().map(Some).collect())
}

/// What one rule matched in one batch.
#[derive(Debug, Clone)]
pub struct RuleMatches {
    /// The matching rows, all columns.
    pub rows: RecordBatch,
    pub titles: StringArray,
    pub dedups: StringArray,
    /// `AlertContext` columns as JSON objects, when the rule has any.
    pub context: Option<StringArray>,
}

/// The enabled rules of one log type, compiled for one batch schema.
#[derive(Debug)]
pub struct RuleSet {
    pub log_type: String,
    pub rules: Vec<CompiledRule>,
}

impl RuleSet {
    /// Compile every rule in `rules` that applies to `log_type`.
    pub fn compile(rules: &[Arc<Rule>], log_type: &str, schema: &SchemaRef) -> Result<Self> {
        let ctx = expr_session()?;
        let rules = rules
            .iter()
            .filter(|r| r.log_types.iter().any(|t| t == log_type))
            .map(|r| CompiledRule::new(&ctx, r.clone(), schema))
            .collect::<Result<_>>()?;
        Ok(RuleSet {
            log_type: log_type.into(),
            rules,
        })
    }

    /// Evaluate every rule on `batch`: `(rule index, matches)` for rules that matched.
    pub fn eval(&self, batch: &RecordBatch) -> Result<Vec<(usize, RuleMatches)>> {
        Ok(self.eval_timed(batch)?.0)
    }

    /// [`RuleSet::eval`], also returning the time spent on conditions alone (what a
    /// per-event rules engine computes), as opposed to titles, dedup strings and context.
    pub fn eval_timed(
        &self,
        batch: &RecordBatch,
    ) -> Result<(Vec<(usize, RuleMatches)>, std::time::Duration)> {
        let mut out = Vec::new();
        let mut conditions = std::time::Duration::ZERO;
        for (i, r) in self.rules.iter().enumerate() {
            let started = std::time::Instant::now();
            let mask = r.matches(batch)?;
            conditions += started.elapsed();
            if let Some(m) = r.eval_masked(batch, &mask)? {
                out.push((i, m));
            }
        }
        Ok((out, conditions))
    }
}

/// Lower-case every object key, recursively.
fn lower_keys(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), lower_keys(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(lower_keys).collect()),
        v => v.clone(),
    }
}

/// JSON events as a batch of `schema`'s log type, exactly as ingest would build it (standard
/// fields and indicators included). Field names match columns case-insensitively; timestamps
/// may be RFC 3339, `2020-05-12 10:15:00`, the access-log form `[06/Feb/2019:00:00:38 +0000]`
/// or microseconds. With `strict`, a field that is not a column is an error.
///
/// Events of JSON log types (CloudTrail) are read by the log type's own parser, as they
/// appear in the log (`eventTime`, `userIdentity.arn`, …); fields the schema does not declare
/// go to its unknown-fields column, and an event with no event time gets the current time.
pub fn events_to_batch(
    schema: &Arc<LogSchema>,
    events: &[serde_json::Value],
    strict: bool,
) -> Result<RecordBatch> {
    if schema.parser == crate::schema::ParserKind::Json {
        return json_events_to_batch(schema, events);
    }
    let declared = Arc::new(Schema::new(
        schema
            .columns
            .iter()
            .map(crate::schema::Column::field)
            .collect::<Vec<_>>(),
    ));
    let mut rows = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        let serde_json::Value::Object(mut obj) = lower_keys(e) else {
            return Err(Error::invalid(format!(
                "event {}: not a JSON object",
                i + 1
            )));
        };
        if strict
            && let Some(k) = obj
                .keys()
                .find(|k| declared.index_of(k).is_err() && !k.starts_with("p_"))
        {
            return Err(Error::invalid(format!(
                "event {}: field {k:?} is not a column of {}",
                i + 1,
                schema.log_type
            )));
        }
        for c in &schema.columns {
            if matches!(c.ty, ColumnType::Timestamp)
                && let Some(serde_json::Value::String(s)) = obj.get(&c.name)
            {
                let t = s.trim().trim_start_matches('[').trim_end_matches(']');
                if let Some(us) = crate::parse::time::parse_clf(t.as_bytes()) {
                    obj.insert(c.name.clone(), us.into());
                }
            }
        }
        rows.push(serde_json::Value::Object(obj));
    }
    let mut decoder = arrow::json::ReaderBuilder::new(declared.clone())
        .with_batch_size(rows.len().max(1))
        .build_decoder()?;
    decoder
        .serialize(&rows)
        .map_err(|e| Error::invalid(format!("events do not fit {}: {e}", schema.log_type)))?;
    let batch = decoder
        .flush()?
        .unwrap_or_else(|| RecordBatch::new_empty(declared.clone()));
    let now = chrono::Utc::now().timestamp_micros();
    let event_times: Vec<i64> = match declared.index_of(&schema.event_time) {
        Ok(i) => {
            let t = cast(
                batch.column(i),
                &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
            )?;
            let t = t.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
            t.iter().map(|v| v.unwrap_or(now)).collect()
        }
        Err(_) => vec![now; batch.num_rows()],
    };
    let lines: Vec<u64> = (1..=batch.num_rows() as u64).collect();
    let source = SourceInfo {
        id: "events".into(),
        label: "events".into(),
    };
    StandardFields::new(schema.clone()).finish(
        batch.columns().to_vec(),
        event_times.into(),
        &lines,
        crate::parse::RowSources::One(&source),
        now,
    )
}

fn json_events_to_batch(
    schema: &Arc<LogSchema>,
    events: &[serde_json::Value],
) -> Result<RecordBatch> {
    let parser = crate::parse::json::JsonParser::new(schema.clone())?;
    let now = chrono::Utc::now();
    let time_key = schema
        .column(&schema.event_time)
        .map_or(schema.event_time.as_str(), |c| c.json_path());
    let mut text = String::new();
    for e in events {
        let mut e = e.clone();
        if let serde_json::Value::Object(obj) = &mut e
            && !obj.keys().any(|k| k.eq_ignore_ascii_case(time_key))
        {
            let t = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            obj.insert(time_key.to_string(), t.into());
        }
        text.push_str(&e.to_string());
        text.push('\n');
    }
    let source = SourceInfo {
        id: "events".into(),
        label: "events".into(),
    };
    let parsed = crate::parse::Parser::parse_chunk(
        &parser,
        text.as_bytes(),
        1,
        &source,
        now.timestamp_micros(),
    )?;
    if let Some(q) = parsed.quarantined.first() {
        return Err(Error::invalid(format!(
            "event {}: does not fit {}: {}",
            q.line, schema.log_type, q.reason
        )));
    }
    // The table's plain types (the parser interns some strings as dictionaries).
    match parsed.batch {
        Some(b) => crate::lake::writer::cast_batch(&b, &schema.arrow_schema()),
        None => Ok(RecordBatch::new_empty(schema.arrow_schema())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BooleanArray, Int32Array, Int64Array, TimestampMicrosecondArray};
    use arrow::datatypes::Field;

    proptest::proptest! {
        /// `filter_rows` gives what `filter_record_batch` gives, for lists of strings with
        /// NULL lists and NULL items, sliced or not, and the other columns.
        #[test]
        fn filter_rows_is_filter_record_batch(
            rows in proptest::collection::vec(
                (
                    proptest::option::weighted(0.8, proptest::collection::vec(
                        proptest::option::weighted(0.9, "[a-c]{0,4}"), 0..4)),
                    proptest::bool::ANY,
                ),
                0..60,
            ),
            cut in 0usize..8,
        ) {
            use arrow::array::{ListBuilder, StringBuilder};
            let mut lists = ListBuilder::new(StringBuilder::new());
            for (list, _) in &rows {
                match list {
                    Some(items) => {
                        for i in items {
                            lists.values().append_option(i.as_deref());
                        }
                        lists.append(true);
                    }
                    None => lists.append(false),
                }
            }
            let lists: ArrayRef = Arc::new(lists.finish());
            let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows.len() as i64));
            let schema = Arc::new(Schema::new(vec![
                Field::new("l", lists.data_type().clone(), true),
                Field::new("id", DataType::Int64, false),
            ]));
            let batch = RecordBatch::try_new(schema, vec![lists, ids]).unwrap();
            let cut = cut.min(batch.num_rows());
            let batch = batch.slice(cut, batch.num_rows() - cut);
            let mask = BooleanArray::from_iter(rows[cut..].iter().map(|(_, keep)| Some(*keep)));
            let want = arrow::compute::filter_record_batch(&batch, &mask).unwrap();
            let got = filter_rows(&batch, &mask).unwrap();
            proptest::prop_assert_eq!(got, want);
        }

        /// Context strings are written as serde_json writes them, escapes and all.
        #[test]
        fn json_strings_are_serde_jsons(s in "(\\PC|[\"\\\\\u{0}-\u{1f}\u{7f}]){0,40}") {
            let mut buf = b"x".to_vec();
            push_json_str(&mut buf, &s);
            proptest::prop_assert_eq!(
                String::from_utf8(buf).unwrap(),
                format!("x{}", serde_json::to_string(&s).unwrap())
            );
        }
    }

    #[test]
    fn context_json_matches_arrow_json() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("bucket", DataType::Utf8, true),
            Field::new("httpstatus", DataType::Int32, true),
            Field::new("bytes", DataType::Int64, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new("time", crate::schema::TIMESTAMP, true),
            Field::new("owner", crate::engine::dict_scan::dictionary_type(), true),
            Field::new(
                "requester",
                crate::engine::dict_scan::dictionary_type(),
                true,
            ),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![
                    Some("b\"1\\\n\u{1}é"),
                    None,
                    Some(""),
                ])),
                Arc::new(Int32Array::from(vec![Some(403), Some(-1), None])),
                Arc::new(Int64Array::from(vec![None, Some(i64::MAX), Some(0)])),
                Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
                Arc::new(TimestampMicrosecondArray::from(vec![
                    Some(1_589_277_638_123_456),
                    None,
                    Some(0),
                ])),
                // Interned by the parser: keys into distinct values.
                Arc::new(
                    arrow::array::DictionaryArray::try_new(
                        Int32Array::from(vec![Some(1), Some(1), None]),
                        Arc::new(StringArray::from(vec!["unused", "o\"wner"])),
                    )
                    .unwrap(),
                ),
                // More values than rows (a filtered batch keeps its dictionary whole).
                Arc::new(
                    arrow::array::DictionaryArray::try_new(
                        Int32Array::from(vec![Some(2), None, Some(3)]),
                        Arc::new(StringArray::from(vec!["a", "b", "c\"\\", "d\u{1}"])),
                    )
                    .unwrap(),
                ),
            ],
        )
        .unwrap();
        let fast = context_json(&b).unwrap();
        let slow = context_json_arrow(&b).unwrap();
        for i in 0..3 {
            let f: serde_json::Value = serde_json::from_str(fast.value(i)).unwrap();
            let s: serde_json::Value = serde_json::from_str(slow.value(i)).unwrap();
            assert_eq!(f, s, "row {i}: {} vs {}", fast.value(i), slow.value(i));
        }
    }
}
