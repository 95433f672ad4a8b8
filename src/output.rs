//! Result printing, shared by `query`, the REPL and scheduled work: one [`Format`] enum and
//! printers that write to any `Write`, so they are testable.
//!
//! Formats: `table` (aligned text), `csv`, `tsv`, `json` (one array), `ndjson` (one object per
//! line). Lists and structs are written as JSON in `json`/`ndjson`, and as their text form in
//! `table`/`csv`/`tsv`. Timestamps are ISO 8601 without zone (they are UTC).

use std::fmt;
use std::io::Write;
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::error::{Error, Result};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Table,
    Csv,
    Tsv,
    Json,
    Ndjson,
}

impl Format {
    /// Every format, for help and completion.
    pub const ALL: [Format; 5] = [
        Format::Table,
        Format::Csv,
        Format::Tsv,
        Format::Json,
        Format::Ndjson,
    ];

    /// The format a file name's extension implies, if any.
    pub fn from_extension(path: &str) -> Option<Format> {
        let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
        Some(match ext.as_str() {
            "csv" => Format::Csv,
            "tsv" => Format::Tsv,
            "json" => Format::Json,
            "ndjson" | "jsonl" => Format::Ndjson,
            "txt" => Format::Table,
            _ => return None,
        })
    }
}

impl FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "table" => Format::Table,
            "csv" => Format::Csv,
            "tsv" => Format::Tsv,
            "json" => Format::Json,
            "ndjson" | "jsonl" => Format::Ndjson,
            _ => {
                return Err(Error::invalid(format!(
                    "unknown format {s:?}; use one of table, csv, tsv, json, ndjson"
                )));
            }
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Table => "table",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Json => "json",
            Format::Ndjson => "ndjson",
        })
    }
}

fn io(e: std::io::Error) -> Error {
    Error::io("output", e)
}

/// Writes batches in one format; call [`Printer::write`] per batch, then [`Printer::finish`].
/// `table` output buffers (it aligns columns); the others stream.
pub struct Printer<'w, W: Write> {
    format: Format,
    out: &'w mut W,
    schema: SchemaRef,
    started: bool,
    table: Vec<RecordBatch>,
    /// `table` cells longer than this many characters are cut (0: never).
    max_cell: usize,
}

/// Characters a `table` cell shows on a terminal before it is cut (`…`): a CloudTrail row's
/// `requestparameters` or `useridentity` would otherwise make every row many lines long.
pub const TERMINAL_MAX_CELL: usize = 60;

impl<'w, W: Write> Printer<'w, W> {
    pub fn new(format: Format, schema: SchemaRef, out: &'w mut W) -> Self {
        Printer {
            format,
            out,
            schema,
            started: false,
            table: Vec::new(),
            max_cell: 0,
        }
    }

    /// Cut `table` cells longer than `max` characters (0: never), ending them with `…`.
    pub fn max_cell(mut self, max: usize) -> Self {
        self.max_cell = max;
        self
    }

    /// Write one batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self.format {
            Format::Table => self.table.push(batch.clone()),
            Format::Csv | Format::Tsv => {
                let delim = if self.format == Format::Csv {
                    b','
                } else {
                    b'\t'
                };
                let flat = flatten_nested(batch)?;
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(!self.started)
                    .with_delimiter(delim)
                    .with_timestamp_format("%Y-%m-%dT%H:%M:%S%.f".into())
                    .build(&mut *self.out);
                w.write(&flat)?;
            }
            Format::Json => {
                for row in json_rows(batch)? {
                    let sep = if self.started { ",\n" } else { "[\n" };
                    self.out.write_all(sep.as_bytes()).map_err(io)?;
                    self.out.write_all(&row).map_err(io)?;
                    self.started = true;
                }
            }
            Format::Ndjson => {
                for row in json_rows(batch)? {
                    self.out.write_all(&row).map_err(io)?;
                    self.out.write_all(b"\n").map_err(io)?;
                }
            }
        }
        if batch.num_rows() > 0 || self.format != Format::Json {
            self.started = true;
        }
        Ok(())
    }

    /// Finish the output (closing brackets, the table itself).
    pub fn finish(mut self) -> Result<()> {
        match self.format {
            Format::Table => {
                let mut batches = std::mem::take(&mut self.table);
                if self.max_cell > 0 {
                    batches = batches
                        .iter()
                        .map(|b| clip_cells(b, self.max_cell))
                        .collect::<Result<_>>()?;
                }
                let text = if batches.iter().all(|b| b.num_rows() == 0) {
                    header_only(&self.schema)?
                } else {
                    arrow::util::pretty::pretty_format_batches(&batches)?.to_string()
                };
                writeln!(self.out, "{text}").map_err(io)?;
            }
            Format::Csv | Format::Tsv if !self.started => {
                let delim = if self.format == Format::Csv {
                    ","
                } else {
                    "\t"
                };
                let names: Vec<&str> = self
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                writeln!(self.out, "{}", names.join(delim)).map_err(io)?;
            }
            Format::Json => {
                let end = if self.started { "\n]\n" } else { "[]\n" };
                self.out.write_all(end.as_bytes()).map_err(io)?;
            }
            _ => {}
        }
        self.out.flush().map_err(io)
    }
}

/// Write all `batches` in `format`.
pub fn write_all(
    format: Format,
    schema: SchemaRef,
    batches: &[RecordBatch],
    out: &mut impl Write,
) -> Result<()> {
    let mut p = Printer::new(format, schema, out);
    for b in batches {
        p.write(b)?;
    }
    p.finish()
}

/// `batch` as text columns, each value cut to `max` (at least 1) characters (the last one
/// `…`) when longer; formatted as the table printer formats them, nulls kept.
fn clip_cells(batch: &RecordBatch, max: usize) -> Result<RecordBatch> {
    let options = FormatOptions::default();
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    let mut text = String::new();
    for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
        let fmt = ArrayFormatter::try_new(col.as_ref(), &options)?;
        let mut b = StringBuilder::with_capacity(col.len(), col.len() * 8);
        for i in 0..col.len() {
            if col.is_null(i) {
                b.append_null();
                continue;
            }
            text.clear();
            fmt.value(i)
                .write(&mut text)
                .map_err(|e| Error::invalid(format!("formatting {}: {e}", field.name())))?;
            // Where the `max`th character starts, when another follows it.
            let mut chars = text.char_indices();
            let cut = chars.nth(max - 1).filter(|_| chars.next().is_some());
            if let Some((cut, _)) = cut {
                text.truncate(cut);
                text.push('…');
            }
            b.append_value(&text);
        }
        fields.push(Field::new(field.name(), DataType::Utf8, true));
        columns.push(Arc::new(b.finish()));
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

fn header_only(schema: &Schema) -> Result<String> {
    let empty = RecordBatch::new_empty(Arc::new(schema.clone()));
    Ok(arrow::util::pretty::pretty_format_batches(&[empty])?.to_string())
}

/// Each row of `batch` as a JSON object (keys in column order; NULLs kept as `null`).
fn json_rows(batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::LineDelimited>(&mut buf);
        w.write(batch)?;
        w.finish()?;
    }
    Ok(buf
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// Replace list, struct and map columns by their text form (CSV cannot hold them).
pub fn flatten_nested(batch: &RecordBatch) -> Result<RecordBatch> {
    let nested = |t: &DataType| {
        matches!(
            t,
            DataType::List(_)
                | DataType::LargeList(_)
                | DataType::ListView(_)
                | DataType::FixedSizeList(_, _)
                | DataType::Struct(_)
                | DataType::Map(_, _)
        )
    };
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| nested(f.data_type()))
    {
        return Ok(batch.clone());
    }
    let opts = FormatOptions::default();
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if nested(f.data_type()) {
            let fmt = ArrayFormatter::try_new(c.as_ref(), &opts)?;
            let mut b = StringBuilder::new();
            for i in 0..c.len() {
                if c.is_null(i) {
                    b.append_null();
                } else {
                    b.append_value(fmt.value(i).to_string());
                }
            }
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            cols.push(Arc::new(b.finish()));
        } else {
            fields.push(f.as_ref().clone());
            cols.push(c.clone());
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};

    fn batch() -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            (
                "a",
                Arc::new(Int32Array::from(vec![Some(1), None])) as ArrayRef,
            ),
            (
                "b",
                Arc::new(StringArray::from(vec![Some("x,y"), Some("z")])) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    fn render(f: Format) -> String {
        let b = batch();
        let mut out = Vec::new();
        write_all(f, b.schema(), &[b], &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formats() {
        assert_eq!(render(Format::Csv), "a,b\n1,\"x,y\"\n,z\n");
        assert_eq!(render(Format::Tsv), "a\tb\n1\tx,y\n\tz\n");
        assert_eq!(
            render(Format::Ndjson),
            "{\"a\":1,\"b\":\"x,y\"}\n{\"a\":null,\"b\":\"z\"}\n"
        );
        assert_eq!(
            render(Format::Json),
            "[\n{\"a\":1,\"b\":\"x,y\"},\n{\"a\":null,\"b\":\"z\"}\n]\n"
        );
        assert!(render(Format::Table).contains("| 1 | x,y |"));
        assert_eq!("NDJSON".parse::<Format>().unwrap(), Format::Ndjson);
        assert!("xml".parse::<Format>().is_err());
        assert_eq!(Format::from_extension("out.jsonl"), Some(Format::Ndjson));
    }

    #[test]
    fn table_cells_are_cut_to_the_width_asked_and_no_more() {
        let long = "é".repeat(30) + "tail";
        let b = RecordBatch::try_from_iter(vec![
            (
                "n",
                Arc::new(Int32Array::from(vec![Some(123456), None])) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from(vec![Some(long.as_str()), Some("short")])) as ArrayRef,
            ),
        ])
        .unwrap();
        let table = |max: usize| {
            let mut out = Vec::new();
            let mut p = Printer::new(Format::Table, b.schema(), &mut out).max_cell(max);
            p.write(&b).unwrap();
            p.finish().unwrap();
            String::from_utf8(out).unwrap()
        };
        // Cut by characters, not bytes; a value of the width exactly, and nulls, stay as they are.
        let cut = table(10);
        assert!(
            cut.contains(&format!("| 123456 | {}… |", "é".repeat(9))),
            "{cut}"
        );
        assert!(cut.contains("|        | short      |"), "{cut}");
        assert_eq!(
            table(6).lines().nth(3).unwrap().split('|').nth(1),
            Some(" 123456 ")
        );
        // 0: never cut, the same text as without.
        let whole = table(0);
        assert!(whole.contains(&long), "{whole}");
        let mut plain = Vec::new();
        write_all(
            Format::Table,
            b.schema(),
            std::slice::from_ref(&b),
            &mut plain,
        )
        .unwrap();
        assert_eq!(whole, String::from_utf8(plain).unwrap());
        assert_eq!(table(100), whole, "nothing over the width");
    }

    #[test]
    fn empty_results_still_have_shape() {
        let b = batch();
        let empty = RecordBatch::new_empty(b.schema());
        let mut out = Vec::new();
        write_all(
            Format::Json,
            b.schema(),
            std::slice::from_ref(&empty),
            &mut out,
        )
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "[]\n");
        let mut out = Vec::new();
        write_all(Format::Csv, b.schema(), &[empty], &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a,b\n");
    }
}
