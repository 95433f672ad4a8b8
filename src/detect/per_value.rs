//! Rule conditions over dictionary columns, evaluated once per distinct value.
//!
//! Parsers intern most string columns (bucket, requester, operation, user agent, remote
//! address) as Arrow dictionaries: each distinct string of a chunk once, and a key per row. A
//! condition like `glob_match(operation, 'REST.*.OBJECT')` does not see that: DataFusion casts
//! the dictionary to plain strings (a copy of every row's string) and the function then matches
//! every row, though a batch of thousands of rows holds a few dozen operations.
//!
//! [`rewrite`] replaces each largest boolean part of a condition that reads nothing but
//! dictionary columns (at most [`MAX_COLUMNS`] of them) by a [`PerValue`], which evaluates that
//! part once per distinct combination of keys in the batch and gives each row its combination's
//! answer. The answers are the same: the part is deterministic and reads only those columns, so
//! rows with the same values get the same answer (NULL counting as one more value). A batch with
//! about as many combinations as rows has the part evaluated on its rows as before.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, DictionaryArray, RecordBatch, UInt32Array};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::compute::take;
use arrow::datatypes::{DataType, Int32Type, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, Operator, Volatility};
use datafusion::physical_expr::expressions::{
    BinaryExpr, Column, IsNotNullExpr, IsNullExpr, Literal, NotExpr,
};
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};

/// Dictionary columns a part may read: the combinations of more grow too many to enumerate.
pub const MAX_COLUMNS: usize = 3;

/// `expr` (a condition compiled against `schema`) with each largest boolean part that reads
/// only dictionary columns evaluated per distinct value ([`PerValue`]).
pub fn rewrite(expr: Arc<dyn PhysicalExpr>, schema: &Schema) -> DfResult<Arc<dyn PhysicalExpr>> {
    expr.transform_down(|e| {
        Ok(match PerValue::try_new(&e, schema)? {
            Some(p) => Transformed::new(Arc::new(p), true, TreeNodeRecursion::Jump),
            None => Transformed::no(e),
        })
    })
    .data()
}

/// A boolean expression over dictionary columns, evaluated once per distinct combination of
/// their keys in each batch (see the module docs).
#[derive(Debug)]
pub struct PerValue {
    /// The expression against the batch's schema.
    original: Arc<dyn PhysicalExpr>,
    /// The same with its own parts rewritten, for batches with too many combinations (the
    /// part `operation IN (…)` of `operation IN (…) AND glob_match_any(key, …)`, where `key`
    /// has a value per row).
    fallback: Arc<dyn PhysicalExpr>,
    /// The batch's columns it reads, ascending.
    columns: Vec<usize>,
    /// The expression against a batch of only those columns, in that order.
    inner: Arc<dyn PhysicalExpr>,
    /// The schema of that batch.
    schema: SchemaRef,
}

impl PerValue {
    /// A [`PerValue`] for `e`, when `e` is boolean, deterministic, worth it, and reads only
    /// dictionary columns of `schema`.
    pub fn try_new(e: &Arc<dyn PhysicalExpr>, schema: &Schema) -> DfResult<Option<Self>> {
        let columns = read_columns(e);
        let dictionaries = columns.iter().all(|&c| {
            matches!(schema.field(c).data_type(),
                DataType::Dictionary(k, _) if **k == DataType::Int32)
        });
        if columns.is_empty()
            || columns.len() > MAX_COLUMNS
            || !dictionaries
            || e.data_type(schema)? != DataType::Boolean
            || !deterministic(e)?
            || !worth_it(e)?
        {
            return Ok(None);
        }
        let distinct = Arc::new(Schema::new(
            (columns.iter())
                .map(|&c| schema.field(c).clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let parts = (e.children().into_iter())
            .map(|c| rewrite(Arc::clone(c), schema))
            .collect::<DfResult<_>>()?;
        let fallback = Arc::clone(e).with_new_children(parts)?;
        Self::with_schema(Arc::clone(e), fallback, distinct).map(Some)
    }

    /// `original` evaluated per value on batches of `schema` (its columns, in order).
    fn with_schema(
        original: Arc<dyn PhysicalExpr>,
        fallback: Arc<dyn PhysicalExpr>,
        schema: SchemaRef,
    ) -> DfResult<Self> {
        let columns = read_columns(&original);
        let inner = Arc::clone(&original)
            .transform_up(|e| {
                Ok(match e.downcast_ref::<Column>() {
                    Some(c) => {
                        let at = columns.binary_search(&c.index()).expect("collected");
                        Transformed::yes(Arc::new(Column::new(c.name(), at)) as _)
                    }
                    None => Transformed::no(e),
                })
            })
            .data()?;
        Ok(PerValue {
            original,
            fallback,
            columns,
            inner,
            schema,
        })
    }
}

/// Indices of the columns `e` reads, ascending.
fn read_columns(e: &Arc<dyn PhysicalExpr>) -> Vec<usize> {
    let mut columns: Vec<usize> = collect_columns(e).iter().map(Column::index).collect();
    columns.sort_unstable();
    columns
}

/// Whether no function `e` calls is volatile (`random()`): its answer depends on its input only.
fn deterministic(e: &Arc<dyn PhysicalExpr>) -> DfResult<bool> {
    let mut volatile = false;
    e.apply(|n| {
        if let Some(f) = n.downcast_ref::<ScalarFunctionExpr>()
            && f.fun().signature().volatility == Volatility::Volatile
        {
            volatile = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(!volatile)
}

/// Whether `e` does more than look at NULLs (`x IS NULL OR y IS NULL` reads the keys' NULL
/// masks, cheaper than enumerating combinations).
fn worth_it(e: &Arc<dyn PhysicalExpr>) -> DfResult<bool> {
    let mut work = false;
    e.apply(|n| {
        let cheap = n.downcast_ref::<Column>().is_some()
            || n.downcast_ref::<Literal>().is_some()
            || n.downcast_ref::<IsNullExpr>().is_some()
            || n.downcast_ref::<IsNotNullExpr>().is_some()
            || n.downcast_ref::<NotExpr>().is_some()
            || n.downcast_ref::<BinaryExpr>()
                .is_some_and(|b| matches!(b.op(), Operator::And | Operator::Or));
        work |= !cheap;
        Ok(if work {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    Ok(work)
}

impl PhysicalExpr for PerValue {
    fn data_type(&self, _schema: &Schema) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, schema: &Schema) -> DfResult<bool> {
        self.original.nullable(schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> DfResult<ColumnarValue> {
        let rows = batch.num_rows();
        let dictionaries: Option<Vec<&DictionaryArray<Int32Type>>> = (self.columns.iter())
            .map(|&c| batch.column(c).as_dictionary_opt::<Int32Type>())
            .collect();
        let Some(dictionaries) = dictionaries else {
            return self.fallback.evaluate(batch);
        };
        let combinations =
            (dictionaries.iter()).fold(1usize, |n, d| n.saturating_mul(d.values().len() + 1));
        if combinations > (4 * rows).max(1024) {
            return self.fallback.evaluate(batch);
        }
        // Each row's combination as a number: its keys as the digits of a mixed radix, a NULL
        // as the digit after the last value's. (A NULL row's key may be anything: it is added,
        // then taken back.)
        let mut codes = vec![0u32; rows];
        let mut stride = 1u32;
        for d in &dictionaries {
            let keys = d.keys().values();
            for (c, &k) in codes.iter_mut().zip(keys.iter()) {
                *c = c.wrapping_add((k as u32).wrapping_mul(stride));
            }
            let null_digit = d.values().len() as u32;
            if let Some(nulls) = d.keys().nulls().filter(|n| n.null_count() > 0) {
                for r in (0..rows).filter(|&r| nulls.is_null(r)) {
                    codes[r] = (codes[r].wrapping_sub((keys[r] as u32).wrapping_mul(stride)))
                        .wrapping_add(null_digit * stride);
                }
            }
            stride *= null_digit + 1;
        }
        // The distinct combinations present, numbered in order of first appearance: the first
        // row of each, and in `codes` each row's number.
        const NEW: u32 = u32::MAX;
        let mut number = vec![NEW; combinations];
        let mut first_rows: Vec<u32> = Vec::new();
        for (r, c) in codes.iter_mut().enumerate() {
            let n = &mut number[*c as usize];
            if *n == NEW {
                *n = first_rows.len() as u32;
                first_rows.push(r as u32);
            }
            *c = *n;
        }
        if first_rows.len() > rows / 2 {
            return self.fallback.evaluate(batch);
        }
        let first_rows = UInt32Array::from(first_rows);
        let columns = (self.columns.iter())
            .map(|&c| take(batch.column(c), &first_rows, None))
            .collect::<Result<Vec<_>, _>>()?;
        let distinct = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        let answers = self
            .inner
            .evaluate(&distinct)?
            .into_array(distinct.num_rows())?;
        let answers = answers.as_boolean();
        // Per combination: bit 0 its answer, bit 1 whether that is not NULL.
        let table: Vec<u8> = (0..answers.len())
            .map(|i| u8::from(answers.value(i)) | (u8::from(answers.is_valid(i)) << 1))
            .collect();
        let values = BooleanBuffer::collect_bool(rows, |r| table[codes[r] as usize] & 1 != 0);
        let nulls = (answers.null_count() > 0).then(|| {
            NullBuffer::new(BooleanBuffer::collect_bool(rows, |r| {
                table[codes[r] as usize] & 2 != 0
            }))
        });
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::new(
            values, nulls,
        ))))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.original]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> DfResult<Arc<dyn PhysicalExpr>> {
        let original = Arc::clone(&children[0]);
        Ok(Arc::new(PerValue::with_schema(
            Arc::clone(&original),
            original,
            Arc::clone(&self.schema),
        )?))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.parenthesized(f, |f, e| e.fmt_sql(f))
    }
}

impl PerValue {
    /// The expression as written, in parentheses when it is a binary one: a parent `AND`
    /// parenthesizes only sides it knows to be `OR`s.
    fn parenthesized(
        &self,
        f: &mut fmt::Formatter<'_>,
        write: impl Fn(&mut fmt::Formatter<'_>, &Arc<dyn PhysicalExpr>) -> fmt::Result,
    ) -> fmt::Result {
        if self.original.downcast_ref::<BinaryExpr>().is_some() {
            f.write_str("(")?;
            write(f, &self.original)?;
            f.write_str(")")
        } else {
            write(f, &self.original)
        }
    }
}

impl fmt::Display for PerValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.parenthesized(f, |f, e| write!(f, "{e}"))
    }
}

impl PartialEq for PerValue {
    fn eq(&self, other: &Self) -> bool {
        self.original.as_ref() == other.original.as_ref()
    }
}

impl Eq for PerValue {}

impl Hash for PerValue {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.original.hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::eval::{compile_expr, expr_session};
    use crate::engine::dict_scan::dictionary_type;
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::datatypes::Field;
    use proptest::prelude::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("operation", dictionary_type(), true),
            Field::new("bucket", dictionary_type(), true),
            Field::new("requester", dictionary_type(), true),
            Field::new("httpstatus", DataType::Int64, true),
            Field::new("key", dictionary_type(), true),
            Field::new("uri", DataType::Utf8, true),
        ]))
    }

    /// Conditions shaped like the shipped rules', and whether each has a part to rewrite.
    const CONDITIONS: &[(&str, bool)] = &[
        (
            "glob_match(operation, 'REST.*.OBJECT') AND httpstatus IN (400, 403) \
             AND (requester IS NULL OR NOT starts_with(requester, 'arn:aws:iam::1'))",
            true,
        ),
        (
            r#"glob_map_match(bucket, requester, '{"b*": ["arn:*:role/r1*"], "a": ["*"]}') = false"#,
            true,
        ),
        (
            "operation IN ('REST.PUT.OBJECT', 'REST.DELETE.OBJECT') \
             AND glob_match_any(key, 'k1*', '*9') AND bucket = 'b2'",
            true,
        ),
        ("coalesce(requester, 'anonymous') LIKE '%r2%'", true),
        // Only NULL masks: left alone.
        ("bucket IS NULL OR requester IS NULL", false),
        ("httpstatus > 400 OR uri = 'k1'", false),
        ("starts_with(uri, 'k1') AND starts_with(bucket, 'b')", true),
    ];

    /// A batch of `rows`: each string an index into a few values or NULL.
    /// A test row: operation, bucket, requester (indices into a few values), status, key.
    type Row = (Option<u8>, Option<u8>, Option<u8>, Option<i64>, Option<u8>);

    fn batch(rows: &[Row]) -> RecordBatch {
        fn dict(v: impl Iterator<Item = Option<String>>) -> ArrayRef {
            let plain = StringArray::from_iter(v);
            arrow::compute::cast(&plain, &dictionary_type()).unwrap()
        }
        const OPS: [&str; 4] = [
            "REST.GET.OBJECT",
            "REST.PUT.OBJECT",
            "REST.DELETE.OBJECT",
            "BATCH.X",
        ];
        let op = dict(
            rows.iter()
                .map(|r| r.0.map(|i| OPS[i as usize % 4].to_string())),
        );
        let bucket = dict(
            rows.iter()
                .map(|r| r.1.map(|i| ["a", "b1", "b2"][i as usize % 3].into())),
        );
        let requester = dict(rows.iter().map(|r| {
            r.2.map(|i| format!("arn:aws:iam::{}:role/r{}", i % 3, i % 5))
        }));
        let status: ArrayRef = Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.3)));
        let key = dict(rows.iter().map(|r| r.4.map(|i| format!("k{i}"))));
        let uri: ArrayRef = Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.4.map(|i| format!("k{i}"))),
        ));
        RecordBatch::try_new(schema(), vec![op, bucket, requester, status, key, uri]).unwrap()
    }

    fn compiled(sql: &str) -> Arc<dyn PhysicalExpr> {
        let ctx = expr_session().unwrap();
        compile_expr(&ctx, &schema(), sql, |t| *t == DataType::Boolean).unwrap()
    }

    fn has_per_value(e: &Arc<dyn PhysicalExpr>) -> bool {
        let mut found = false;
        e.apply(|n| {
            found |= n.downcast_ref::<PerValue>().is_some();
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
        found
    }

    #[test]
    fn rewrites_the_parts_that_read_only_dictionaries() {
        for &(sql, expected) in CONDITIONS {
            let e = rewrite(compiled(sql), &schema()).unwrap();
            assert_eq!(has_per_value(&e), expected, "{sql}: {e}");
        }
    }

    #[test]
    fn a_rewritten_part_is_shown_as_it_binds() {
        let e = rewrite(compiled(CONDITIONS[0].0), &schema()).unwrap();
        let shown = e.to_string();
        let tail =
            "AND (requester@2 IS NULL OR CAST(requester@2 AS Utf8) NOT LIKE arn:aws:iam::1%)";
        assert!(shown.ends_with(tail), "{shown}");
    }

    #[test]
    fn a_part_too_varied_to_enumerate_has_its_own_parts_rewritten() {
        let sql = "operation IN ('REST.PUT.OBJECT', 'REST.POST.OBJECT', 'a', 'b', 'c', 'd') \
                   AND glob_match_any(key, 'k1*')";
        let e = rewrite(compiled(sql), &schema()).unwrap();
        let top = e.downcast_ref::<PerValue>().expect("the whole condition");
        assert!(!has_per_value(&top.original));
        assert!(has_per_value(&top.fallback), "{}", top.fallback);
    }

    #[test]
    fn a_batch_of_distinct_values_is_evaluated_row_by_row() {
        // More combinations than half the rows: the original expression runs, same answers.
        let rows: Vec<_> = (0..40u8)
            .map(|i| (Some(i), Some(i), Some(i), Some(403), Some(i)))
            .collect();
        let b = batch(&rows);
        let (sql, _) = CONDITIONS[1];
        let plain = compiled(sql);
        let rewritten = rewrite(Arc::clone(&plain), &schema()).unwrap();
        let a = plain
            .evaluate(&b)
            .unwrap()
            .into_array(b.num_rows())
            .unwrap();
        let r = rewritten
            .evaluate(&b)
            .unwrap()
            .into_array(b.num_rows())
            .unwrap();
        assert_eq!(a.as_ref(), r.as_ref());
    }

    proptest! {
        /// Every condition gives the same answers (NULLs included) rewritten or not.
        #[test]
        fn same_answers_as_the_expression_it_replaces(
            rows in proptest::collection::vec(
                (
                    proptest::option::weighted(0.9, 0u8..4),
                    proptest::option::weighted(0.9, 0u8..3),
                    proptest::option::weighted(0.8, 0u8..15),
                    proptest::option::weighted(0.9, prop_oneof![Just(200i64), Just(400), Just(403)]),
                    proptest::option::weighted(0.9, 0u8..200),
                ),
                0..300,
            ),
        ) {
            let b = batch(&rows);
            for &(sql, _) in CONDITIONS {
                let plain = compiled(sql);
                let rewritten = rewrite(Arc::clone(&plain), &schema()).unwrap();
                let a = plain.evaluate(&b).unwrap().into_array(b.num_rows()).unwrap();
                let r = rewritten.evaluate(&b).unwrap().into_array(b.num_rows()).unwrap();
                prop_assert_eq!(a.as_ref(), r.as_ref(), "{}", sql);
            }
        }
    }
}
