//! The crate's one error type.
//!
//! Every fallible function returns [`Result`]. Causes are kept as `source`s, never
//! stringified, so callers (and the CLI's error printer) can walk the chain. Variants carry the
//! file, line or field that a user needs to find the problem.

use std::path::PathBuf;

/// `Result` with the crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in seclake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a local file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A schema file is not valid.
    #[error("schema {file}: {message}")]
    Schema { file: String, message: String },

    /// A YAML file could not be read as the structure it must have.
    #[error("{file}: {source}")]
    Yaml {
        file: String,
        #[source]
        source: serde_yaml::Error,
    },

    /// A JSON document could not be read.
    #[error("{context}: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },

    /// A rule, scheduled query or policy is not valid.
    #[error("{id} ({file}): {message}")]
    Detection {
        file: String,
        id: String,
        message: String,
    },

    /// The user asked for something that cannot be done as asked.
    #[error("{0}")]
    Invalid(String),

    /// Another process holds a lake lock.
    #[error("lake is locked: {0}")]
    Locked(String),

    /// An object store operation failed.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),

    /// An Arrow operation failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    /// A Parquet read or write failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),

    /// Planning or running a query failed. Shows the root cause (DataFusion wraps errors in
    /// the optimizer rule or operator that met them).
    #[error("{}", .0.find_root())]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

impl Error {
    /// Build an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Build an [`Error::Invalid`] from anything printable.
    pub fn invalid(message: impl std::fmt::Display) -> Self {
        Error::Invalid(message.to_string())
    }
}
