//! The lake: an object store root holding Hive-partitioned Parquet tables and seclake's state.
//!
//! [`Lake`] owns the object store and the lake's location: a local folder or an
//! `s3://bucket/prefix` ([`s3`]). Everything stored goes through the key functions in
//! [`paths`]; tables are written by [`writer`] and made visible by the commit protocol in
//! [`commit`], under the locks of [`lock`]. Nothing above this module knows which kind of
//! store holds the lake.
//!
//! The writer encodes a table's columns with its own column writers where parquet-rs's
//! would spend most of an ingest's encoding time, each writing the column chunk parquet-rs
//! writes for the same rows (the tests compare files byte for byte): [`dict_column`] for
//! strings with a dictionary, [`int_column`] for numbers and times, [`delta_strings`] for
//! strings without a dictionary (ids), [`list_column`] for lists of strings; they share
//! [`chunk`] (page-by-page chunk assembly) and [`rle`] (the RLE/bit-packing hybrid).

pub mod chunk;
pub mod commit;
pub mod compact;
pub mod delta_strings;
pub mod dict_column;
pub mod int_column;
pub mod list_column;
pub mod lock;
pub mod member_dictionary;
pub mod paths;
pub mod rle;
pub mod s3;
pub mod writer;

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

use crate::error::{Error, Result};
use s3::{S3Url, Stores};

/// Databases seclake writes: folders directly under the lake root.
pub const LOGS_DB: &str = "panther_logs";
/// Events that matched a rule, one table per log type.
pub const RULE_MATCHES_DB: &str = "panther_rule_matches";
/// Lines that could not be parsed, one table per log type.
pub const QUARANTINE_DB: &str = "panther_quarantine";

/// An opened lake.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    url: Url,
    /// For S3 lakes: the bucket's URL (`s3://bucket`) and store, which query engines resolve
    /// the lake's URLs with.
    bucket: Option<(Url, Arc<dyn ObjectStore>)>,
    stores: Arc<Stores>,
}

impl Lake {
    /// Open the lake at `location` with default S3 settings: see [`Lake::open_with`].
    pub fn open(location: &str) -> Result<Self> {
        Self::open_with(location, Arc::new(Stores::new(Default::default())))
    }

    /// Open the lake at `location`: a local folder (created if needed) or
    /// `s3://bucket[/prefix]`, reached through `stores` (which also serve `s3://` sources).
    pub fn open_with(location: &str, stores: Arc<Stores>) -> Result<Self> {
        if let Some(url) = S3Url::parse(location) {
            let url = url?;
            let bucket_store = stores.bucket(&url.bucket)?;
            let prefix = url.key.trim_matches('/');
            let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                bucket_store.clone()
            } else {
                Arc::new(PrefixStore::new(bucket_store.clone(), prefix))
            };
            let parse = |u: String| {
                Url::parse(&u).map_err(|e| Error::invalid(format!("lake {location:?}: {e}")))
            };
            let root = if prefix.is_empty() {
                format!("s3://{}/", url.bucket)
            } else {
                format!("s3://{}/{prefix}/", url.bucket)
            };
            return Ok(Lake {
                store,
                url: parse(root)?,
                bucket: Some((parse(format!("s3://{}", url.bucket))?, bucket_store)),
                stores,
            });
        }
        if location.contains("://") {
            return Err(Error::invalid(format!(
                "lake {location:?}: a lake is a local folder or an s3:// location"
            )));
        }
        let path = std::path::Path::new(location);
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        let root = path.canonicalize().map_err(|e| Error::io(path, e))?;
        let store = LocalFileSystem::new_with_prefix(&root)?;
        let url = Url::from_directory_path(&root)
            .map_err(|_| Error::invalid(format!("lake path {} is not absolute", root.display())))?;
        Ok(Lake {
            store: Arc::new(store),
            url,
            bucket: None,
            stores,
        })
    }

    /// The object store holding the lake, with keys relative to the lake root.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// For an S3 lake, the bucket URL and store a query engine must register to read it.
    pub fn bucket_store(&self) -> Option<&(Url, Arc<dyn ObjectStore>)> {
        self.bucket.as_ref()
    }

    /// The S3 stores this lake was opened with, for `s3://` sources.
    pub fn stores(&self) -> &Arc<Stores> {
        &self.stores
    }

    /// The lake root as a URL ending in `/` (`file:///data/lake/`).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Local filesystem root, when the lake is local.
    pub fn local_root(&self) -> Option<std::path::PathBuf> {
        self.url.to_file_path().ok()
    }

    /// Write `bytes` at `key`, replacing what is there, atomically.
    pub async fn put(&self, key: &Path, bytes: impl Into<PutPayload>) -> Result<()> {
        self.store.put(key, bytes.into()).await?;
        Ok(())
    }

    /// Read the whole object at `key`, or `None` when it does not exist.
    pub async fn get_opt(&self, key: &Path) -> Result<Option<bytes::Bytes>> {
        match self.store.get(key).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The lake's version: changes whenever a commit makes files visible (`None` before the
    /// first commit).
    pub async fn version(&self) -> Result<Option<String>> {
        match self.store.head(&paths::version()).await {
            Ok(m) => Ok(Some(format!(
                "{}:{}:{}",
                m.e_tag.unwrap_or_default(),
                m.last_modified.timestamp_micros(),
                m.size
            ))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every object under `prefix`.
    pub async fn list(&self, prefix: &Path) -> Result<Vec<object_store::ObjectMeta>> {
        Ok(self.store.list(Some(prefix)).try_collect().await?)
    }

    /// Every object under `prefix` whose key sorts after `offset` (S3 starts the listing
    /// there instead of at the prefix).
    pub async fn list_after(
        &self,
        prefix: &Path,
        offset: &Path,
    ) -> Result<Vec<object_store::ObjectMeta>> {
        Ok(self
            .store
            .list_with_offset(Some(prefix), offset)
            .try_collect()
            .await?)
    }

    /// Delete every key in `keys` (in bulk on S3: 1000 keys a request); missing objects are
    /// not an error.
    pub async fn delete_all(&self, keys: Vec<Path>) -> Result<()> {
        use futures::StreamExt;
        let keys = futures::stream::iter(keys.into_iter().map(Ok)).boxed();
        let mut deleted = self.store.delete_stream(keys);
        while let Some(r) = deleted.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Delete `key`; a missing object is not an error.
    pub async fn delete_opt(&self, key: &Path) -> Result<()> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Databases and their tables, from listing the lake (names starting `_` or `.` skipped).
    pub async fn tables(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let dbs = self.store.list_with_delimiter(None).await?;
        for db in dbs.common_prefixes {
            let Some(db_name) = db.filename().map(str::to_string) else {
                continue;
            };
            if hidden(&db_name) {
                continue;
            }
            let tables = self.store.list_with_delimiter(Some(&db)).await?;
            for t in tables.common_prefixes {
                if let Some(name) = t.filename().filter(|n| !hidden(n)) {
                    out.push((db_name.clone(), name.to_string()));
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// A count from the environment variable `name` (how tests lower compaction thresholds), or
/// `default` when it is unset or not a number.
pub fn count_from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Names readers skip.
pub fn hidden(name: &str) -> bool {
    name.starts_with('_') || name.starts_with('.')
}

/// Size of one table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TableStats {
    pub partitions: usize,
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
}

impl Lake {
    /// A table's Parquet data files (names starting `_` or `.` anywhere in the key skipped, as
    /// readers skip them).
    pub async fn data_files(&self, db: &str, table: &str) -> Result<Vec<object_store::ObjectMeta>> {
        let mut files = self.list(&paths::table_dir(db, table)).await?;
        files.retain(|m| {
            let key = m.location.as_ref();
            key.ends_with(".parquet") && !key.split('/').any(hidden)
        });
        Ok(files)
    }

    /// Count a table's partitions, Parquet files, rows (from file footers) and bytes.
    pub async fn table_stats(&self, db: &str, table: &str) -> Result<TableStats> {
        let mut stats = TableStats::default();
        let mut partitions = std::collections::HashSet::new();
        for meta in self.data_files(db, table).await? {
            let key = meta.location.as_ref();
            if let Some((dir, _)) = key.rsplit_once('/') {
                partitions.insert(dir.to_string());
            }
            stats.rows += self.parquet_rows(&meta).await?;
            stats.files += 1;
            stats.bytes += meta.size;
        }
        stats.partitions = partitions.len();
        Ok(stats)
    }

    /// Rows of a Parquet file, from its footer (two ranged reads).
    pub async fn parquet_rows(&self, meta: &object_store::ObjectMeta) -> Result<u64> {
        let md = self.parquet_metadata(meta).await?;
        Ok(md.file_metadata().num_rows() as u64)
    }

    /// The footer of a Parquet file (two ranged reads).
    pub async fn parquet_metadata(
        &self,
        meta: &object_store::ObjectMeta,
    ) -> Result<parquet::file::metadata::ParquetMetaData> {
        use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};
        let size = meta.size;
        let bad = || Error::invalid(format!("{}: not a Parquet file", meta.location));
        if size < 12 {
            return Err(bad());
        }
        let tail = self.store.get_range(&meta.location, size - 8..size).await?;
        let tail: [u8; 8] = tail.as_ref().try_into().map_err(|_| bad())?;
        let len = FooterTail::try_new(&tail)?.metadata_length() as u64;
        if len + 8 > size {
            return Err(bad());
        }
        let buf = self
            .store
            .get_range(&meta.location, size - 8 - len..size - 8)
            .await?;
        Ok(ParquetMetaDataReader::decode_metadata(&buf)?)
    }
}
