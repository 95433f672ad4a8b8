//! Partial `GROUP BY` over string and integer columns, keyed by small ids.
//!
//! DataFusion's partial aggregation hashes every row's group values and compares them with the
//! group's stored values, column by column: `GROUP BY operation, httpstatus` over 10M rows (q03
//! of the benchmark suite) spent half its CPU there, most of it hashing and comparing the bytes
//! of strings that Parquet had already stored once per column chunk in a dictionary.
//!
//! [`MemoGroupRule`] replaces a partial [`AggregateExec`] whose group keys are plain columns
//! (one to four, strings or integers) and whose aggregates all have grouped accumulators by a
//! [`MemoGroupExec`]. It numbers each column's distinct values with an [`Interner`] (string
//! views map to ids without touching their bytes where the view was seen before; a
//! dictionary's values are numbered once per column chunk), one column at a time, then finds
//! each row's group by its ids: with one column in a vector indexed by the id itself; else
//! directly in a table indexed by the ids while they are few (two columns have their own
//! loop), else by the ids packed in a `u128` in one hash map. DataFusion's own accumulators are
//! fed the group indices. Measured on q03 (10M rows, 2 cores): 338 -> 264 ms, DuckDB 281 ms in
//! the same run; q02 (one column) 60-72 -> 44-53 ms with the vector. Its output is the partial
//! aggregate's (group values, then each accumulator's state), so the final aggregate is
//! unchanged. Memory is bounded: past [`MAX_GROUPS`] groups the partial state so far is
//! emitted and started afresh, which a partial aggregate may always do.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringBuilder,
};
use arrow::datatypes::{
    ArrowNativeType, ArrowPrimitiveType, DataType, Int8Type, Int16Type, Int32Type, Int64Type,
    SchemaRef, UInt8Type, UInt16Type, UInt32Type,
};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, internal_err};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, InputOrderMode, PlanProperties,
    SendableRecordBatchStream,
};
use futures::StreamExt;
use hashbrown::HashMap;

use super::view_memo::{Hasher, Interner, NONE, mark_nulls};

/// Groups a partition holds before it emits its partial state and starts afresh.
pub const MAX_GROUPS: usize = 1 << 18;
/// Group columns at most (their ids are packed 32 bits each in a `u128`).
const MAX_COLUMNS: usize = 4;

/// Puts a [`MemoGroupExec`] in place of each partial aggregate it can run.
#[derive(Debug, Default)]
pub struct MemoGroupRule;

impl PhysicalOptimizerRule for MemoGroupRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|p| {
            let Some(agg) = p.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(p));
            };
            match MemoGroupExec::try_from_aggregate(agg)? {
                Some(exec) => Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>)),
                None => Ok(Transformed::no(p)),
            }
        })
        .data()
    }

    fn name(&self) -> &str {
        "memo_group"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// How one group column's values become ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    String,
    Integer,
}

fn key_kind(t: &DataType) -> Option<KeyKind> {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(KeyKind::String),
        DataType::Dictionary(_, v) if key_kind(v) == Some(KeyKind::String) => Some(KeyKind::String),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => Some(KeyKind::Integer),
        _ => None,
    }
}

/// A partial aggregate grouping by ids (see the module docs).
#[derive(Debug)]
pub struct MemoGroupExec {
    input: Arc<dyn ExecutionPlan>,
    /// The group columns: index in the input, name, how they are keyed.
    keys: Vec<(usize, String, KeyKind)>,
    aggr: Vec<Arc<AggregateFunctionExpr>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// The partial aggregate's output schema.
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl MemoGroupExec {
    /// The replacement for `agg`, if it is a partial aggregate this can run.
    pub fn try_from_aggregate(agg: &AggregateExec) -> Result<Option<Self>> {
        let group = agg.group_expr();
        if *agg.mode() != AggregateMode::Partial
            || !group.is_single()
            || group.expr().is_empty()
            || group.expr().len() > MAX_COLUMNS
            || agg.limit_options().is_some()
            || !agg.dynamic_expressions_produced().is_empty()
            || *agg.input_order_mode() != InputOrderMode::Linear
            || !agg
                .aggr_expr()
                .iter()
                .all(|a| a.groups_accumulator_supported() && a.order_bys().is_empty())
        {
            return Ok(None);
        }
        let input_schema = agg.input().schema();
        let mut keys = Vec::new();
        for (expr, name) in group.expr() {
            let Some(col) = expr.downcast_ref::<Column>() else {
                return Ok(None);
            };
            let Some(kind) = key_kind(input_schema.field(col.index()).data_type()) else {
                return Ok(None);
            };
            keys.push((col.index(), name.clone(), kind));
        }
        // One integer column is DataFusion's fastest case already.
        if keys.len() == 1 && keys[0].2 == KeyKind::Integer {
            return Ok(None);
        }
        Ok(Some(MemoGroupExec {
            input: Arc::clone(agg.input()),
            keys,
            aggr: agg.aggr_expr().to_vec(),
            filters: agg.filter_expr().to_vec(),
            schema: agg.schema(),
            properties: Arc::clone(agg.properties()),
        }))
    }
}

impl DisplayAs for MemoGroupExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.keys.iter().map(|k| k.1.as_str()).collect();
        let aggr: Vec<&str> = self.aggr.iter().map(|a| a.name()).collect();
        write!(
            f,
            "MemoGroupExec: mode=Partial, gby=[{}], aggr=[{}]",
            keys.join(", "),
            aggr.join(", ")
        )
    }
}

impl ExecutionPlan for MemoGroupExec {
    fn name(&self) -> &str {
        "MemoGroupExec"
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let mut out = TreeNodeRecursion::Continue;
        for e in self
            .aggr
            .iter()
            .flat_map(|a| a.expressions())
            .chain(self.filters.iter().flatten().cloned())
        {
            out = f(&e)?;
            if out == TreeNodeRecursion::Stop {
                break;
            }
        }
        Ok(out)
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|_| datafusion::error::DataFusionError::Internal("one child".into()))?;
        Ok(Arc::new(MemoGroupExec {
            input,
            keys: self.keys.clone(),
            aggr: self.aggr.clone(),
            filters: self.filters.clone(),
            schema: Arc::clone(&self.schema),
            properties: Arc::clone(&self.properties),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let batch_size = context.session_config().batch_size();
        let groups = Groups::new(self)?;
        let stream = futures::stream::try_unfold(
            (input, groups, false, VecDeque::<RecordBatch>::new()),
            move |(mut input, mut groups, mut done, mut ready)| async move {
                loop {
                    if let Some(b) = ready.pop_front() {
                        return Ok(Some((b, (input, groups, done, ready))));
                    }
                    if done {
                        return Ok(None);
                    }
                    match input.next().await {
                        Some(batch) => {
                            groups.update(&batch?)?;
                            if groups.len() > MAX_GROUPS {
                                ready.extend(groups.emit(batch_size)?);
                            }
                        }
                        None => {
                            ready.extend(groups.emit(batch_size)?);
                            done = true;
                        }
                    }
                }
            },
        );
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            stream,
        )))
    }
}

/// One group column's values so far.
enum KeyValues {
    Strings(Interner),
    Integers(IntIds),
}

/// Integer values numbered in order of first sight (the integer twin of [`Interner`]).
struct IntIds {
    ids: HashMap<i64, u32, Hasher>,
    values: Vec<i64>,
    /// Direct-mapped by the value's low byte: `(value, id)` last seen there.
    cache: Box<[(i64, u32); 256]>,
}

impl IntIds {
    fn new() -> Self {
        IntIds {
            ids: HashMap::default(),
            values: Vec::new(),
            cache: Box::new([(0, NONE); 256]),
        }
    }

    #[inline(always)]
    fn id(&mut self, v: i64) -> u32 {
        let c = self.cache[(v & 255) as usize];
        if c.0 == v && c.1 != NONE {
            return c.1;
        }
        self.missed(v)
    }

    #[cold]
    #[inline(never)]
    fn missed(&mut self, v: i64) -> u32 {
        let values = &mut self.values;
        let id = *self.ids.entry(v).or_insert_with(|| {
            values.push(v);
            (values.len() - 1) as u32
        });
        self.cache[(v & 255) as usize] = (v, id);
        id
    }

    /// Set `out` to the id of each row of an integer array ([`NONE`] for NULL).
    fn ids_of(&mut self, column: &dyn Array, out: &mut Vec<u32>) -> Result<()> {
        fn each<T: ArrowPrimitiveType>(ids: &mut IntIds, a: &dyn Array, out: &mut Vec<u32>) {
            let a = a.as_primitive::<T>();
            out.extend(
                a.values()
                    .iter()
                    .map(|v| ids.id(v.to_i64().unwrap_or_default())),
            );
            mark_nulls(out, a.nulls());
        }
        out.clear();
        out.reserve(column.len());
        match column.data_type() {
            DataType::Int8 => each::<Int8Type>(self, column, out),
            DataType::Int16 => each::<Int16Type>(self, column, out),
            DataType::Int32 => each::<Int32Type>(self, column, out),
            DataType::Int64 => each::<Int64Type>(self, column, out),
            DataType::UInt8 => each::<UInt8Type>(self, column, out),
            DataType::UInt16 => each::<UInt16Type>(self, column, out),
            DataType::UInt32 => each::<UInt32Type>(self, column, out),
            t => return internal_err!("integer group key given {t}"),
        }
        Ok(())
    }
}

/// Row `r`'s ids packed, 32 bits a column.
#[inline]
fn packed_at(col_ids: &[Vec<u32>], r: usize) -> u128 {
    col_ids
        .iter()
        .enumerate()
        .fold(0u128, |k, (c, ids)| k | ((ids[r] as u128) << (32 * c)))
}

/// A partition's groups and accumulators.
struct Groups {
    keys: Vec<(usize, DataType)>,
    values: Vec<KeyValues>,
    /// Packed ids -> group index: a direct table while the ids are small, else a hash map.
    dense: Option<Dense>,
    map: HashMap<u128, u32, Hasher>,
    /// One key column: group index by id plus one (NULL is 0), `NONE` where no group yet.
    by_id: Vec<u32>,
    /// Packed ids of each group.
    packed: Vec<u128>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    args: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    schema: SchemaRef,
    /// Scratch: ids of each key column's rows, and the rows' group indices.
    col_ids: Vec<Vec<u32>>,
    group_indices: Vec<usize>,
}

impl Groups {
    fn new(exec: &MemoGroupExec) -> Result<Self> {
        let input = exec.input.schema();
        Ok(Groups {
            keys: exec
                .keys
                .iter()
                .map(|(i, _, _)| (*i, input.field(*i).data_type().clone()))
                .collect(),
            values: exec.keys.iter().map(|(_, _, kind)| fresh(*kind)).collect(),
            dense: Dense::fit(exec.keys.len(), &[], 0),
            map: HashMap::default(),
            by_id: Vec::new(),
            packed: Vec::new(),
            accumulators: exec
                .aggr
                .iter()
                .map(|a| a.create_groups_accumulator())
                .collect::<Result<_>>()?,
            args: exec.aggr.iter().map(|a| a.expressions()).collect(),
            filters: exec.filters.clone(),
            schema: Arc::clone(&exec.schema),
            col_ids: Vec::new(),
            group_indices: Vec::new(),
        })
    }

    fn len(&self) -> usize {
        self.packed.len()
    }

    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let rows = batch.num_rows();
        let columns = self.keys.len();
        self.col_ids.resize_with(columns, Vec::new);
        for (((index, _), values), out) in self
            .keys
            .iter()
            .zip(&mut self.values)
            .zip(&mut self.col_ids)
        {
            let column = batch.column(*index);
            match values {
                KeyValues::Strings(interner) => interner.ids_of(column.as_ref(), out)?,
                KeyValues::Integers(ids) => ids.ids_of(column.as_ref(), out)?,
            }
        }
        self.group_indices.clear();
        self.group_indices.reserve(rows);
        // Two columns (the common case) looked up in the direct table without packing.
        let col_ids = std::mem::take(&mut self.col_ids);
        if let (2, Some(d)) = (columns, &self.dense) {
            let (mut b0, mut b1) = (d.bits[0], d.bits[1]);
            let (x, y) = (&col_ids[0], &col_ids[1]);
            let mut r = 0;
            while r < rows {
                let (i, j) = (x[r].wrapping_add(1) as usize, y[r].wrapping_add(1) as usize);
                if (i >> b0) | (j >> b1) == 0 {
                    let g = self.dense.as_ref().expect("dense").slots[i | (j << b0)];
                    if g != NONE {
                        self.group_indices.push(g as usize);
                        r += 1;
                        continue;
                    }
                }
                let g = self.group_of(packed_at(&col_ids, r));
                self.group_indices.push(g as usize);
                r += 1;
                // A new group may have grown the table (or left it for the hash map).
                match &self.dense {
                    Some(d) => (b0, b1) = (d.bits[0], d.bits[1]),
                    None => break,
                }
            }
            self.groups_by_packed(&col_ids, r..rows);
        } else if columns == 1 {
            // One column: the id is the key, so a vector indexed by it finds the group
            // (q02 spent 23% of its time packing ids and probing the table).
            for &id in &col_ids[0][..rows] {
                let i = id.wrapping_add(1) as usize;
                let g = match self.by_id.get(i) {
                    Some(&g) if g != NONE => g,
                    _ => {
                        if i >= self.by_id.len() {
                            self.by_id.resize((i + 1).next_power_of_two(), NONE);
                        }
                        let g = self.packed.len() as u32;
                        self.by_id[i] = g;
                        self.packed.push(id as u128);
                        g
                    }
                };
                self.group_indices.push(g as usize);
            }
        } else {
            self.groups_by_packed(&col_ids, 0..rows);
        }
        self.col_ids = col_ids;
        let total = self.packed.len();
        for ((acc, args), filter) in self
            .accumulators
            .iter_mut()
            .zip(&self.args)
            .zip(&self.filters)
        {
            let values = args
                .iter()
                .map(|e| e.evaluate(batch)?.into_array(rows))
                .collect::<Result<Vec<ArrayRef>>>()?;
            let filter = match filter {
                Some(f) => Some(f.evaluate(batch)?.into_array(rows)?),
                None => None,
            };
            let filter: Option<&BooleanArray> = match &filter {
                Some(f) => match f.as_boolean_opt() {
                    Some(b) => Some(b),
                    None => return internal_err!("aggregate filter is not boolean"),
                },
                None => None,
            };
            acc.update_batch(&values, &self.group_indices, filter, total)?;
        }
        Ok(())
    }

    /// Groups of `rows` by their packed ids.
    #[inline(always)]
    fn groups_by_packed(&mut self, col_ids: &[Vec<u32>], rows: std::ops::Range<usize>) {
        for r in rows {
            let g = self.group_of(packed_at(col_ids, r));
            self.group_indices.push(g as usize);
        }
    }

    /// The group of packed ids `k`, made if new.
    fn group_of(&mut self, k: u128) -> u32 {
        if let Some(i) = self.dense.as_ref().and_then(|d| d.index(k)) {
            let d = self.dense.as_mut().expect("dense");
            if d.slots[i] == NONE {
                d.slots[i] = self.packed.len() as u32;
                self.packed.push(k);
            }
            return d.slots[i];
        }
        if self.dense.is_some() {
            // An id outgrew the table: grow it, or go to the hash map.
            self.dense = Dense::fit(self.keys.len(), &self.packed, k);
            if self.dense.is_none() {
                self.map
                    .extend(self.packed.iter().enumerate().map(|(g, k)| (*k, g as u32)));
            } else {
                return self.group_of(k);
            }
        }
        let next = self.packed.len() as u32;
        let g = *self.map.entry(k).or_insert(next);
        if g == next {
            self.packed.push(k);
        }
        g
    }

    /// Every group's values and partial state, in batches of `batch_size` rows; then empty.
    fn emit(&mut self, batch_size: usize) -> Result<Vec<RecordBatch>> {
        if self.packed.is_empty() {
            return Ok(vec![]);
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (c, ((_, data_type), values)) in self.keys.iter().zip(&self.values).enumerate() {
            let shift = 32 * c as u32;
            let ids = self.packed.iter().map(|k| (*k >> shift) as u32);
            let array: ArrayRef = match values {
                KeyValues::Strings(interner) => {
                    let mut b = StringBuilder::new();
                    for id in ids {
                        if id == NONE {
                            b.append_null();
                        } else {
                            b.append_value(std::str::from_utf8(interner.value(id)).map_err(
                                |e| datafusion::error::DataFusionError::Internal(e.to_string()),
                            )?);
                        }
                    }
                    Arc::new(b.finish())
                }
                KeyValues::Integers(int) => Arc::new(Int64Array::from_iter(
                    ids.map(|id| (id != NONE).then(|| int.values[id as usize])),
                )),
            };
            columns.push(arrow::compute::cast(&array, data_type)?);
        }
        for acc in &mut self.accumulators {
            columns.extend(acc.state(EmitTo::All)?);
        }
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        // Start afresh: ids only need to agree within one emission.
        self.dense = Dense::fit(self.keys.len(), &[], 0);
        self.map.clear();
        self.by_id.clear();
        self.packed.clear();
        for v in &mut self.values {
            *v = match v {
                KeyValues::Strings(_) => fresh(KeyKind::String),
                KeyValues::Integers(_) => fresh(KeyKind::Integer),
            };
        }
        let n = batch.num_rows();
        Ok((0..n)
            .step_by(batch_size.max(1))
            .map(|start| batch.slice(start, batch_size.min(n - start)))
            .collect())
    }
}

/// Most slots of a [`Dense`] table (4 MiB).
const DENSE_SLOTS: usize = 1 << 20;

/// Group index by the packed ids themselves, for few distinct values per column: each column's
/// id (plus one, so NULL is 0) takes `bits[c]` bits of the slot number.
struct Dense {
    bits: Vec<u32>,
    slots: Vec<u32>,
}

impl Dense {
    /// Slot bits each column needs for its id in `k`.
    fn need(columns: usize, k: u128) -> impl Iterator<Item = u32> {
        (0..columns).map(move |c| {
            let id = ((k >> (32 * c)) as u32).wrapping_add(1);
            u32::BITS - id.leading_zeros()
        })
    }

    /// A table holding every key of `packed` and `k` (group `g` at `packed[g]`), or `None`
    /// when it would be too large.
    fn fit(columns: usize, packed: &[u128], k: u128) -> Option<Dense> {
        let mut bits = vec![1u32; columns];
        for key in packed.iter().chain([&k]) {
            for (b, n) in bits.iter_mut().zip(Self::need(columns, *key)) {
                *b = (*b).max(n);
            }
        }
        // Room to grow: one bit more than needed now.
        bits.iter_mut().for_each(|b| *b += 1);
        if bits.iter().sum::<u32>() > DENSE_SLOTS.trailing_zeros() {
            return None;
        }
        let mut d = Dense {
            slots: vec![NONE; 1 << bits.iter().sum::<u32>()],
            bits,
        };
        for (g, key) in packed.iter().enumerate() {
            let i = d.index(*key).expect("fits");
            d.slots[i] = g as u32;
        }
        Some(d)
    }

    /// The slot of key `k`, or `None` when an id is too large for the table.
    #[inline]
    fn index(&self, k: u128) -> Option<usize> {
        let mut i = 0usize;
        let mut shift = 0u32;
        for (c, b) in self.bits.iter().enumerate() {
            let id = ((k >> (32 * c)) as u32).wrapping_add(1) as usize;
            if id >> b != 0 {
                return None;
            }
            i |= id << shift;
            shift += b;
        }
        Some(i)
    }
}

fn fresh(kind: KeyKind) -> KeyValues {
    match kind {
        KeyKind::String => KeyValues::Strings(Interner::default()),
        KeyKind::Integer => KeyValues::Integers(IntIds::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringViewArray, UInt32Array};
    use arrow::datatypes::{Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};
    use proptest::prelude::*;

    fn context(with_rule: bool) -> SessionContext {
        let mut b = SessionStateBuilder::new()
            .with_config(
                SessionConfig::new()
                    .with_target_partitions(2)
                    .with_batch_size(7),
            )
            .with_default_features();
        if with_rule {
            b = b.with_physical_optimizer_rule(Arc::new(MemoGroupRule));
        }
        SessionContext::new_with_state(b.build())
    }

    /// Batches whose string views point into shared dictionary buffers, in two partitions;
    /// with `dictionaries`, the string columns are dictionary arrays over one shared values
    /// array instead, a new array object each batch as the Parquet reader gives them.
    fn table(rows: &[(u8, Option<u8>, Option<i32>, i32)], dictionaries: bool) -> Arc<MemTable> {
        let words: Vec<String> = (0..8)
            .map(|i| {
                if i % 2 == 0 {
                    format!("w{i}")
                } else {
                    format!("a-value-longer-than-twelve-{i}")
                }
            })
            .collect();
        let dict = StringViewArray::from_iter_values(words.iter());
        let shared: ArrayRef = Arc::new(arrow::array::StringArray::from_iter_values(words.iter()));
        let string_type = if dictionaries {
            crate::engine::dict_scan::dictionary_type()
        } else {
            DataType::Utf8View
        };
        let strings = |keys: UInt32Array| -> ArrayRef {
            if dictionaries {
                let keys = arrow::compute::cast(&keys, &DataType::Int32).unwrap();
                let values = arrow::array::make_array(shared.to_data());
                Arc::new(
                    arrow::array::DictionaryArray::<Int32Type>::try_new(
                        keys.as_primitive::<Int32Type>().clone(),
                        values,
                    )
                    .unwrap(),
                )
            } else {
                arrow::compute::take(&dict, &keys, None).unwrap()
            }
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", string_type.clone(), true),
            Field::new("t", string_type, true),
            Field::new("n", DataType::Int32, true),
            Field::new("v", DataType::Int32, false),
        ]));
        let batch = |rows: &[(u8, Option<u8>, Option<i32>, i32)]| {
            let s = strings(UInt32Array::from_iter_values(
                rows.iter().map(|r| (r.0 % 8) as u32),
            ));
            let t = strings(UInt32Array::from_iter(
                rows.iter().map(|r| r.1.map(|x| (x % 8) as u32)),
            ));
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    s,
                    t,
                    Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.2))),
                    Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.3))),
                ],
            )
            .unwrap()
        };
        let half = rows.len() / 2;
        let parts: Vec<Vec<RecordBatch>> = [&rows[..half], &rows[half..]]
            .iter()
            .map(|p| p.chunks(5).map(batch).collect())
            .collect();
        Arc::new(MemTable::try_new(schema, parts).unwrap())
    }

    fn run(ctx: &SessionContext, sql: &str) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let batches = rt
            .block_on(async { ctx.sql(sql).await?.collect().await })
            .unwrap();
        arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
    }

    const QUERIES: [&str; 5] = [
        "SELECT s, count(*), sum(v) FROM x GROUP BY s ORDER BY s",
        "SELECT s, t, count(*), sum(v), min(n), max(v) FROM x GROUP BY s, t ORDER BY s, t",
        "SELECT s, n, count(n), avg(v) FROM x GROUP BY s, n ORDER BY s, n",
        "SELECT t, count(*) FILTER (WHERE v > 0), count(DISTINCT s) FROM x GROUP BY t ORDER BY t",
        "SELECT n, t, s, sum(v) FROM x GROUP BY n, t, s ORDER BY n, t, s",
    ];

    proptest! {
        /// Answers are DataFusion's own, whatever the values, NULLs and batching.
        #[test]
        fn answers_are_datafusions(
            rows in proptest::collection::vec(
                (0u8..8, proptest::option::of(0u8..8), proptest::option::of(-2i32..3), -5i32..5),
                0..60),
        ) {
            for dictionaries in [false, true] {
                let table = table(&rows, dictionaries);
                let (ours, theirs) = (context(true), context(false));
                ours.register_table("x", table.clone()).unwrap();
                theirs.register_table("x", table).unwrap();
                for q in QUERIES {
                    prop_assert_eq!(run(&ours, q), run(&theirs, q), "{} {}", q, dictionaries);
                }
            }
        }
    }

    #[test]
    fn the_rule_replaces_partial_aggregates_it_can_run() {
        let ctx = context(true);
        ctx.register_table("x", table(&[(1, Some(2), Some(3), 4); 20], true))
            .unwrap();
        let plan = run(&ctx, &format!("EXPLAIN {}", QUERIES[0]));
        assert!(plan.contains("MemoGroupExec"), "{plan}");
        // One integer key: DataFusion's own.
        let plan = run(&ctx, "EXPLAIN SELECT n, count(*) FROM x GROUP BY n");
        assert!(!plan.contains("MemoGroupExec"), "{plan}");
    }

    #[test]
    fn two_column_groups_survive_the_table_growing_mid_batch() {
        // New ids arrive within one batch, so the direct table grows (wider slots) while the
        // two-column loop runs; rows after the growth must land in their own groups.
        let n = 3000;
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8View, false),
            Field::new("n", DataType::Int32, true),
        ]));
        // The first column's ids keep growing, so the table's first width changes; NULLs in
        // the second fill the slots a lookup with the old width would land on.
        let s = StringViewArray::from_iter_values((0..n).map(|i| format!("w{}", i % 300)));
        let v = Int32Array::from_iter((0..n).map(|i| (i % 5 != 0).then_some(i % 7 - 3)));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(s), Arc::new(v)]).unwrap();
        let table = Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap());
        let sql = "SELECT s, n, count(*) FROM x GROUP BY s, n ORDER BY s, n";
        let answers: Vec<String> = [true, false]
            .into_iter()
            .map(|rule| {
                let ctx = context(rule);
                ctx.register_table("x", table.clone()).unwrap();
                run(&ctx, sql)
            })
            .collect();
        assert_eq!(answers[0], answers[1]);
        let pairs: std::collections::HashSet<_> = (0..n)
            .map(|i| (i % 300, (i % 5 != 0).then_some(i % 7)))
            .collect();
        // Header and borders: 4 lines.
        assert_eq!(
            answers[0].lines().count(),
            pairs.len() + 4,
            "{}",
            answers[0]
        );
    }

    #[test]
    fn too_many_groups_are_emitted_and_merged() {
        // More groups than MAX_GROUPS in one partition: partial state is emitted mid-stream,
        // and the final aggregate merges the pieces.
        let n = MAX_GROUPS + 1000;
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8View, false),
            Field::new("t", DataType::Utf8View, false),
        ]));
        let s = StringViewArray::from_iter_values((0..n).map(|i| format!("k{}", i % (n - 10))));
        let t = StringViewArray::from_iter_values((0..n).map(|_| "x"));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(s), Arc::new(t)]).unwrap();
        let table = Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap());
        let ctx = context(true);
        ctx.register_table("x", table).unwrap();
        let out = run(
            &ctx,
            "SELECT count(*), sum(c) FROM (SELECT s, t, count(*) c FROM x GROUP BY s, t)",
        );
        assert!(out.contains(&format!("| {} ", n - 10)), "{out}");
        assert!(out.contains(&format!("| {n} ")), "{out}");
    }
}
