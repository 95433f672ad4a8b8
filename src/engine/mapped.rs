//! Local Parquet reads through memory maps instead of `read` into fresh buffers.
//!
//! DataFusion fetches a file's column chunks with [`ObjectStore::get_ranges`](object_store::ObjectStore::get_ranges). The local
//! store answers each range with a newly allocated, zero-filled buffer that `read` then
//! fills: the memory is written twice and first-touch page faults are paid on every query
//! (perf on q06 of the benchmark suite: `memset` in `read_range`, the kernel's copy and page
//! faults, together a few percent of the CPU). Here the file is mapped once per call and each
//! range is a slice of the mapping, shared without a copy; the page cache's pages are the
//! buffer.
//!
//! Safety: a mapping is only sound while nobody truncates or rewrites the file. Lake files are
//! written under a temporary name and renamed into place by the commit protocol
//! ([`crate::lake::commit`]), and never modified afterwards; a file deleted meanwhile stays
//! readable through its mapping. [`super::listing::ListingCache::local`] serves its
//! `get_ranges` from here; every other call goes to [`LocalFileSystem`].

use std::ops::Range;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

/// `ranges` of the object at `location` in `fs`, read from a map of its file.
pub async fn get_ranges(
    fs: &LocalFileSystem,
    location: &Path,
    ranges: &[Range<u64>],
) -> object_store::Result<Vec<Bytes>> {
    let path = fs.path_to_filesystem(location)?;
    let ranges = ranges.to_vec();
    tokio::task::spawn_blocking(move || mapped_ranges(&path, &ranges))
        .await
        .map_err(|e| object_store::Error::Generic {
            store: "LocalFileSystem",
            source: e.into(),
        })?
}

/// `ranges` of the file at `path`, as slices of one read-only mapping of it.
fn mapped_ranges(
    path: &std::path::Path,
    ranges: &[Range<u64>],
) -> object_store::Result<Vec<Bytes>> {
    let err = |source: Box<dyn std::error::Error + Send + Sync>| object_store::Error::Generic {
        store: "LocalFileSystem",
        source,
    };
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => object_store::Error::NotFound {
            path: path.display().to_string(),
            source: e.into(),
        },
        _ => err(format!("open {}: {e}", path.display()).into()),
    })?;
    let len = file
        .metadata()
        .map_err(|e| err(format!("stat {}: {e}", path.display()).into()))?
        .len();
    if let Some(r) = ranges.iter().find(|r| r.start > r.end || r.end > len) {
        return Err(err(format!(
            "range {}..{} is outside {} ({len} bytes)",
            r.start,
            r.end,
            path.display()
        )
        .into()));
    }
    if len == 0 {
        // Nothing to map (and mapping zero bytes fails): every range is empty.
        return Ok(ranges.iter().map(|_| Bytes::new()).collect());
    }
    // SAFETY: see the module docs: the files read here are not modified while mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }
        .map_err(|e| err(format!("map {}: {e}", path.display()).into()))?;
    let all = Bytes::from_owner(map);
    Ok(ranges
        .iter()
        .map(|r| all.slice(r.start as usize..r.end as usize))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::listing::ListingCache;
    use object_store::ObjectStore;

    #[tokio::test]
    async fn ranges_are_the_files_bytes_and_bad_ranges_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.bin");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &data).unwrap();
        std::fs::write(dir.path().join("empty"), b"").unwrap();
        let store = ListingCache::local();
        let loc = Path::from_filesystem_path(&file).unwrap();
        let got = store
            .get_ranges(&loc, &[0..10, 4096..9000, 9990..10_000, 5..5])
            .await
            .unwrap();
        assert_eq!(got[0], data[0..10]);
        assert_eq!(got[1], data[4096..9000]);
        assert_eq!(got[2], data[9990..10_000]);
        assert!(got[3].is_empty());

        let err = store
            .get_ranges(&loc, &[0..1, 9000..10_001])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
        let empty = Path::from_filesystem_path(dir.path().join("empty")).unwrap();
        assert!(store.get_ranges(&empty, &[0..0, 0..0]).await.unwrap()[0].is_empty());
        let missing =
            Path::from_absolute_path(dir.path().canonicalize().unwrap().join("missing")).unwrap();
        assert!(matches!(
            store.get_ranges(&missing, &[0..1, 1..2]).await,
            Err(object_store::Error::NotFound { .. })
        ));
    }
}
