//! The query engine: a DataFusion session over the lake, with seclake's functions.
//!
//! [`Engine::open`] builds a session whose catalog maps the lake's folders to databases
//! ([`catalog`]): `panther_logs`, `panther_rule_matches`, `panther_cloudsecurity`,
//! `panther_quarantine`, and `panther_views` with `all_logs`, a view over the standard `p_`
//! fields of every log table, plus `alerts` (newest version of each alert) and
//! `alert_versions` (every stored version). `panther_logs` is the default database, so
//! `SELECT * FROM aws_s3serveraccess` works too.
//!
//! Freshness: [`Engine::refresh`] reads the lake's version marker (one small request) and,
//! when a commit has moved it, re-lists the lake's tables and drops the cached file listings
//! ([`listing`]); the REPL and the scheduler call it before every statement, so files another
//! process committed are seen by the next query, while an unchanged lake is never listed
//! twice in a session. Parquet footers and each file's statistics stay cached (files are
//! immutable once committed), and a local lake's column chunks are read as slices of a
//! memory map of the file ([`mapped`]).
//!
//! Read-only sessions ([`EngineOptions::read_only`]) refuse statements that write or register
//! anything (COPY, INSERT, CREATE …) before running them.
//!
//! Scans: a `p_event_time` range also limits the folders read, and files whose statistics rule
//! the filter out are dropped at planning, in one pass over all of them ([`prune`]); a `LIKE` over
//! a string column matches each distinct value once ([`like`]). `COUNT(DISTINCT)` of strings
//! per group numbers each distinct value once ([`count_distinct`]), and so does the partial
//! `GROUP BY` over string and integer columns, which then finds groups by those numbers
//! ([`group`]). All recognise values by where their string views point ([`view_memo`]).

pub mod catalog;
pub mod count_distinct;
pub mod dict_scan;
pub mod eager_and;
pub mod group;
pub mod like;
pub mod listing;
pub mod macros;
pub mod mapped;
pub mod or_in_list;
pub mod prune;
pub mod udf;
pub mod view_memo;

use std::sync::{Arc, RwLock};

use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::view::ViewTable;
use datafusion::execution::context::{SQLOptions, SessionState};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::schema::{Indicator, Registry, STANDARD_FIELDS};
use catalog::LakeSchema;

/// Databases backed by lake folders.
pub const LAKE_DATABASES: [&str; 4] = [
    "panther_logs",
    "panther_rule_matches",
    "panther_cloudsecurity",
    "panther_quarantine",
];

/// Database of views seclake defines.
pub const VIEWS_DB: &str = "panther_views";

/// Every `p_any_*` column `all_logs` exposes.
const ALL_INDICATORS: [Indicator; 6] = [
    Indicator::Ip,
    Indicator::Domain,
    Indicator::AwsArn,
    Indicator::AwsAccountId,
    Indicator::AwsInstanceId,
    Indicator::Username,
];

/// How a session behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineOptions {
    /// Refuse statements that write files or change the catalog.
    pub read_only: bool,
}

/// A query session over a lake.
pub struct Engine {
    ctx: SessionContext,
    lake: Lake,
    listing: Arc<listing::ListingCache>,
    /// The lake version the table list and listings were made at (`None`: not yet made).
    seen: tokio::sync::Mutex<Option<Option<String>>>,
    schemas: Vec<Arc<LakeSchema>>,
    views: Arc<MemorySchemaProvider>,
    opts: EngineOptions,
}

impl Engine {
    /// A session over `lake` with the tables it holds now.
    pub async fn open(lake: &Lake, registry: Arc<Registry>, opts: EngineOptions) -> Result<Self> {
        // DataFusion's own options can be set from the environment (`DATAFUSION_EXECUTION_
        // TARGET_PARTITIONS=4`, …); the settings below are seclake's and win.
        let config = SessionConfig::from_env()?
            .with_information_schema(true)
            .with_default_catalog_and_schema("datafusion", "panther_logs")
            // Filter pushdown into the Parquet decoder measured slower on the benchmark suite
            // (q08 485 -> 323 ms without it; again on 2026-12-02 with DataFusion 55: q01 43 ->
            // 67 ms, q08 80 -> 200 ms, q06 228 -> 280 ms with it), so predicates are applied
            // after decoding.
            .set_bool("datafusion.execution.parquet.pushdown_filters", false)
            .set_bool("datafusion.execution.parquet.reorder_filters", true);
        // On S3 a scan waits on requests more than on the CPU: more partitions keep more
        // requests in flight (bench/s3.sh: q03 400 -> 125 ms, q08 339 -> 136 ms with 8 on 2
        // cores; 16 gains nothing more).
        let config = if lake.bucket_store().is_some() {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            config.with_target_partitions((cores * 4).max(8))
        } else {
            config
        };
        // DataFusion's list-files cache lists whole tables; ours lists what the partition
        // predicate leaves (see `listing`).
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_cache_manager(
                datafusion::execution::cache::cache_manager::CacheManagerConfig::default()
                    .with_list_files_cache_limit(0),
            )
            .build_arc()?;
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(like::MemoLikeRule))
            .with_physical_optimizer_rule(Arc::new(or_in_list::OrInListRule))
            .with_physical_optimizer_rule(Arc::new(eager_and::EagerAndRule))
            .with_physical_optimizer_rule(Arc::new(group::MemoGroupRule))
            .with_physical_optimizer_rule(Arc::new(prune::PlannedStatisticsRule))
            .build();
        let mut ctx = SessionContext::new_with_state(state);
        let (base_url, listing) = match lake.bucket_store() {
            Some((url, store)) => (url.clone(), listing::ListingCache::new(store.clone())),
            None => (
                url::Url::parse("file:///").expect("valid"),
                listing::ListingCache::local(),
            ),
        };
        let listing = Arc::new(listing);
        ctx.register_object_store(&base_url, listing.clone());
        udf::register(&mut ctx)?;
        ctx.register_udaf(datafusion::logical_expr::AggregateUDF::new_from_impl(
            count_distinct::Count::new(),
        ));
        let state_slot = Arc::new(RwLock::new(None::<SessionState>));
        let catalog = ctx
            .catalog("datafusion")
            .ok_or_else(|| Error::invalid("default catalog missing"))?;
        let mut schemas = Vec::new();
        for db in LAKE_DATABASES {
            let s = Arc::new(LakeSchema::new(
                db,
                lake.clone(),
                registry.clone(),
                state_slot.clone(),
            ));
            catalog.register_schema(db, s.clone() as Arc<dyn SchemaProvider>)?;
            schemas.push(s);
        }
        let views = Arc::new(MemorySchemaProvider::new());
        catalog.register_schema(VIEWS_DB, views.clone() as Arc<dyn SchemaProvider>)?;
        *state_slot.write().expect("not poisoned") = Some(ctx.state());
        let engine = Engine {
            ctx,
            lake: lake.clone(),
            listing,
            seen: tokio::sync::Mutex::new(None),
            schemas,
            views,
            opts,
        };
        engine.refresh().await?;
        Ok(engine)
    }

    /// Where the lake is.
    pub fn lake_url(&self) -> &url::Url {
        self.lake.url()
    }

    /// The DataFusion session.
    pub fn ctx(&self) -> &SessionContext {
        &self.ctx
    }

    /// When the lake changed since the last look: re-list its tables, rebuild
    /// `panther_views`, forget cached file listings.
    pub async fn refresh(&self) -> Result<()> {
        let mut seen = self.seen.lock().await;
        let version = self.lake.version().await?;
        if seen.as_ref() == Some(&version) {
            return Ok(());
        }
        let tables = self.lake.tables().await?;
        let in_db = |db: &str| -> Vec<String> {
            tables
                .iter()
                .filter(|(d, _)| d == db)
                .map(|(_, t)| t.clone())
                .collect()
        };
        for s in &self.schemas {
            s.set_tables(in_db(s.db()));
        }
        self.listing.clear();
        let logs = self
            .schemas
            .iter()
            .find(|s| s.db() == crate::lake::LOGS_DB)
            .map(|s| s.table_names())
            .unwrap_or_default();
        self.rebuild_views(&logs).await?;
        *seen = Some(version);
        Ok(())
    }

    /// Register `panther_views.alert_versions` (every stored version) and
    /// `panther_views.alerts` (the newest version of each alert).
    async fn register_alerts(&self) -> Result<()> {
        use datafusion::datasource::listing::{ListingTable, ListingTableConfig, ListingTableUrl};
        let _ = self.views.deregister_table("alerts");
        let _ = self.views.deregister_table("alert_versions");
        let url = ListingTableUrl::parse(format!(
            "{}{}/",
            self.lake.url(),
            crate::lake::paths::alerts_dir()
        ))?;
        let options = datafusion::datasource::listing::ListingOptions::new(Arc::new(
            datafusion::datasource::file_format::parquet::ParquetFormat::default(),
        ))
        .with_file_extension(".parquet");
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(crate::detect::alert::alert_schema());
        self.views.register_table(
            "alert_versions".into(),
            Arc::new(ListingTable::try_new(config)?),
        )?;
        let sql = "SELECT alert_id, origin, detection_id, severity, title, dedup, event_count, \
                   threshold, raised, first_event_time, last_event_time, window_start, \
                   created_at, raised_at, updated_at, runbook, reference, version \
                   FROM (SELECT *, row_number() OVER (PARTITION BY alert_id ORDER BY version DESC) AS rn \
                   FROM panther_views.alert_versions) WHERE rn = 1";
        let plan = self.ctx.state().create_logical_plan(sql).await?;
        self.views.register_table(
            "alerts".into(),
            Arc::new(ViewTable::new(plan, Some(sql.to_string()))),
        )?;
        Ok(())
    }

    /// Rebuild `panther_views.all_logs` over the log tables `logs` (sorted), and the alert
    /// views.
    async fn rebuild_views(&self, logs: &[String]) -> Result<()> {
        self.register_alerts().await?;
        let _ = self.views.deregister_table("all_logs");
        if logs.is_empty() {
            return Ok(());
        }
        let mut parts = Vec::new();
        for t in logs {
            let provider = self.ctx.table_provider(format!("panther_logs.{t}")).await?;
            let schema = provider.schema();
            let mut cols: Vec<String> = STANDARD_FIELDS.iter().map(|c| c.to_string()).collect();
            for ind in ALL_INDICATORS {
                let c = ind.column();
                if schema.field_with_name(c).is_ok() {
                    cols.push(c.to_string());
                } else {
                    cols.push(format!("CAST(NULL AS VARCHAR[]) AS {c}"));
                }
            }
            cols.extend(["year", "month", "day"].map(String::from));
            parts.push(format!("SELECT {} FROM panther_logs.{t}", cols.join(", ")));
        }
        let sql = parts.join("\nUNION ALL\n");
        let plan = self.ctx.state().create_logical_plan(&sql).await?;
        let view = ViewTable::new(plan, Some(sql));
        self.views
            .register_table("all_logs".into(), Arc::new(view))?;
        Ok(())
    }

    /// Run one statement and print its result in `format`, streaming; at most `limit` rows
    /// are printed (0: all), `table` cells cut at `max_cell` characters (0: never). Returns
    /// the number of rows the statement produced.
    pub async fn print(
        &self,
        sql: &str,
        format: crate::output::Format,
        (limit, max_cell): (usize, usize),
        out: &mut impl std::io::Write,
    ) -> Result<usize> {
        use futures::StreamExt;
        let df = self.sql(sql).await?;
        let schema = df.schema().inner().clone();
        let mut stream = df.execute_stream().await?;
        let mut printer = crate::output::Printer::new(format, schema, out).max_cell(max_cell);
        let mut rows = 0usize;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let n = batch.num_rows();
            if limit == 0 {
                printer.write(&batch)?;
            } else if rows < limit {
                printer.write(&batch.slice(0, n.min(limit - rows)))?;
            }
            rows += n;
        }
        printer.finish()?;
        Ok(rows)
    }

    /// Plan one SQL statement, refusing writes in a read-only session.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        let options = if self.opts.read_only {
            SQLOptions::new()
                .with_allow_ddl(false)
                .with_allow_dml(false)
        } else {
            SQLOptions::new()
        };
        let sql = macros::expand(sql, chrono::Utc::now())?;
        match self.ctx.sql_with_options(&sql, options).await {
            Ok(df) => Ok(df),
            Err(e) => Err(match self.missing_table(&e) {
                Some(message) => Error::invalid(message),
                None => read_only_message(short_fields(e), self.opts.read_only),
            }),
        }
    }

    /// For a query naming a table the lake does not have: the error, with the tables of its
    /// database (or the databases, when that is not one either).
    fn missing_table(&self, e: &datafusion::error::DataFusionError) -> Option<String> {
        let root = e.find_root().to_string();
        let name = root.split_once("table '")?.1.split_once("' not found")?.0;
        let name = name.strip_prefix("datafusion.").unwrap_or(name);
        let catalog = self.ctx.catalog("datafusion")?;
        let see = "`seclake tables` lists every table";
        let db = name.rsplit_once('.').map_or("", |(db, _)| db);
        Some(match catalog.schema(db) {
            Some(schema) => {
                let mut tables = schema.table_names();
                tables.sort();
                format!(
                    "table {name} not found; {db} has {} ({see})",
                    tables.join(", ")
                )
            }
            None => {
                let mut dbs = catalog.schema_names();
                dbs.retain(|d| d != "information_schema");
                dbs.sort();
                format!(
                    "table {name} not found: no database {db:?}; the databases are {} ({see})",
                    dbs.join(", ")
                )
            }
        })
    }
}

/// A query naming a column its table does not have: DataFusion lists the valid columns each
/// with its table's full name (`panther_logs.aws_s3serveraccess.bucketowner`, forty times
/// over); when they all belong to one table they are listed by their names alone.
fn short_fields(e: datafusion::error::DataFusionError) -> datafusion::error::DataFusionError {
    use datafusion::common::{Column, SchemaError};
    use datafusion::error::DataFusionError;
    let DataFusionError::SchemaError(inner, _) = e.find_root() else {
        return e;
    };
    let SchemaError::FieldNotFound {
        field,
        valid_fields,
    } = inner.as_ref()
    else {
        return e;
    };
    if valid_fields.is_empty()
        || valid_fields
            .iter()
            .any(|c| c.relation != valid_fields[0].relation)
    {
        return e;
    }
    let short = SchemaError::FieldNotFound {
        field: field.clone(),
        valid_fields: valid_fields
            .iter()
            .map(|c| Column::new_unqualified(c.name()))
            .collect(),
    };
    DataFusionError::SchemaError(Box::new(short), Box::new(None))
}

fn read_only_message(e: datafusion::error::DataFusionError, read_only: bool) -> Error {
    let text = e.to_string();
    if read_only && (text.contains("DDL not supported") || text.contains("DML not supported")) {
        return Error::invalid(format!(
            "read-only session: statements that write files or change tables are not allowed ({})",
            text.trim_start_matches("Error during planning: ")
        ));
    }
    Error::DataFusion(e)
}

/// `plan` with every filter's predicate rewritten bottom-up (the physical optimizer rules of
/// [`like`] and [`eager_and`] share this walk): `replace` gives the expression
/// to put in place of a node (given the filter's input schema), or `None` to keep it. Filters
/// whose predicate does not change are left as they are.
pub(crate) fn rewrite_filter_predicates(
    plan: Arc<dyn ExecutionPlan>,
    replace: impl Fn(
        &Arc<dyn PhysicalExpr>,
        &arrow::datatypes::Schema,
    ) -> datafusion::error::Result<Option<Arc<dyn PhysicalExpr>>>,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
    use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};

    plan.transform_up(|p| {
        let Some(filter) = p.downcast_ref::<FilterExec>() else {
            return Ok(Transformed::no(p));
        };
        let schema = filter.input().schema();
        let predicate = Arc::clone(filter.predicate()).transform_up(|e| {
            Ok(match replace(&e, &schema)? {
                Some(new) => Transformed::yes(new),
                None => Transformed::no(e),
            })
        })?;
        if !predicate.transformed {
            return Ok(Transformed::no(p));
        }
        let new = FilterExecBuilder::from(filter)
            .with_predicate(predicate.data)
            .build()?;
        Ok(Transformed::yes(Arc::new(new) as Arc<dyn ExecutionPlan>))
    })
    .data()
}

/// `plan` with every Parquet scan rebuilt from the configuration `rebuild` makes of its own
/// (and its source), or left as it is when `rebuild` gives `None` ([`dict_scan`] and
/// [`prune`] share this walk).
pub(crate) fn rewrite_parquet_scans(
    plan: Arc<dyn ExecutionPlan>,
    rebuild: impl Fn(
        &datafusion::datasource::physical_plan::FileScanConfig,
        &datafusion::datasource::physical_plan::ParquetSource,
    ) -> Option<datafusion::datasource::physical_plan::FileScanConfig>,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
    use datafusion::datasource::physical_plan::ParquetSource;
    use datafusion::datasource::source::DataSourceExec;

    plan.transform_up(|p| {
        let rebuilt = p
            .downcast_ref::<DataSourceExec>()
            .and_then(|ds| ds.downcast_to_file_source::<ParquetSource>())
            .and_then(|(config, source)| rebuild(config, source));
        Ok(match rebuilt {
            Some(config) => {
                Transformed::yes(DataSourceExec::from_data_source(config) as Arc<dyn ExecutionPlan>)
            }
            None => Transformed::no(p),
        })
    })
    .data()
}
