//! Log-type schemas: `schemas/*.yml` → Arrow schemas.
//!
//! A log type is data. Its YAML file names the log type (`AWS.S3ServerAccess`), the parser
//! that reads it, the column holding the event time, and the columns with their types and the
//! indicator lists (`p_any_*`) they feed. From that, [`LogSchema::arrow_schema`] builds the
//! table's Arrow schema: the declared columns in order, then Panther's standard `p_` fields.
//!
//! Guarantees:
//! - Table names derive from log types by one rule ([`table_name`]): lower case, `.` → `_`.
//! - Column names are lower case; a schema with an upper-case or duplicate name is rejected.
//! - The shipped schemas are compiled into the binary ([`Registry::builtin`]), so an installed
//!   `seclake` works from any directory; a user folder can add or override log types.

mod types;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

use crate::error::{Error, Result};
pub use types::ColumnType;

/// The schemas that ship with seclake, compiled in.
const BUILTIN: &[(&str, &str)] = &[
    (
        "aws_s3serveraccess.yml",
        include_str!("../../schemas/aws_s3serveraccess.yml"),
    ),
    (
        "aws_cloudtrail.yml",
        include_str!("../../schemas/aws_cloudtrail.yml"),
    ),
];

/// Table name for a log type: lower case, `.` → `_` (`AWS.S3ServerAccess` → `aws_s3serveraccess`).
pub fn table_name(log_type: &str) -> String {
    log_type.to_ascii_lowercase().replace(['.', '-', ' '], "_")
}

/// The Arrow type of every timestamp seclake writes: microseconds, no zone, meaning UTC (as
/// Athena's `timestamp`), so SQL `TIMESTAMP '…'` literals compare without casts in every engine.
pub const TIMESTAMP: DataType = DataType::Timestamp(TimeUnit::Microsecond, None);

/// Which parser reads a log type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParserKind {
    /// Amazon S3 server access log lines.
    S3Access,
    /// JSON records: one object per line, or arrays in an envelope document (CloudTrail).
    Json,
}

/// A kind of indicator, feeding one `p_any_*` list column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Indicator {
    /// IPv4 or IPv6 address → `p_any_ip_addresses`.
    Ip,
    /// Domain name → `p_any_domain_names`.
    Domain,
    /// AWS ARN → `p_any_aws_arns` (and its account → `p_any_aws_account_ids`).
    AwsArn,
    /// 12-digit AWS account id → `p_any_aws_account_ids`.
    AwsAccountId,
    /// EC2 instance id → `p_any_aws_instance_ids`.
    AwsInstanceId,
    /// User name → `p_any_usernames`.
    Username,
}

impl Indicator {
    /// The `p_any_*` column this indicator feeds.
    pub fn column(self) -> &'static str {
        match self {
            Indicator::Ip => "p_any_ip_addresses",
            Indicator::Domain => "p_any_domain_names",
            Indicator::AwsArn => "p_any_aws_arns",
            Indicator::AwsAccountId => "p_any_aws_account_ids",
            Indicator::AwsInstanceId => "p_any_aws_instance_ids",
            Indicator::Username => "p_any_usernames",
        }
    }
}

/// One declared column.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// Lower-case column name.
    pub name: String,
    /// Column type, e.g. `string`, `bigint`, `timestamp`, `array<string>`.
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// What the column means.
    #[serde(default)]
    pub description: String,
    /// Indicator lists this column's values feed.
    #[serde(default)]
    pub indicators: Vec<Indicator>,
    /// Dictionary-encode in Parquet (default true); turn off for unique values such as ids.
    #[serde(default = "yes")]
    pub dictionary: bool,
    /// Write a Parquet bloom filter so equality lookups skip row groups.
    #[serde(default)]
    pub bloom_filter: bool,
    /// zstd-compress this column's pages (default true). Turn off for a dictionary column of
    /// few, evenly spread values that queries read often: its pages are bit-packed keys zstd
    /// barely shrinks, and reading an uncompressed chunk skips creating a zstd context and
    /// decompressing (see `lake::writer`).
    #[serde(default = "yes")]
    pub compressed: bool,
    /// JSON parsers: where the value is in the record, as dot-separated keys matched
    /// case-insensitively (`userIdentity.arn`); the column name when omitted.
    #[serde(default)]
    pub path: Option<String>,
    /// The fields of a `struct` column, each a column in its own right (nesting allowed).
    #[serde(default)]
    pub fields: Vec<Column>,
    /// How a `timestamp` column's text or number reads: `rfc3339` (the default), `unix`,
    /// `unix_ms`, `unix_us`, `unix_ns`, or a strftime pattern such as `%d/%b/%Y:%H:%M:%S %z`.
    #[serde(default)]
    pub time_format: Option<String>,
}

impl Column {
    /// The Arrow type of this column (a struct's fields included).
    pub fn data_type(&self) -> DataType {
        match &self.ty {
            ColumnType::Struct => DataType::Struct(self.fields.iter().map(Column::field).collect()),
            ty => ty.data_type(),
        }
    }

    /// A nullable Arrow field for this column.
    pub fn field(&self) -> Field {
        Field::new(&self.name, self.data_type(), true)
    }

    /// The JSON path of this column, relative to its parent.
    pub fn json_path(&self) -> &str {
        self.path.as_deref().unwrap_or(&self.name)
    }

    /// This column and every nested field, depth first.
    pub fn walk(&self) -> Box<dyn Iterator<Item = &Column> + '_> {
        Box::new(std::iter::once(self).chain(self.fields.iter().flat_map(Column::walk)))
    }
}

/// Options of the `json` parser.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonOptions {
    /// An envelope key: a document `{"<key>": [...]}` holds its records in that array (as
    /// CloudTrail's `Records`). Records may also come one JSON object per line.
    #[serde(default)]
    pub records_field: Option<String>,
    /// Keys a record must have for a file to be detected as this log type.
    #[serde(default)]
    pub detect: Vec<String>,
    /// A document with any of these top-level keys holds no records (e.g. a CloudTrail digest
    /// file): it is skipped with a note, not quarantined.
    #[serde(default)]
    pub skip_documents_with: Vec<String>,
    /// A `json` column that keeps every field the schema does not declare (nested ones under
    /// their dotted path), so nothing a log adds later is lost.
    #[serde(default)]
    pub unknown_fields: Option<String>,
}

fn yes() -> bool {
    true
}

/// A log type read from its YAML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSchema {
    /// Panther-style log type name, e.g. `AWS.S3ServerAccess`.
    pub log_type: String,
    /// What the logs are.
    #[serde(default)]
    pub description: String,
    /// Parser that reads raw input of this type.
    pub parser: ParserKind,
    /// Column holding the event time; copied into `p_event_time`.
    pub event_time: String,
    /// Options of the `json` parser.
    #[serde(default)]
    pub json: Option<JsonOptions>,
    /// zstd level for this log type's table instead of the writer's default (3). JSON logs
    /// whose text zstd's fastest level already squeezes as well (CloudTrail's blocks) set 1:
    /// fewer instructions and no larger files.
    #[serde(default)]
    pub zstd_level: Option<i32>,
    /// Declared columns, in order.
    pub columns: Vec<Column>,
}

/// Standard fields every row carries, after the declared columns.
pub const STANDARD_FIELDS: &[&str] = &[
    "p_log_type",
    "p_row_id",
    "p_event_time",
    "p_parse_time",
    "p_source_id",
    "p_source_label",
];

impl LogSchema {
    /// Parse and validate a schema from YAML text; `file` names it in errors.
    pub fn from_yaml(file: &str, text: &str) -> Result<Self> {
        let schema: LogSchema = serde_yaml::from_str(text).map_err(|source| Error::Yaml {
            file: file.to_string(),
            source,
        })?;
        schema.validate(file)?;
        Ok(schema)
    }

    fn validate(&self, file: &str) -> Result<()> {
        let err = |message: String| Error::Schema {
            file: file.to_string(),
            message,
        };
        for c in &self.columns {
            if c.name.starts_with("p_") || matches!(c.name.as_str(), "year" | "month" | "day") {
                return Err(err(format!(
                    "column name {:?} is reserved for standard or partition fields",
                    c.name
                )));
            }
        }
        validate_columns(&self.columns, "").map_err(err)?;
        if let Some(level) = self.zstd_level
            && !(1..=22).contains(&level)
        {
            return Err(err(format!("zstd_level {level} is not between 1 and 22")));
        }
        if let Some(j) = &self.json {
            if self.parser != ParserKind::Json {
                return Err(err("`json` options need `parser: json`".into()));
            }
            if let Some(u) = &j.unknown_fields {
                match self.column(u) {
                    Some(c) if c.ty == ColumnType::Json => {}
                    _ => {
                        return Err(err(format!(
                            "unknown_fields names {u:?}, which is not a json column"
                        )));
                    }
                }
            }
        }
        match self.column(&self.event_time) {
            Some(c) if c.ty == ColumnType::Timestamp => Ok(()),
            Some(c) => Err(err(format!(
                "event_time column {:?} has type {}, not timestamp",
                c.name, c.ty
            ))),
            None => Err(err(format!(
                "event_time names {:?}, which is not a column",
                self.event_time
            ))),
        }
    }

    /// The table this log type is stored in.
    pub fn table(&self) -> String {
        table_name(&self.log_type)
    }

    /// A declared column by name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The `p_any_*` columns this log type has, in a stable order.
    pub fn indicator_columns(&self) -> Vec<&'static str> {
        let mut kinds: Vec<Indicator> = self
            .columns
            .iter()
            .flat_map(Column::walk)
            .flat_map(|c| c.indicators.iter().copied())
            .collect();
        if kinds.contains(&Indicator::AwsArn) {
            kinds.push(Indicator::AwsAccountId);
        }
        kinds.sort();
        kinds.dedup();
        kinds.into_iter().map(Indicator::column).collect()
    }

    /// The table's Arrow schema: declared columns, standard fields, indicator lists.
    pub fn arrow_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self.columns.iter().map(Column::field).collect();
        fields.extend(standard_fields());
        fields.extend(self.indicator_columns().into_iter().map(indicator_field));
        Arc::new(Schema::new(fields))
    }

    /// Top-level string columns the writer dictionary-encodes (declared `string` columns
    /// without `dictionary: false`, and the standard fields that repeat one value), which
    /// queries read as Arrow dictionaries. JSON blobs are left out: their values rarely repeat.
    pub fn dictionary_columns(&self) -> Vec<String> {
        let mut columns = self.interned_columns();
        columns.extend(["p_log_type", "p_source_id", "p_source_label"].map(String::from));
        columns
    }

    /// The declared columns of [`LogSchema::dictionary_columns`]: the parsers intern their
    /// values as they read them and hand them over as `Dictionary(Int32, Utf8)`
    /// ([`LogSchema::batch_schema`]).
    pub fn interned_columns(&self) -> Vec<String> {
        self.columns
            .iter()
            .filter(|c| c.dictionary && c.ty == ColumnType::String)
            .map(|c| c.name.clone())
            .collect()
    }

    /// The schema of the batches the parsers make: [`LogSchema::arrow_schema`] with the
    /// interned columns as dictionaries, which the writer stores as the same plain strings.
    /// Rules evaluated on ingest are compiled against it.
    pub fn batch_schema(&self) -> SchemaRef {
        crate::engine::dict_scan::with_dictionaries(&self.arrow_schema(), &self.interned_columns())
    }
}

/// Check names, types and nesting of `columns` (at `at`, a dotted path for errors).
fn validate_columns(columns: &[Column], at: &str) -> std::result::Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for c in columns {
        let name = format!("{at}{}", c.name);
        if c.name.is_empty() || c.name != c.name.to_ascii_lowercase() {
            return Err(format!("column name {name:?} must be lower case"));
        }
        if !seen.insert(c.name.as_str()) {
            return Err(format!("column {name:?} is declared twice"));
        }
        match (&c.ty, c.fields.is_empty()) {
            (ColumnType::Struct, true) => {
                return Err(format!("struct column {name:?} needs `fields`"));
            }
            (ColumnType::Struct, false) => validate_columns(&c.fields, &format!("{name}."))?,
            (_, false) => return Err(format!("column {name:?} has `fields` but is not a struct")),
            _ => {}
        }
        // The writer sets these per Parquet leaf by the column's name: a struct's fields and
        // an array's items are leaves of other names, where they would do nothing.
        let storage = !c.dictionary || c.bloom_filter || !c.compressed;
        if storage && (!at.is_empty() || matches!(c.ty, ColumnType::Struct | ColumnType::Array(_)))
        {
            return Err(format!(
                "column {name:?}: `dictionary`, `bloom_filter` and `compressed` apply to \
                 top-level columns of scalar type only"
            ));
        }
        if let ColumnType::Array(inner) = &c.ty
            && matches!(**inner, ColumnType::Array(_) | ColumnType::Struct)
        {
            return Err(format!("column {name:?}: arrays hold scalar values only"));
        }
        if let Some(f) = &c.time_format {
            if c.ty != ColumnType::Timestamp {
                return Err(format!(
                    "column {name:?} has time_format but is not a timestamp"
                ));
            }
            crate::parse::time::TimeFormat::parse(f)
                .map_err(|e| format!("column {name:?}: {e}"))?;
        }
        if c.path
            .as_deref()
            .is_some_and(|p| p.is_empty() || p.split('.').any(str::is_empty))
        {
            return Err(format!("column {name:?}: path must be dot-separated keys"));
        }
    }
    Ok(())
}

/// The standard `p_` fields, in order.
pub fn standard_fields() -> Vec<Field> {
    vec![
        Field::new("p_log_type", DataType::Utf8, false),
        Field::new("p_row_id", DataType::Utf8, false),
        Field::new("p_event_time", TIMESTAMP, false),
        Field::new("p_parse_time", TIMESTAMP, false),
        Field::new("p_source_id", DataType::Utf8, false),
        Field::new("p_source_label", DataType::Utf8, false),
    ]
}

/// A `p_any_*` list column.
pub fn indicator_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        true,
    )
}

/// All known log types, by log type name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    by_type: BTreeMap<String, Arc<LogSchema>>,
}

impl Registry {
    /// The schemas compiled into the binary.
    pub fn builtin() -> Result<Self> {
        let mut reg = Registry::default();
        for (file, text) in BUILTIN {
            reg.insert(LogSchema::from_yaml(file, text)?);
        }
        Ok(reg)
    }

    /// Add every `*.yml`/`*.yaml` in `dir`; a file with an existing log type replaces it.
    pub fn load_dir(&mut self, dir: &Path) -> Result<()> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            self.insert(LogSchema::from_yaml(&path.display().to_string(), &text)?);
        }
        Ok(())
    }

    fn insert(&mut self, schema: LogSchema) {
        self.by_type
            .insert(schema.log_type.clone(), Arc::new(schema));
    }

    /// A log type by name, case-insensitively (`aws.s3serveraccess` works), by its table's name
    /// (`aws_s3serveraccess`), or spelled with other separators when that names one log type
    /// only (`AWS.S3.ServerAccess`, as the rule ids spell it).
    pub fn get(&self, log_type: &str) -> Result<Arc<LogSchema>> {
        let exact = self
            .by_type
            .values()
            .find(|s| s.log_type.eq_ignore_ascii_case(log_type) || s.table() == log_type);
        if let Some(s) = exact {
            return Ok(s.clone());
        }
        let letters = |name: &str| -> String {
            name.chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_lowercase())
                .collect()
        };
        let wanted = letters(log_type);
        let mut alike = self
            .by_type
            .values()
            .filter(|s| !wanted.is_empty() && letters(&s.log_type) == wanted);
        match (alike.next(), alike.next()) {
            (Some(s), None) => Ok(s.clone()),
            _ => Err(Error::invalid(format!(
                "unknown log type {log_type:?}; known: {}",
                self.names().join(", ")
            ))),
        }
    }

    /// Every log type name.
    pub fn names(&self) -> Vec<String> {
        self.by_type.keys().cloned().collect()
    }

    /// Every schema.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<LogSchema>> {
        self.by_type.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_follow_panther() {
        assert_eq!(table_name("AWS.S3ServerAccess"), "aws_s3serveraccess");
        assert_eq!(table_name("AWS.CloudTrail"), "aws_cloudtrail");
    }

    #[test]
    fn builtin_s3_schema_builds() {
        let reg = Registry::builtin().unwrap();
        let s = reg.get("AWS.S3ServerAccess").unwrap();
        let arrow = s.arrow_schema();
        assert_eq!(arrow.field(0).name(), "bucketowner");
        assert!(arrow.field_with_name("p_event_time").is_ok());
        assert_eq!(
            s.indicator_columns(),
            vec![
                "p_any_ip_addresses",
                "p_any_aws_arns",
                "p_any_aws_account_ids"
            ]
        );
        assert_eq!(reg.get("aws.s3serveraccess").unwrap().log_type, s.log_type);
        // As rule ids spell it, and as the table is named.
        assert_eq!(reg.get("AWS.S3.ServerAccess").unwrap().log_type, s.log_type);
        assert_eq!(reg.get("aws_s3serveraccess").unwrap().log_type, s.log_type);
        assert_eq!(
            reg.get("aws-cloud_trail").unwrap().log_type,
            "AWS.CloudTrail"
        );
        let err = reg.get("AWS.S3").unwrap_err().to_string();
        assert!(
            err.contains("unknown log type \"AWS.S3\"; known: "),
            "{err}"
        );
        assert!(reg.get("...").is_err());
    }

    #[test]
    fn rejects_bad_schemas() {
        let bad = "log_type: X\nparser: s3_access\nevent_time: t\ncolumns:\n  - {name: T, type: timestamp}\n";
        let e = LogSchema::from_yaml("x.yml", bad).unwrap_err().to_string();
        assert!(e.contains("x.yml") && e.contains("lower case"), "{e}");
        let bad = "log_type: X\nparser: s3_access\nevent_time: t\ncolumns:\n  - {name: t, type: string}\n";
        let e = LogSchema::from_yaml("x.yml", bad).unwrap_err().to_string();
        assert!(e.contains("not timestamp"), "{e}");
        let bad = "log_type: X\nparser: s3_access\nevent_time: t\ncolumns:\n  - {name: t, type: timestamp}\n  - {name: u, type: struct, fields: [{name: id, type: string, compressed: false}]}\n";
        let e = LogSchema::from_yaml("x.yml", bad).unwrap_err().to_string();
        assert!(e.contains("\"u.id\"") && e.contains("top-level"), "{e}");
        let bad = "log_type: X\nparser: s3_access\nevent_time: t\ncolumns:\n  - {name: t, type: timestamp}\n  - {name: l, type: array<string>, dictionary: false}\n";
        let e = LogSchema::from_yaml("x.yml", bad).unwrap_err().to_string();
        assert!(e.contains("\"l\"") && e.contains("scalar"), "{e}");
        let bad = "log_type: X\nparser: s3_access\nevent_time: t\nextra: 1\ncolumns: []\n";
        assert!(LogSchema::from_yaml("x.yml", bad).is_err());
        let bad = "log_type: X\nparser: s3_access\nevent_time: t\nzstd_level: 0\ncolumns:\n  - {name: t, type: timestamp}\n";
        let e = LogSchema::from_yaml("x.yml", bad).unwrap_err().to_string();
        assert!(e.contains("x.yml") && e.contains("zstd_level 0"), "{e}");
    }
}
