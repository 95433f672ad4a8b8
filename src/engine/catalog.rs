//! The catalog: the lake's folders as DataFusion schemas and tables.
//!
//! Each database folder (`panther_logs`, `panther_rule_matches`, `panther_cloudsecurity`,
//! `panther_quarantine`) is a [`LakeSchema`] whose tables are the folders under it, found by
//! listing the lake whenever it changed ([`super::Engine::refresh`]); `panther_logs` and
//! `panther_quarantine` also have a table, empty until data arrives, for every known log
//! type. A table is a DataFusion `ListingTable` over its Parquet files with `year`, `month`,
//! `day` as integer partition columns (so `month=5 AND day>=10` prunes folders) and
//! `p_event_time` declared as the files' sort order (so time ranges prune row groups and
//! ORDER BY time can skip sorting); scans also get the folder filters a `p_event_time` range
//! implies ([`super::prune`]).
//!
//! Table schemas come from the log-type schema where one matches, so no footer is read to plan;
//! other tables take the schema of their files.

use std::sync::{Arc, RwLock};

use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::physical_plan::parquet::transform_schema_to_view;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{SortExpr, col};

use super::dict_scan::with_dictionaries;
use super::prune::LakeTable;
use crate::lake::{LOGS_DB, Lake, QUARANTINE_DB, writer::quarantine_schema};
use crate::schema::Registry;

/// Partition columns of every table, in folder order.
pub const PARTITION_COLUMNS: [&str; 3] = ["year", "month", "day"];

/// A database: one folder of the lake.
#[derive(Debug)]
pub struct LakeSchema {
    db: String,
    lake: Lake,
    registry: Arc<Registry>,
    state: Arc<RwLock<Option<SessionState>>>,
    names: RwLock<Vec<String>>,
}

impl LakeSchema {
    pub fn new(
        db: &str,
        lake: Lake,
        registry: Arc<Registry>,
        state: Arc<RwLock<Option<SessionState>>>,
    ) -> Self {
        LakeSchema {
            db: db.into(),
            lake,
            registry,
            state,
            names: RwLock::new(Vec::new()),
        }
    }

    /// The database (lake folder) this schema lists.
    pub fn db(&self) -> &str {
        &self.db
    }

    /// Set the table names from a listing of the lake. In `panther_logs` and
    /// `panther_quarantine` every known log type has its table whether or not anything was
    /// written to it yet, so a query (a scheduled query set up before the first ingest, a
    /// check for quarantined lines after a clean ingest) answers no rows instead of failing to
    /// plan.
    pub fn set_tables(&self, mut names: Vec<String>) {
        if self.db == LOGS_DB || self.db == QUARANTINE_DB {
            names.extend(self.registry.iter().map(|s| s.table()));
            names.sort();
            names.dedup();
        }
        *self.names.write().expect("not poisoned") = names;
    }

    /// The schema a table is read with, when seclake knows it without reading a footer: the
    /// files' schema with the columns written with a dictionary as dictionaries
    /// ([`super::dict_scan`]) and other strings as views (`Utf8View`), as DataFusion reads
    /// inferred schemas. Either way no value is copied out of its page one by one, which made
    /// string-heavy scans several times slower.
    fn known_schema(&self, table: &str) -> Option<SchemaRef> {
        let (files, dictionaries) = match self.db.as_str() {
            LOGS_DB => {
                let s = self.registry.iter().find(|s| s.table() == table)?;
                (s.arrow_schema(), s.dictionary_columns())
            }
            QUARANTINE_DB => (quarantine_schema(), Vec::new()),
            _ => return None,
        };
        Some(with_dictionaries(
            &transform_schema_to_view(&files),
            &dictionaries,
        ))
    }

    async fn build(&self, table: &str) -> DfResult<Arc<dyn TableProvider>> {
        let url = self
            .lake
            .url()
            .join(&format!("{}/{}/", self.db, table))
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let table_url = ListingTableUrl::parse(url.as_str())?;
        let options = listing_options();
        let config = ListingTableConfig::new(table_url).with_listing_options(options);
        let not_ready = || DataFusionError::Internal("session not ready".into());
        // Files are immutable once committed: their statistics (what prunes whole files before
        // any is opened) are computed once per session, not at every query. The cache checks
        // each file's size and modification time before it answers.
        let cache = self
            .state
            .read()
            .expect("not poisoned")
            .as_ref()
            .ok_or_else(not_ready)?
            .runtime_env()
            .cache_manager
            .get_file_statistic_cache();
        let config = match self.known_schema(table) {
            Some(schema) => config.with_schema(schema),
            None => {
                // The whole session state is cloned only where a schema is inferred.
                let state = self
                    .state
                    .read()
                    .expect("not poisoned")
                    .clone()
                    .ok_or_else(not_ready)?;
                config.infer_schema(&state).await?
            }
        };
        Ok(Arc::new(LakeTable(
            ListingTable::try_new(config)?.with_cache(cache),
        )))
    }
}

/// How every lake table is read.
pub fn listing_options() -> ListingOptions {
    ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(
            PARTITION_COLUMNS
                .iter()
                .map(|c| (c.to_string(), DataType::Int32))
                .collect(),
        )
        .with_file_sort_order(vec![vec![SortExpr::new(col("p_event_time"), true, false)]])
}

#[async_trait]
impl SchemaProvider for LakeSchema {
    fn table_names(&self) -> Vec<String> {
        self.names.read().expect("not poisoned").clone()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let name = name.to_ascii_lowercase();
        if !self.table_exist(&name) {
            return Ok(None);
        }
        self.build(&name).await.map(Some)
    }

    fn table_exist(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.names.read().expect("not poisoned").contains(&name)
    }
}
