//! `count(DISTINCT x)` of strings per group, in one set instead of one set per group.
//!
//! DataFusion 55 counts distinct strings in a `GROUP BY` with a row accumulator (a hash set)
//! per group, fed one group's rows at a time through an adapter. On q05 of the benchmark suite
//! (`COUNT(DISTINCT requester)`, `COUNT(DISTINCT remoteip)` by bucket over 10M rows) that was
//! 80% of the query's CPU. [`Count`] is DataFusion's `count` registered again under its own
//! name, delegating everything, except that distinct counts of `Utf8`, `LargeUtf8` and
//! `Utf8View` values (and dictionaries of them) in grouped aggregations use [`DistinctStrings`]:
//!
//! - each distinct value is stored once and given an id;
//! - string views are mapped to ids without looking at their bytes where possible: a value of
//!   12 bytes or fewer is its view (a hash lookup of 16 bytes), a longer one is remembered
//!   where its view points ([`super::view_memo`]: Parquet hands out the same view for every
//!   row of a dictionary-encoded value), so most rows cost an array lookup instead of hashing
//!   and comparing their bytes; a dictionary's values are numbered once per column chunk
//!   (its batches share them), and each row takes its key's id;
//! - the distinct (group, id) pairs live in one set of `u64`.
//!
//! The intermediate state is DataFusion's (a list of the distinct values per group), so partial
//! and final stages, spilling and the row accumulator used without `GROUP BY` all interoperate.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray, StringBuilder};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator, ReversedUDAF,
    SetMonotonicity, Signature, StatisticsArgs,
};
use hashbrown::HashSet;

use super::view_memo::{Hasher, Interner, NONE};

/// DataFusion's `count`, with a grouped accumulator for distinct strings.
#[derive(Debug, PartialEq, Eq, Hash, Default)]
pub struct Count(datafusion::functions_aggregate::count::Count);

impl Count {
    pub fn new() -> Self {
        Self::default()
    }
}

fn is_string(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_string(v),
        _ => false,
    }
}

/// The type distinct values are kept as in the state: a dictionary's values' type, as
/// DataFusion's `count` declares it.
fn state_type(t: &DataType) -> DataType {
    match t {
        DataType::Dictionary(_, v) => v.as_ref().clone(),
        t => t.clone(),
    }
}

fn ours(args: &AccumulatorArgs) -> bool {
    args.is_distinct && args.exprs.len() == 1 && is_string(args.expr_fields[0].data_type())
}

impl AggregateUDFImpl for Count {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn signature(&self) -> &Signature {
        self.0.signature()
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.0.return_type(arg_types)
    }
    fn is_nullable(&self) -> bool {
        self.0.is_nullable()
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.0.state_fields(args)
    }
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.0.accumulator(args)
    }
    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        ours(&args) || self.0.groups_accumulator_supported(args)
    }
    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        if ours(&args) {
            let t = state_type(args.expr_fields[0].data_type());
            return Ok(Box::new(DistinctStrings::new(t)));
        }
        self.0.create_groups_accumulator(args)
    }
    fn reverse_expr(&self) -> ReversedUDAF {
        self.0.reverse_expr()
    }
    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        self.0.default_value(data_type)
    }
    fn value_from_stats(&self, args: &StatisticsArgs) -> Option<ScalarValue> {
        self.0.value_from_stats(args)
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.0.documentation()
    }
    fn set_monotonicity(&self, data_type: &DataType) -> SetMonotonicity {
        self.0.set_monotonicity(data_type)
    }
    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.0.create_sliding_accumulator(args)
    }
    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.0.order_sensitivity()
    }
}

/// Distinct string values per group (see the module docs).
#[derive(Debug)]
pub struct DistinctStrings {
    /// The state list item type (the input's, or its dictionary's values').
    data_type: DataType,
    values: Interner,
    /// `group << 32 | id` for each distinct pair seen.
    seen: HashSet<u64, Hasher>,
    /// Distinct values per group.
    counts: Vec<i64>,
    /// Per batch: the id of each row, or [`NONE`].
    row_ids: Vec<u32>,
}

impl DistinctStrings {
    pub fn new(data_type: DataType) -> Self {
        DistinctStrings {
            data_type,
            values: Interner::default(),
            seen: HashSet::default(),
            counts: Vec::new(),
            row_ids: Vec::new(),
        }
    }

    /// Fill `row_ids` with the id of each row of `values` ([`NONE`] for NULL).
    fn ids_of(&mut self, values: &dyn Array) -> Result<()> {
        self.values.ids_of(values, &mut self.row_ids)
    }

    fn add(&mut self, group: usize, id: u32) {
        if self.seen.insert(pack(group, id)) {
            self.counts[group] += 1;
        }
    }

    fn check_groups(&mut self, total: usize) -> Result<()> {
        if total > u32::MAX as usize {
            return Err(datafusion::error::DataFusionError::ResourcesExhausted(
                "count(DISTINCT): more than 4 billion groups".into(),
            ));
        }
        self.counts.resize(total, 0);
        Ok(())
    }

    /// Take the counts of the groups `emit_to` emits, forget their pairs and renumber the
    /// rest.
    fn drop_emitted(&mut self, emit_to: EmitTo) -> Vec<i64> {
        let counts = emit_to.take_needed(&mut self.counts);
        match emit_to {
            EmitTo::All => self.seen.clear(),
            EmitTo::First(n) => self.shift(n),
        }
        counts
    }

    /// The state column: one list of values per group (DataFusion's count-distinct state).
    fn list(&self, offsets: Vec<i32>, values: ArrayRef) -> Result<ArrayRef> {
        Ok(Arc::new(ListArray::try_new(
            Arc::new(Field::new_list_field(self.data_type.clone(), true)),
            OffsetBuffer::new(offsets.into()),
            values,
            None,
        )?))
    }

    /// Drop the first `n` groups' pairs and renumber the rest.
    fn shift(&mut self, n: usize) {
        let seen = std::mem::take(&mut self.seen);
        self.seen = seen
            .into_iter()
            .filter(|p| (p >> 32) as usize >= n)
            .map(|p| p - ((n as u64) << 32))
            .collect();
    }
}

fn pack(group: usize, id: u32) -> u64 {
    (group as u64) << 32 | id as u64
}

impl GroupsAccumulator for DistinctStrings {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.check_groups(total_num_groups)?;
        self.ids_of(values[0].as_ref())?;
        let row_ids = std::mem::take(&mut self.row_ids);
        for (row, (&g, &id)) in group_indices.iter().zip(&row_ids).enumerate() {
            let keep = opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
            if id != NONE && keep {
                self.add(g, id);
            }
        }
        self.row_ids = row_ids;
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(Arc::new(Int64Array::from(self.drop_emitted(emit_to))))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let n = match emit_to {
            EmitTo::All => self.counts.len(),
            EmitTo::First(n) => n,
        };
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0i32);
        for c in &self.counts[..n] {
            let next = offsets[offsets.len() - 1] as i64 + c;
            offsets.push(i32::try_from(next).map_err(|_| {
                datafusion::error::DataFusionError::ResourcesExhausted(
                    "count(DISTINCT): state over 2 billion values".into(),
                )
            })?);
        }
        // Place each emitted pair's id at its group's next slot.
        let mut slots = vec![NONE; offsets[n] as usize];
        let mut cursor: Vec<usize> = offsets[..n].iter().map(|o| *o as usize).collect();
        for p in &self.seen {
            let g = (p >> 32) as usize;
            if g < n {
                slots[cursor[g]] = *p as u32;
                cursor[g] += 1;
            }
        }
        let mut b = StringBuilder::with_capacity(slots.len(), 0);
        for id in slots {
            let v = self.values.value(id);
            b.append_value(std::str::from_utf8(v).map_err(|e| {
                datafusion::error::DataFusionError::Internal(format!("count(DISTINCT): {e}"))
            })?);
        }
        let values = arrow::compute::cast(&b.finish(), &self.data_type)?;
        let list = self.list(offsets, values)?;
        self.drop_emitted(emit_to);
        Ok(vec![list])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.check_groups(total_num_groups)?;
        let list = values[0].as_list::<i32>();
        let offsets = list.value_offsets();
        // Only the listed slice of the values array is ours.
        let start = offsets[0] as usize;
        let end = offsets[offsets.len() - 1] as usize;
        self.ids_of(list.values().slice(start, end - start).as_ref())?;
        let row_ids = std::mem::take(&mut self.row_ids);
        for (row, &g) in group_indices.iter().enumerate() {
            if list.is_null(row) {
                continue;
            }
            let (a, b) = (
                offsets[row] as usize - start,
                offsets[row + 1] as usize - start,
            );
            for &id in &row_ids[a..b] {
                if id != NONE {
                    self.add(g, id);
                }
            }
        }
        self.row_ids = row_ids;
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // One list per row: its value, or none when NULL or filtered out.
        let v = &values[0];
        let mut offsets = Vec::with_capacity(v.len() + 1);
        let mut keep = Vec::with_capacity(v.len());
        offsets.push(0i32);
        for row in 0..v.len() {
            let k = v.is_valid(row) && opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
            if k {
                keep.push(row as u32);
            }
            offsets.push(keep.len() as i32);
        }
        let items = arrow::compute::take(v, &arrow::array::UInt32Array::from(keep), None)?;
        let items = arrow::compute::cast(&items, &self.data_type)?;
        Ok(vec![self.list(offsets, items)?])
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.values.size()
            + self.seen.capacity() * 9
            + self.counts.capacity() * 8
            + self.row_ids.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{LargeStringArray, StringArray, StringViewArray};
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn counts(acc: &mut DistinctStrings) -> Vec<i64> {
        let a = acc.evaluate(EmitTo::All).unwrap();
        a.as_primitive::<arrow::datatypes::Int64Type>()
            .values()
            .to_vec()
    }

    /// What a per-group set says.
    fn expected(rows: &[(usize, Option<String>)], groups: usize) -> Vec<i64> {
        let mut sets: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
        for (g, v) in rows {
            if let Some(v) = v {
                sets.entry(*g).or_default().insert(v);
            }
        }
        (0..groups)
            .map(|g| sets.get(&g).map_or(0, |s| s.len() as i64))
            .collect()
    }

    fn array(t: &DataType, vals: &[Option<String>]) -> ArrayRef {
        match t {
            DataType::Utf8View => Arc::new(StringViewArray::from_iter(vals.iter().cloned())),
            DataType::LargeUtf8 => Arc::new(LargeStringArray::from_iter(vals.iter().cloned())),
            DataType::Dictionary(_, _) => {
                let plain = StringArray::from_iter(vals.iter().cloned());
                arrow::compute::cast(&plain, t).unwrap()
            }
            _ => Arc::new(StringArray::from_iter(vals.iter().cloned())),
        }
    }

    fn value() -> impl Strategy<Value = Option<String>> {
        // Few distinct values, short and long (views inline up to 12 bytes).
        prop_oneof![
            1 => Just(None),
            6 => "[ab]{0,3}".prop_map(Some),
            3 => "[ab]{10,14}".prop_map(Some),
        ]
    }

    proptest! {
        /// Counts equal per-group sets, whatever the batching, type and partial/final split.
        #[test]
        fn counts_match_sets(
            rows in proptest::collection::vec((0usize..4, value()), 0..200),
            cut in 0usize..200,
            ty in prop_oneof![
                Just(DataType::Utf8View),
                Just(DataType::Utf8),
                Just(DataType::LargeUtf8),
                Just(crate::engine::dict_scan::dictionary_type()),
            ],
        ) {
            let groups = 4;
            let cut = cut.min(rows.len());
            // Two partial accumulators over the two halves, merged by a final one.
            let mut finals = DistinctStrings::new(state_type(&ty));
            for part in [&rows[..cut], &rows[cut..]] {
                let mut acc = DistinctStrings::new(state_type(&ty));
                let vals: Vec<_> = part.iter().map(|r| r.1.clone()).collect();
                let gs: Vec<usize> = part.iter().map(|r| r.0).collect();
                acc.update_batch(&[array(&ty, &vals)], &gs, None, groups).unwrap();
                let state = acc.state(EmitTo::All).unwrap();
                finals.merge_batch(&state, &[0, 1, 2, 3], groups).unwrap();
            }
            prop_assert_eq!(counts(&mut finals), expected(&rows, groups));

            let mut one = DistinctStrings::new(state_type(&ty));
            let vals: Vec<_> = rows.iter().map(|r| r.1.clone()).collect();
            let gs: Vec<usize> = rows.iter().map(|r| r.0).collect();
            one.update_batch(&[array(&ty, &vals)], &gs, None, groups).unwrap();
            prop_assert_eq!(counts(&mut one), expected(&rows, groups));
        }
    }

    proptest! {
        /// Batches whose views point into one shared buffer, as Parquet dictionary pages
        /// give: ids remembered from one batch serve the next.
        #[test]
        fn shared_buffers_count_like_sets(
            dict in proptest::collection::vec(value(), 1..30),
            batches in proptest::collection::vec(
                proptest::collection::vec((0usize..3, 0usize..1000), 0..50), 1..8),
        ) {
            let dict_array = StringViewArray::from_iter(dict.iter().cloned());
            let mut acc = DistinctStrings::new(DataType::Utf8View);
            // The same rows as dictionary arrays over one values array, a new array object
            // each batch as the Parquet reader gives them.
            let shared: ArrayRef = Arc::new(StringArray::from_iter(dict.iter().cloned()));
            let mut dict_acc = DistinctStrings::new(DataType::Utf8);
            let mut all = Vec::new();
            for b in &batches {
                let idx: Vec<u32> = b.iter().map(|(_, i)| (i % dict.len()) as u32).collect();
                let gs: Vec<usize> = b.iter().map(|(g, _)| *g).collect();
                let a = arrow::compute::take(&dict_array, &arrow::array::UInt32Array::from(idx.clone()), None).unwrap();
                acc.update_batch(&[a], &gs, None, 3).unwrap();
                let keys = arrow::array::Int32Array::from_iter_values(idx.iter().map(|&i| i as i32));
                let values = arrow::array::make_array(shared.to_data());
                let d = arrow::array::DictionaryArray::<arrow::datatypes::Int32Type>::try_new(keys, values).unwrap();
                dict_acc.update_batch(&[Arc::new(d)], &gs, None, 3).unwrap();
                all.extend(gs.into_iter().zip(idx.into_iter().map(|i| dict[i as usize].clone())));
            }
            prop_assert_eq!(counts(&mut acc), expected(&all, 3));
            prop_assert_eq!(counts(&mut dict_acc), expected(&all, 3));
            prop_assert!(dict_acc.values.dictionaries_remembered() <= 1);
        }
    }

    #[test]
    fn filter_and_emit_first_keep_the_rest() {
        let t = DataType::Utf8View;
        let mut acc = DistinctStrings::new(t.clone());
        let vals = ["x", "y", "x", "a-long-value-here", "a-long-value-here", "z"]
            .map(|s| Some(s.to_string()));
        let filter = BooleanArray::from(vec![
            Some(true),
            Some(true),
            Some(true),
            Some(true),
            None,
            Some(false),
        ]);
        acc.update_batch(&[array(&t, &vals)], &[0, 0, 1, 1, 2, 2], Some(&filter), 3)
            .unwrap();
        let first = acc.evaluate(EmitTo::First(1)).unwrap();
        assert_eq!(
            first.as_primitive::<arrow::datatypes::Int64Type>().values(),
            &[2]
        );
        // Group 1 is now group 0: one more of its values, one repeated.
        let more = ["b", "x"].map(|s| Some(s.to_string()));
        acc.update_batch(&[array(&t, &more)], &[0, 0], None, 2)
            .unwrap();
        assert_eq!(counts(&mut acc), vec![3, 0]);
    }

    #[test]
    fn rows_converted_to_state_merge_as_updates() {
        for t in [
            DataType::Utf8View,
            crate::engine::dict_scan::dictionary_type(),
        ] {
            let vals = ["u", "v", "u"].map(|s| Some(s.to_string()));
            let mut vals = vals.to_vec();
            vals.push(None);
            let acc = DistinctStrings::new(state_type(&t));
            let filter = BooleanArray::from(vec![true, true, false, true]);
            let state = acc
                .convert_to_state(&[array(&t, &vals)], Some(&filter))
                .unwrap();
            let mut fin = DistinctStrings::new(state_type(&t));
            fin.merge_batch(&state, &[0, 0, 1, 1], 2).unwrap();
            assert_eq!(counts(&mut fin), vec![2, 0], "{t}");
        }
    }

    #[test]
    fn sliced_state_lists_are_read_from_their_offsets() {
        let t = DataType::Utf8;
        let mut acc = DistinctStrings::new(t.clone());
        let vals = ["p", "q", "r"].map(|s| Some(s.to_string()));
        acc.update_batch(&[array(&t, &vals)], &[0, 1, 1], None, 2)
            .unwrap();
        let state = acc.state(EmitTo::All).unwrap();
        let sliced = state[0].slice(1, 1);
        let mut fin = DistinctStrings::new(t);
        fin.merge_batch(&[sliced], &[0], 1).unwrap();
        assert_eq!(counts(&mut fin), vec![2]);
    }
}
