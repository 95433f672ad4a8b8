//! # seclake
//!
//! An embedded security data lake. seclake turns raw AWS logs (S3 server access logs,
//! CloudTrail) and custom JSON logs into
//! Hive-partitioned Parquet tables modelled on Panther's data lake
//! (`panther_logs.aws_s3serveraccess/year=/month=/day=`), which any Parquet reader can use,
//! runs detection rules on every ingested batch and scheduled queries on a cron, evaluates
//! posture policies over S3 bucket snapshots, and raises alerts through one pipeline.
//!
//! Modules:
//! - [`schema`]: log types as data (`schemas/*.yml`) → Arrow schemas;
//! - [`parse`]: one parser per log format (S3 access lines; JSON records driven by the
//!   schema, for CloudTrail and custom types), with standard `p_` fields and indicators;
//! - [`lake`]: the object store, key layout, partitioned writer, commit protocol and locks;
//! - [`ingest`]: sources → parse → detect → write, exactly once;
//! - [`detect`]: rules, the alert pipeline (dedup, thresholds, storage, destinations);
//! - [`config`]: the lake's `seclake.yml` (destinations, schema and rule folders);
//! - [`policy`]: resource snapshots and posture policies;
//! - [`cli`]: the `seclake` command line.

pub mod cli;
pub mod config;
pub mod detect;
pub mod engine;
pub mod error;
pub mod ingest;
pub mod lake;
pub mod output;
pub mod parse;
pub mod policy;
pub mod repl;
pub mod schema;

pub use error::{Error, Result};
