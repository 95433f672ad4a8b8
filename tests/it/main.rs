//! seclake's integration tests: one binary (each links all of DataFusion), one module per area.

mod cloudtrail;
mod cloudtrail_props;
mod compact;
mod ingest;
mod json_props;
mod parser_props;
mod policies;
mod query;
mod rules;
mod s3;
mod s3server;
mod schedule;
mod util;
