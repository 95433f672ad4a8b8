//! A listing cache in front of the store the query engine reads the lake through.
//!
//! DataFusion lists a table's files for every scan. Its own list-files cache lists a whole
//! table on a miss, even when the query's partition predicate names one folder
//! (`year=2020 AND month=5 AND day=12`); so it is turned off, and this cache sits at the store
//! instead: a scan lists only the prefix DataFusion asks for (the folders the predicate
//! allows), and a listing is reused by any later scan of the same prefix or one below it. On
//! S3 that makes a REPL session or a scheduler issue each LIST once.
//!
//! Invariant: a listing is only served while the lake has not changed since it was made. The
//! engine calls [`ListingCache::clear`] whenever the lake's version marker
//! ([`crate::lake::Lake::version`]) moves, which every commit does; committed files are
//! immutable, so everything else (Parquet footers) stays cached for the session.
//!
//! Over the local file system ([`ListingCache::local`]) column chunks are read from memory
//! maps ([`super::mapped`]).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

type Listings = Arc<Mutex<HashMap<String, Arc<Vec<ObjectMeta>>>>>;

/// A store whose recursive listings are remembered until [`ListingCache::clear`].
#[derive(Debug)]
pub struct ListingCache {
    inner: Arc<dyn ObjectStore>,
    /// `inner` when it is the local file system: ranged reads then come from memory maps.
    local: Option<Arc<LocalFileSystem>>,
    lists: Listings,
}

impl ListingCache {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        ListingCache {
            inner,
            local: None,
            lists: Arc::default(),
        }
    }

    /// Over the local file system (paths from `/`), with column chunks read from maps.
    pub fn local() -> Self {
        let fs = Arc::new(LocalFileSystem::new());
        ListingCache {
            inner: fs.clone(),
            local: Some(fs),
            lists: Arc::default(),
        }
    }

    /// Forget every listing.
    pub fn clear(&self) {
        self.lists.lock().expect("not poisoned").clear();
    }

    /// The objects under `prefix`, from a listing of it or of a folder above it.
    fn cached(&self, prefix: &str) -> Option<Vec<ObjectMeta>> {
        let lists = self.lists.lock().expect("not poisoned");
        if let Some(l) = lists.get(prefix) {
            return Some(l.as_ref().clone());
        }
        let (_, above) = lists
            .iter()
            .find(|(k, _)| k.is_empty() || prefix.starts_with(&format!("{k}/")))?;
        let under = format!("{prefix}/");
        Some(
            above
                .iter()
                .filter(|m| prefix.is_empty() || m.location.as_ref().starts_with(&under))
                .cloned()
                .collect(),
        )
    }
}

impl std::fmt::Display for ListingCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ListingCache({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for ListingCache {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        match &self.local {
            Some(fs) => super::mapped::get_ranges(fs, location, ranges).await,
            None => self.inner.get_ranges(location, ranges).await,
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let key = prefix.map(|p| p.as_ref().to_string()).unwrap_or_default();
        if let Some(hit) = self.cached(&key) {
            return futures::stream::iter(hit.into_iter().map(Ok)).boxed();
        }
        let lists = self.lists.clone();
        let listing = self.inner.list(prefix);
        futures::stream::once(async move {
            let all: Vec<ObjectMeta> = listing.try_collect().await?;
            lists
                .lock()
                .expect("not poisoned")
                .insert(key, Arc::new(all.clone()));
            Ok::<_, object_store::Error>(futures::stream::iter(all.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn a_listing_serves_later_listings_below_it_until_cleared() {
        let mem = Arc::new(InMemory::new());
        for k in [
            "t/year=2020/month=5/day=1/a",
            "t/year=2020/month=5/day=12/b",
            "u/c",
        ] {
            mem.put(&Path::from(k), Bytes::from_static(b"x").into())
                .await
                .unwrap();
        }
        let cache = ListingCache::new(mem.clone());
        let keys = |p: &'static str| {
            let cache = &cache;
            async move {
                let mut v: Vec<String> = cache
                    .list(Some(&Path::from(p)))
                    .map_ok(|m| m.location.to_string())
                    .try_collect()
                    .await
                    .unwrap();
                v.sort();
                v
            }
        };
        assert_eq!(keys("t").await.len(), 2);
        mem.put(
            &Path::from("t/year=2020/month=5/day=12/new"),
            Bytes::new().into(),
        )
        .await
        .unwrap();
        // Served from the listing of `t`: the new object is not seen, and `day=1` does not
        // match `day=12`.
        assert_eq!(
            keys("t/year=2020/month=5/day=12").await,
            ["t/year=2020/month=5/day=12/b"]
        );
        assert_eq!(keys("t/year=2020/month=5/day=1").await.len(), 1);
        cache.clear();
        assert_eq!(keys("t/year=2020/month=5/day=12").await.len(), 2);
    }
}
