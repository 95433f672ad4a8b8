//! Column types as written in schema files, and their Arrow types.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field};
use serde::Deserialize;

use super::TIMESTAMP;

/// A column type: `string`, `int`, `bigint`, `double`, `boolean`, `timestamp`, `json`
/// (a JSON document kept whole as text, read with the `json_*` SQL functions), `struct`
/// (fields listed under the column's `fields`), or `array<T>` of a scalar type.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum ColumnType {
    String,
    Int,
    BigInt,
    Double,
    Boolean,
    Timestamp,
    Json,
    Struct,
    Array(Box<ColumnType>),
}

impl ColumnType {
    /// The Arrow type values of this column are stored as (a struct's fields are the
    /// column's: see `Column::data_type`; here an empty struct).
    pub fn data_type(&self) -> DataType {
        match self {
            ColumnType::Struct => DataType::Struct(Default::default()),
            ColumnType::String | ColumnType::Json => DataType::Utf8,
            ColumnType::Int => DataType::Int32,
            ColumnType::BigInt => DataType::Int64,
            ColumnType::Double => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Timestamp => TIMESTAMP,
            ColumnType::Array(inner) => {
                DataType::List(Arc::new(Field::new("item", inner.data_type(), true)))
            }
        }
    }

    /// A nullable Arrow field of this type.
    pub fn field(&self, name: &str) -> Field {
        Field::new(name, self.data_type(), true)
    }
}

impl FromStr for ColumnType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let lower = s.to_ascii_lowercase();
        if let Some(inner) = lower
            .strip_prefix("array<")
            .and_then(|r| r.strip_suffix('>'))
        {
            return Ok(ColumnType::Array(Box::new(inner.parse()?)));
        }
        Ok(match lower.as_str() {
            "string" | "varchar" => ColumnType::String,
            "int" | "integer" => ColumnType::Int,
            "bigint" | "long" => ColumnType::BigInt,
            "double" | "float" => ColumnType::Double,
            "boolean" | "bool" => ColumnType::Boolean,
            "timestamp" => ColumnType::Timestamp,
            "json" => ColumnType::Json,
            "struct" => ColumnType::Struct,
            _ => {
                return Err(format!(
                    "unknown column type {s:?} (expected string, int, bigint, double, boolean, \
                     timestamp, json, struct or array<…>)"
                ));
            }
        })
    }
}

impl TryFrom<String> for ColumnType {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::String => f.write_str("string"),
            ColumnType::Int => f.write_str("int"),
            ColumnType::BigInt => f.write_str("bigint"),
            ColumnType::Double => f.write_str("double"),
            ColumnType::Boolean => f.write_str("boolean"),
            ColumnType::Timestamp => f.write_str("timestamp"),
            ColumnType::Json => f.write_str("json"),
            ColumnType::Struct => f.write_str("struct"),
            ColumnType::Array(inner) => write!(f, "array<{inner}>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        for s in [
            "string",
            "int",
            "bigint",
            "double",
            "boolean",
            "timestamp",
            "json",
            "struct",
            "array<string>",
        ] {
            assert_eq!(s.parse::<ColumnType>().unwrap().to_string(), s);
        }
        assert!("map<string,int>".parse::<ColumnType>().is_err());
    }
}
