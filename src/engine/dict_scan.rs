//! Dictionary-encoded string columns read as Arrow dictionaries.
//!
//! The writer dictionary-encodes string columns with few distinct values (buckets, operations,
//! requesters, keys). Read as string views, every row becomes a 16-byte view gathered from the
//! page's dictionary, and every filter or grouping then works row by row. Read as
//! `Dictionary(Int32, Utf8)`, a row is the 4-byte index the page already holds, and the values
//! are decoded once per column chunk.
//!
//! The files declare plain strings (so every reader sees plain strings); the table declares
//! these columns as dictionaries, and [`read_dictionaries`] has the Parquet reader read them so,
//! file by file, by rewriting the Arrow schema a file's footer carries.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::FileScanConfigBuilder;
use datafusion::datasource::physical_plan::parquet::ParquetFileReaderFactory;
use datafusion::error::Result as DfResult;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::FutureExt;
use futures::future::BoxFuture;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::{ARROW_SCHEMA_META_KEY, encode_arrow_schema, parquet_to_arrow_schema};
use parquet::file::metadata::{FileMetaData, KeyValue, ParquetMetaData, ParquetMetaDataBuilder};

/// The type dictionary-encoded string columns are read as.
pub fn dictionary_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// `schema` with the string columns named in `columns` as dictionaries.
pub fn with_dictionaries(schema: &Schema, columns: &[String]) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let string = matches!(f.data_type(), DataType::Utf8 | DataType::Utf8View);
            if string && columns.contains(f.name()) {
                f.as_ref().clone().with_data_type(dictionary_type())
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Whether two arrays are the same values in the same memory. The Parquet reader gives each
/// batch of a column chunk a new dictionary array over the chunk's one set of values buffers,
/// so memos of a dictionary's values are keyed by those buffers; a memo holds the array it
/// remembers, so the buffers cannot be freed and their addresses reused meanwhile.
pub fn same_values(a: &ArrayRef, b: &ArrayRef) -> bool {
    if Arc::ptr_eq(a, b) {
        return true;
    }
    match (a.as_string_opt::<i32>(), b.as_string_opt::<i32>()) {
        (Some(a), Some(b)) => {
            a.len() == b.len()
                && a.offsets().inner().inner().as_ptr() == b.offsets().inner().inner().as_ptr()
                && a.values().as_ptr() == b.values().as_ptr()
                && a.nulls().map(|n| n.buffer().as_ptr()) == b.nulls().map(|n| n.buffer().as_ptr())
        }
        _ => a.to_data().ptr_eq(&b.to_data()),
    }
}

/// `v` padded with `fill` to a power of two entries (at least one), so that a dictionary key
/// masked with `len - 1` is always in bounds: keys of NULL rows may be anything.
pub fn padded<T: Copy>(mut v: Vec<T>, fill: T) -> Vec<T> {
    v.resize(v.len().max(1).next_power_of_two(), fill);
    v
}

/// Names of the columns `schema` reads as dictionaries.
fn dictionary_columns(schema: &Schema) -> Vec<String> {
    schema
        .fields()
        .iter()
        .filter(|f| f.data_type() == &dictionary_type())
        .map(|f| f.name().clone())
        .collect()
}

/// Has every Parquet scan in `plan` read `schema`'s dictionary columns as dictionaries.
pub fn read_dictionaries(
    plan: Arc<dyn ExecutionPlan>,
    schema: &Schema,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let columns = Arc::new(dictionary_columns(schema));
    if columns.is_empty() {
        return Ok(plan);
    }
    super::rewrite_parquet_scans(plan, |config, source| {
        let inner = source.parquet_file_reader_factory()?;
        let source = source
            .clone()
            .with_parquet_file_reader_factory(Arc::new(DictionaryHint {
                inner: Arc::clone(inner),
                columns: Arc::clone(&columns),
            }));
        Some(
            FileScanConfigBuilder::from(config.clone())
                .with_source(Arc::new(source))
                .build(),
        )
    })
}

/// Wraps a reader factory so that each file's footer declares `columns` as dictionaries.
#[derive(Debug)]
struct DictionaryHint {
    inner: Arc<dyn ParquetFileReaderFactory>,
    columns: Arc<Vec<String>>,
}

impl ParquetFileReaderFactory for DictionaryHint {
    fn create_reader(
        &self,
        partition_index: usize,
        partitioned_file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> DfResult<Box<dyn AsyncFileReader + Send>> {
        Ok(Box::new(HintedReader {
            inner: self.inner.create_reader(
                partition_index,
                partitioned_file,
                metadata_size_hint,
                metrics,
            )?,
            columns: Arc::clone(&self.columns),
        }))
    }
}

struct HintedReader {
    inner: Box<dyn AsyncFileReader + Send>,
    columns: Arc<Vec<String>>,
}

impl AsyncFileReader for HintedReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.inner.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        self.inner.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let metadata = self.inner.get_metadata(options).await?;
            HINTED.get(metadata, &self.columns)
        }
        .boxed()
    }
}

/// Hinted footers by the footer they were made from.
///
/// DataFusion's file-metadata cache hands out the same `Arc` for a file as long as it holds
/// that file's footer. Rewriting the footer's Arrow schema (decoding the schema stored in it,
/// encoding the hinted one) on every open was a few percent of a short query's CPU (perf on
/// the seed query: 2.4%); now a footer is rewritten the first time it is seen.
static HINTED: HintCache = HintCache {
    entries: std::sync::Mutex::new(None),
};

/// A footer, held weakly so that the metadata cache alone decides how long it lives (its
/// address stays taken while the weak reference does, so it identifies the footer), the
/// columns it was hinted with, and the hinted footer.
struct HintEntry {
    footer: std::sync::Weak<ParquetMetaData>,
    columns: Arc<Vec<String>>,
    hinted: Arc<ParquetMetaData>,
}

struct HintCache {
    entries: std::sync::Mutex<Option<std::collections::HashMap<usize, HintEntry>>>,
}

impl HintCache {
    /// Most footers remembered: past this, those no longer cached elsewhere are forgotten
    /// first, then all.
    const MAX: usize = 4096;

    fn get(
        &self,
        metadata: Arc<ParquetMetaData>,
        columns: &Arc<Vec<String>>,
    ) -> parquet::errors::Result<Arc<ParquetMetaData>> {
        let key = Arc::as_ptr(&metadata) as usize;
        let lock = || self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = lock().as_ref().and_then(|m| m.get(&key))
            && e.columns == *columns
        {
            return Ok(Arc::clone(&e.hinted));
        }
        let hinted = hint(Arc::clone(&metadata), columns)?;
        let mut entries = lock();
        let map = entries.get_or_insert_with(Default::default);
        if map.len() >= Self::MAX {
            map.retain(|_, e| e.footer.strong_count() > 0);
            if map.len() >= Self::MAX {
                map.clear();
            }
        }
        map.insert(
            key,
            HintEntry {
                footer: Arc::downgrade(&metadata),
                columns: Arc::clone(columns),
                hinted: Arc::clone(&hinted),
            },
        );
        Ok(hinted)
    }
}

/// `metadata` with its Arrow schema declaring the string columns named in `columns` as
/// dictionaries (unchanged when it has none).
fn hint(
    metadata: Arc<ParquetMetaData>,
    columns: &[String],
) -> parquet::errors::Result<Arc<ParquetMetaData>> {
    let file = metadata.file_metadata();
    let schema = parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())?;
    let hinted = with_dictionaries(&schema, columns);
    if hinted.fields() == schema.fields() {
        return Ok(metadata);
    }
    let mut kv: Vec<KeyValue> = file
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .filter(|k| k.key != ARROW_SCHEMA_META_KEY)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    kv.push(KeyValue::new(
        ARROW_SCHEMA_META_KEY.to_string(),
        encode_arrow_schema(&hinted),
    ));
    let file = FileMetaData::new(
        file.version(),
        file.num_rows(),
        file.created_by().map(str::to_string),
        Some(kv),
        file.schema_descr_ptr(),
        file.column_orders().cloned(),
    );
    Ok(Arc::new(
        ParquetMetaDataBuilder::new(file)
            .set_row_groups(metadata.row_groups().to_vec())
            .set_column_index(metadata.column_index().cloned())
            .set_offset_index(metadata.offset_index().cloned())
            .build(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
    use parquet::file::metadata::ParquetMetaDataReader;

    fn file() -> (Bytes, RecordBatch) {
        let batch = RecordBatch::try_from_iter([
            (
                "a",
                Arc::new(StringArray::from(vec![
                    Some("x"),
                    None,
                    Some("y"),
                    Some("x"),
                ])) as ArrayRef,
            ),
            (
                "b",
                Arc::new(StringArray::from(vec!["p", "q", "r", "s"])) as ArrayRef,
            ),
            (
                "c",
                Arc::new(Int32Array::from(vec![1, 2, 3, 4])) as ArrayRef,
            ),
        ])
        .unwrap();
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        (Bytes::from(out), batch)
    }

    /// The footer of the file in `bytes`, read anew.
    fn footer(bytes: &Bytes) -> Arc<ParquetMetaData> {
        Arc::new(
            ParquetMetaDataReader::new()
                .parse_and_finish(bytes)
                .unwrap(),
        )
    }

    fn read(bytes: &Bytes, metadata: Arc<ParquetMetaData>) -> RecordBatch {
        let md = ArrowReaderMetadata::try_new(metadata, Default::default()).unwrap();
        let mut r = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes.clone(), md)
            .build()
            .unwrap();
        r.next().unwrap().unwrap()
    }

    #[test]
    fn hinted_string_columns_read_as_dictionaries_with_the_same_values() {
        let (bytes, written) = file();
        let metadata = footer(&bytes);
        let columns = ["a", "c", "not-in-the-file"].map(String::from);
        let hinted = hint(Arc::clone(&metadata), &columns).unwrap();
        let batch = read(&bytes, hinted);
        let types: Vec<DataType> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        // Only the string column named is a dictionary; an integer column is left alone.
        assert_eq!(types, [dictionary_type(), DataType::Utf8, DataType::Int32]);
        let a = arrow::compute::cast(batch.column(0), &DataType::Utf8).unwrap();
        assert_eq!(&a, written.column(0));
        assert_eq!(batch.column(1), written.column(1));

        // No column to hint: the metadata is handed back as it was.
        let none = hint(Arc::clone(&metadata), &["c".to_string()]).unwrap();
        assert!(Arc::ptr_eq(&none, &metadata));
    }

    #[test]
    fn a_footer_is_hinted_once_per_set_of_columns() {
        let (bytes, written) = file();
        let metadata = footer(&bytes);
        let cache = HintCache {
            entries: std::sync::Mutex::new(None),
        };
        let a = Arc::new(vec!["a".to_string()]);
        let first = cache.get(Arc::clone(&metadata), &a).unwrap();
        let again = cache.get(Arc::clone(&metadata), &a).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        // Equal columns from another plan hit too; other columns are hinted anew.
        let equal = cache.get(Arc::clone(&metadata), &Arc::new(vec!["a".to_string()]));
        assert!(Arc::ptr_eq(&first, &equal.unwrap()));
        let b = Arc::new(vec!["b".to_string()]);
        let other = cache.get(Arc::clone(&metadata), &b).unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
        let batch = read(&bytes, other);
        assert_eq!(batch.column(0), written.column(0));
        assert_eq!(batch.schema().field(1).data_type(), &dictionary_type());
        // Another footer (the same file read again) is its own entry.
        let reread = footer(&bytes);
        let fresh = cache.get(reread, &a).unwrap();
        assert!(!Arc::ptr_eq(&first, &fresh));
        assert_eq!(read(&bytes, fresh).schema(), read(&bytes, first).schema());
    }

    #[test]
    fn same_values_means_same_buffers() {
        let a: ArrayRef = Arc::new(StringArray::from(vec!["x", "y"]));
        let rebuilt = arrow::array::make_array(a.to_data());
        let copy: ArrayRef = Arc::new(StringArray::from(vec!["x", "y"]));
        assert!(same_values(&a, &a));
        assert!(same_values(&a, &rebuilt));
        assert!(!same_values(&a, &copy));
        assert!(!same_values(&a, &a.slice(0, 1)));
        let ints: ArrayRef = Arc::new(Int32Array::from(vec![1, 2]));
        assert!(same_values(
            &ints,
            &arrow::array::make_array(ints.to_data())
        ));
        assert!(!same_values(
            &ints,
            &(Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef)
        ));
    }
}
