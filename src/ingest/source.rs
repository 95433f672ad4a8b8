//! Inputs: expanding paths, folders, globs and `s3://` locations into sources, their
//! identity, and reading them.
//!
//! A source is a local file or an S3 object. Its identity (`info.id`, see [`SourceInfo`]) is
//! derived from where it lives and its version: for a file the canonical path, size and
//! modification time; for an object the bucket, key and ETag (from the listing, so an object
//! already ingested is skipped without being downloaded). A file rewritten in place, or an object
//! overwritten, gets a new id. gzip is recognised by its magic bytes, not its name.
//!
//! Objects are read whole when small (most log objects are), with the next few fetched while
//! one is parsed ([`Prefetch`]), and streamed when large, so memory stays bounded.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use crate::error::{Error, Result};
use crate::lake::s3::{S3Url, Stores};
use crate::parse::SourceInfo;

/// Bytes of decompressed input read to tell a source's log type and framing.
pub const HEAD_BYTES: usize = 64 << 10;
/// Objects up to this size are fetched whole (and prefetched); larger ones are streamed.
const WHOLE_OBJECT: u64 = 16 << 20;
/// Objects fetched ahead of the one being parsed.
const PREFETCH: usize = 8;
/// Concurrent requests when sniffing many objects.
const SNIFF_CONCURRENCY: usize = 16;

/// Where a source lives.
#[derive(Debug, Clone)]
pub enum Origin {
    File(PathBuf),
    Object {
        store: Arc<dyn ObjectStore>,
        key: object_store::path::Path,
    },
}

/// One input: a file or an object.
#[derive(Debug, Clone)]
pub struct Source {
    pub origin: Origin,
    pub size: u64,
    /// Last modification time, when known.
    pub modified: Option<chrono::DateTime<chrono::Utc>>,
    pub info: SourceInfo,
    /// The object's bytes as stored, when already fetched (a small object read to detect its
    /// log type is not fetched again).
    pub fetched: Option<Bytes>,
    /// For a local file that grew since an earlier ingest, or a copy of one (a rotated log):
    /// where its new lines start.
    pub resume: Option<Resume>,
}

/// Where reading a local file starts: after the whole lines an earlier ingest stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// Bytes already ingested (whole lines), of the text.
    pub offset: u64,
    /// Line ends among them: the first new line is line `lines + 1`.
    pub lines: u64,
    /// The file is gzip: `offset` counts decompressed bytes, skipped as the file is read.
    pub gzip: bool,
}

impl Source {
    /// Describe the file at `path`.
    pub fn local(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let canonical = path.canonicalize().map_err(|e| Error::io(path, e))?;
        let modified = meta.modified().ok();
        let mtime = modified
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let key = format!("file\0{}\0{}\0{}", canonical.display(), meta.len(), mtime);
        Ok(Source {
            origin: Origin::File(path.to_path_buf()),
            size: meta.len(),
            modified: modified.map(chrono::DateTime::from),
            info: SourceInfo {
                id: source_id(&key),
                label: canonical.display().to_string(),
            },
            fetched: None,
            resume: None,
        })
    }

    /// Describe an object of `bucket` from its listing.
    pub fn object(store: Arc<dyn ObjectStore>, bucket: &str, meta: ObjectMeta) -> Self {
        let version = match &meta.e_tag {
            Some(etag) => format!("etag\0{etag}"),
            None => format!("{}\0{}", meta.size, meta.last_modified.timestamp_micros()),
        };
        let identity = format!("s3\0{bucket}\0{}\0{version}", meta.location);
        Source {
            info: SourceInfo {
                id: source_id(&identity),
                label: format!("s3://{bucket}/{}", meta.location),
            },
            size: meta.size,
            modified: Some(meta.last_modified),
            origin: Origin::Object {
                store,
                key: meta.location,
            },
            fetched: None,
            resume: None,
        }
    }

    /// Continue this local file after the lines `mark` says an earlier ingest stored, when its
    /// text (decompressed, for gzip) still begins with them: whether it does.
    pub fn resume_after(&mut self, mark: &crate::lake::commit::TextMark) -> bool {
        let Origin::File(path) = &self.origin else {
            return false;
        };
        if mark.complete == 0 {
            return false;
        }
        let Ok((gzip, head, tail)) = text_ends(path, mark.complete) else {
            return false;
        };
        // A plain file is read up to its size when found (it may have grown since).
        let same = (gzip || mark.complete <= self.size)
            && crate::lake::commit::TextMark::fingerprint(&head, &tail, mark.complete)
                == mark.fingerprint;
        if same {
            self.resume = Some(Resume {
                offset: mark.complete,
                lines: mark.lines,
                gzip,
            });
        }
        same
    }

    /// [`crate::lake::commit::TextMark::first_line_key`] of a local file's text, to find the
    /// file it may be a copy of.
    pub fn first_line_key(&self) -> Option<String> {
        let Origin::File(path) = &self.origin else {
            return None;
        };
        let head = self
            .file_head(path, crate::lake::commit::TextMark::ENDS as usize)
            .ok()?;
        crate::lake::commit::TextMark::first_line_key(&head)
    }

    /// Bytes this ingest reads, as stored: from the resume point on (all of a gzip file).
    pub fn remaining(&self) -> u64 {
        match self.resume {
            Some(r) if !r.gzip => self.size - r.offset,
            _ => self.size,
        }
    }

    /// The bytes of a local file this ingest reads, as stored: those found at discovery (what
    /// the ledger records), from the resume point on.
    fn stored_range(&self) -> std::ops::Range<u64> {
        self.size - self.remaining()..self.size
    }

    /// The name errors and summaries use: the canonical path or the `s3://` URL.
    pub fn label(&self) -> &str {
        &self.info.label
    }

    /// An error reading this source.
    pub fn io_error(&self, e: std::io::Error) -> Error {
        Error::io(self.label(), e)
    }

    /// Read the whole source as stored (maybe gzip). Async: objects are fetched.
    pub async fn read_all(&self) -> Result<Bytes> {
        if let Some(b) = &self.fetched {
            return Ok(b.clone());
        }
        match &self.origin {
            Origin::File(path) => {
                let (path, range) = (path.clone(), self.stored_range());
                tokio::task::spawn_blocking(move || {
                    read_range(&path, range).map_err(|e| Error::io(&path, e))
                })
                .await
                .map_err(|e| Error::invalid(format!("reader panicked: {e}")))?
                .map(Bytes::from)
            }
            Origin::Object { store, key } => Ok(store.get(key).await?.bytes().await?),
        }
    }

    /// The first `max` bytes of a file's decompressed content, to tell the log type; of an
    /// object's, the first [`HEAD_BYTES`] whatever `max` (each read is a request). Small
    /// objects are fetched whole and kept in [`Source::fetched`] when `keep` allows.
    pub async fn sniff(&mut self, keep: bool, max: usize) -> Result<Vec<u8>> {
        let stored = match &self.origin {
            Origin::File(path) => return self.file_head(path, max),
            Origin::Object { .. } if self.fetched.is_some() => self.fetched.clone().expect("some"),
            Origin::Object { store, key } if self.size <= (1 << 20) => {
                let all = store.get(key).await?.bytes().await?;
                if keep {
                    self.fetched = Some(all.clone());
                }
                all
            }
            Origin::Object { store, key } => store.get_range(key, 0..256 << 10).await?,
        };
        if stored.len() <= HEAD_BYTES
            && let Some(head) = small_head(Ok(stored.to_vec()), HEAD_BYTES)
        {
            return Ok(head);
        }
        // A prefix of a gzip stream: keep what decompressed before the cut.
        let mut head = Vec::with_capacity(HEAD_BYTES);
        let mut r = gunzipping(std::io::Cursor::new(stored))
            .map_err(|e| self.io_error(e))?
            .take(HEAD_BYTES as u64);
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
                Err(_) if !head.is_empty() => break,
                Err(e) => return Err(self.io_error(e)),
            }
        }
        Ok(head)
    }
}

impl Source {
    /// The first `max` bytes of file `path`'s decompressed content (blocking).
    fn file_head(&self, path: &Path, max: usize) -> Result<Vec<u8>> {
        // A small file's whole head is inflated in one call; a few KiB of it (enough to tell
        // most files' type, `TypeDetector::settled`) are cheaper streamed.
        if self.size <= HEAD_BYTES as u64
            && max >= HEAD_BYTES
            && let Some(head) = small_head(std::fs::read(path), max)
        {
            return Ok(head);
        }
        let f = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut r = gunzipping(f).map_err(|e| Error::io(path, e))?;
        // Read into a buffer of the final size: `read_to_end` would grow it (a copy) to look
        // for more.
        let mut head = vec![0u8; max];
        let len = read_full(&mut r, &mut head).map_err(|e| self.io_error(e))?;
        head.truncate(len);
        Ok(head)
    }
}

/// Whether the file at `path` is gzip, and the first and the last
/// [`crate::lake::commit::TextMark::ENDS`] bytes (each all of it when shorter) of the first `len`
/// bytes of its text (decompressed, for gzip); an error when the text is shorter.
pub fn text_ends(path: &Path, len: u64) -> std::io::Result<(bool, Vec<u8>, Vec<u8>)> {
    use std::os::unix::fs::FileExt;
    let ends = crate::lake::commit::TextMark::ENDS.min(len);
    let file = File::open(path)?;
    let (mut head, mut tail) = (vec![0u8; ends as usize], vec![0u8; ends as usize]);
    if !file_is_gzip(&file)? {
        file.read_exact_at(&mut head, 0)?;
        file.read_exact_at(&mut tail, len - ends)?;
        return Ok((false, head, tail));
    }
    let mut text = MultiGzDecoder::new(BufReader::new(file));
    text.read_exact(&mut head)?;
    // Inflate up to the tail, then read it; when the two overlap, the tail starts in the head.
    let after_head = len - ends;
    let skip = after_head.saturating_sub(ends);
    let copied = std::io::copy(&mut (&mut text).take(skip), &mut std::io::sink())?;
    if copied < skip {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let fresh = (after_head - skip) as usize;
    let from_head = ends as usize - fresh;
    tail[..from_head].copy_from_slice(&head[ends as usize - from_head..]);
    text.read_exact(&mut tail[from_head..])?;
    Ok((true, head, tail))
}

/// Whether bytes start as gzip does (its magic bytes).
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Whether `file` starts as gzip does.
fn file_is_gzip(file: &File) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut magic = [0u8; 2];
    let n = file.read_at(&mut magic, 0)?;
    Ok(is_gzip(&magic[..n]))
}

/// Whether the file at `path` starts as gzip does.
pub fn is_gzip_file(path: &Path) -> std::io::Result<bool> {
    file_is_gzip(&File::open(path)?)
}

/// A reader of bytes `range` of the file at `path` (up to its end when it is shorter).
fn open_range(path: &Path, range: std::ops::Range<u64>) -> std::io::Result<std::io::Take<File>> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(range.start))?;
    Ok(f.take(range.end - range.start))
}

/// Bytes `range` of the file at `path`, or up to its end when it is shorter.
fn read_range(path: &Path, range: std::ops::Range<u64>) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    open_range(path, range)?.read_to_end(&mut v)?;
    Ok(v)
}

/// The first `max` bytes of a source of at most [`HEAD_BYTES`] as stored, from its bytes
/// inflated whole in one call (libdeflate): a streaming gunzip of a whole head cost more, on
/// many small CloudTrail deliveries, than parsing them. `None` when the bytes do not inflate
/// whole (cut short, damaged): a streaming read keeps what decompresses before the damage.
fn small_head(stored: std::io::Result<Vec<u8>>, max: usize) -> Option<Vec<u8>> {
    let mut text = stored.and_then(decompress).ok()?;
    text.truncate(max);
    Some(text)
}

/// `r`, gunzipped when it starts with gzip's magic bytes.
fn gunzipping(mut r: impl Read + Send + 'static) -> std::io::Result<Box<dyn Read + Send>> {
    let mut magic = [0u8; 2];
    let n = read_full(&mut r, &mut magic)?;
    let chained = std::io::Cursor::new(magic[..n].to_vec()).chain(r);
    Ok(if is_gzip(&magic[..n]) {
        Box::new(GzErrors(MultiGzDecoder::new(BufReader::with_capacity(
            1 << 20,
            chained,
        ))))
    } else {
        Box::new(chained)
    })
}

/// The bytes of a whole file as stored: gunzipped when they start with gzip's magic bytes.
///
/// A file of one gzip member whose trailer tells its size (a CloudTrail delivery) is inflated
/// in one call by libdeflate, about twice as fast as flate2's streaming inflate (measured on
/// the 100 files of `bench/cloudtrail.sh`: 145 vs 276 ms). Anything else (several members, a
/// size the trailer does not tell, corrupt data) goes through flate2, whose errors say what
/// is wrong.
pub fn decompress(data: Vec<u8>) -> std::io::Result<Vec<u8>> {
    if !is_gzip(&data) {
        return Ok(data);
    }
    // The trailer holds the (last member's) size mod 2^32: a good first guess.
    let hint = data.len().checked_sub(4).map_or(0, |at| {
        u32::from_le_bytes(data[at..].try_into().expect("4 bytes")) as usize
    });
    if let Some(out) = inflate_member(&data, hint) {
        return Ok(out);
    }
    let mut out = Vec::with_capacity(hint.clamp(data.len(), 1 << 30));
    MultiGzDecoder::new(&data[..])
        .read_to_end(&mut out)
        .map_err(gzip_error)?;
    Ok(out)
}

/// A gzip decoder whose errors say what a damaged stream means for the file.
struct GzErrors<R>(R);

impl<R: Read> Read for GzErrors<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf).map_err(gzip_error)
    }
}

/// A gzip decoder's error, explained when it is about the data (flate2: "corrupt deflate
/// stream", "incomplete deflate stream", "invalid gzip header", a checksum that does not
/// match, a header cut short): usually an upload cut short or a file still being written,
/// which the next run tries again. Errors of the reader under the decoder keep their words.
fn gzip_error(e: std::io::Error) -> std::io::Error {
    use std::io::ErrorKind::{InvalidData, InvalidInput, UnexpectedEof};
    match e.kind() {
        InvalidData | InvalidInput | UnexpectedEof => std::io::Error::new(
            e.kind(),
            format!(
                "damaged or cut-short gzip ({e}); nothing from this file was stored, and the \
                 next ingest tries it again"
            ),
        ),
        _ => e,
    }
}

/// `data` inflated, when it is exactly one gzip member of `size` bytes decompressed.
fn inflate_member(data: &[u8], size: usize) -> Option<Vec<u8>> {
    use libdeflate_sys::*;
    if size > 1 << 30 {
        return None;
    }
    let mut out: Vec<u8> = Vec::with_capacity(size);
    let (mut read, mut written) = (0usize, 0usize);
    // SAFETY: the decompressor is checked for null, used by this call only and freed after
    // it; the input is `data` with its length; the output is `out`'s `size` bytes of capacity,
    // of which libdeflate reports how many it wrote.
    let result = unsafe {
        let d = libdeflate_alloc_decompressor();
        if d.is_null() {
            return None;
        }
        let r = libdeflate_gzip_decompress_ex(
            d,
            data.as_ptr().cast(),
            data.len(),
            out.as_mut_ptr().cast(),
            size,
            &mut read,
            &mut written,
        );
        libdeflate_free_decompressor(d);
        r
    };
    // One member, all of the input, as many bytes as the trailer says.
    if result != libdeflate_result_LIBDEFLATE_SUCCESS || read != data.len() || written != size {
        return None;
    }
    // SAFETY: libdeflate wrote `written` bytes at the start of `out`, within its capacity.
    unsafe { out.set_len(written) };
    Some(out)
}

/// Reads into `buf` until it is full or the input ends; the number of bytes read.
pub fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A plain (not gzip) local file read as memory-mapped windows of whole lines.
///
/// `read` copies every byte of a large log from the page cache into a buffer the parser then
/// reads again (perf of a 1M-line ingest: the kernel's copy was 6% of the samples). A window
/// maps the page cache's pages themselves, populated when mapped (`MAP_POPULATE`: no page
/// fault per page on the parser thread), and is unmapped once parsed, so memory stays bounded
/// by the windows in flight, not the file.
///
/// A mapping is only sound while the file is not truncated: each window checks the file's
/// length after mapping it (a file found shorter is an error naming it), but a file truncated
/// while a window is being parsed would still end the process (`SIGBUS`) before anything is
/// committed, and the next run starts the ingest again. Log files are appended, not
/// rewritten; a file rotated by `copytruncate` while seclake reads it is the case to avoid.
pub struct MappedLines {
    file: File,
    len: u64,
    pos: u64,
    window: usize,
}

/// A window of [`MappedLines`]: `map[..end]` holds whole lines.
pub struct Window {
    pub map: memmap2::Mmap,
    pub end: usize,
}

impl MappedLines {
    /// Bytes `range` of the file at `path` (up to its end when it is shorter) in windows of
    /// about `window` bytes, or `None` when it is gzip.
    pub fn open(
        path: &Path,
        range: std::ops::Range<u64>,
        window: usize,
    ) -> std::io::Result<Option<Self>> {
        let file = File::open(path)?;
        let len = file.metadata()?.len().min(range.end);
        if len >= 2 && file_is_gzip(&file).unwrap_or(false) {
            return Ok(None);
        }
        Ok(Some(MappedLines {
            file,
            len,
            pos: range.start.min(len),
            window: window.max(1),
        }))
    }

    /// The next window: up to `window` bytes cut after their last line end (further when a
    /// line is longer), the rest of the file at its end; `None` once the file is read.
    pub fn next_window(&mut self) -> std::io::Result<Option<Window>> {
        if self.pos >= self.len {
            return Ok(None);
        }
        let mut end = self.len.min(self.pos + self.window as u64);
        loop {
            // SAFETY: see the type's documentation; the length is checked just below.
            let map = unsafe {
                memmap2::MmapOptions::new()
                    .offset(self.pos)
                    .len((end - self.pos) as usize)
                    .populate()
                    .map(&self.file)?
            };
            if self.file.metadata()?.len() < end {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file became shorter while it was read",
                ));
            }
            let cut = if end == self.len {
                Some(map.len())
            } else {
                memchr::memrchr(b'\n', &map).map(|p| p + 1)
            };
            if let Some(cut) = cut {
                self.pos += cut as u64;
                return Ok(Some(Window { map, end: cut }));
            }
            // A line longer than the window: map further.
            end = self.len.min(end + self.window as u64);
        }
    }
}

/// The 32-hex-digit id of a source identity string.
pub fn source_id(identity: &str) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(identity.as_bytes()))
}

/// [`Source::sniff`] each source (up to `max` bytes of a file), `SNIFF_CONCURRENCY` objects at
/// a time, and `judge` its head where it was read: files on blocking threads (every core
/// reads and judges), so that only the verdicts are held, not thousands of heads. Small
/// objects are kept whole while the kept bytes stay under `keep_budget`.
pub async fn sniff_all<T: Send + 'static>(
    sources: Vec<Source>,
    keep_budget: u64,
    max: usize,
    judge: impl Fn(&[u8]) -> Result<T> + Send + Sync + 'static,
) -> Vec<(Source, Result<T>)> {
    let judge = Arc::new(judge);
    let mut kept = 0u64;
    let plan: Vec<(Source, bool)> = sources
        .into_iter()
        .map(|s| {
            let keep = matches!(s.origin, Origin::Object { .. })
                && s.size <= (1 << 20)
                && kept + s.size <= keep_budget;
            if keep {
                kept += s.size;
            }
            (s, keep)
        })
        .collect();
    futures::stream::iter(plan)
        .map(|(mut s, keep)| {
            let judge = judge.clone();
            async move {
                if let Origin::File(path) = &s.origin {
                    let path = path.clone();
                    return tokio::task::spawn_blocking(move || {
                        let verdict = s.file_head(&path, max).and_then(|h| judge(&h));
                        (s, verdict)
                    })
                    .await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
                }
                let verdict = s.sniff(keep, max).await.and_then(|h| judge(&h));
                (s, verdict)
            }
        })
        .buffered(SNIFF_CONCURRENCY)
        .collect()
        .await
}

/// What one argument expanded to.
pub enum Found {
    Source(Source),
    /// A file that exists but could not be described: (name, why).
    Failed(String, String),
}

/// Expand arguments into sources: local files, folders (searched recursively), glob
/// patterns, and `s3://bucket/prefix/` (every object under it), `s3://bucket/key` (one
/// object, or the prefix `key/`), `s3://bucket/logs/2020-05-*` (a glob over keys). Sorted
/// and de-duplicated; hidden names (`.name`) are skipped. An argument that matches nothing is
/// an error naming it.
pub async fn discover(args: &[String], stores: &Stores) -> Result<Vec<Found>> {
    let mut local = Vec::new();
    let mut objects: Vec<Source> = Vec::new();
    for arg in args {
        match S3Url::parse(arg) {
            Some(url) => objects.extend(list_objects(&url?, stores).await?),
            None => local.push(arg.clone()),
        }
    }
    let mut out: Vec<Found> = expand(&local)?
        .into_iter()
        .map(|p| match Source::local(&p) {
            Ok(s) => Found::Source(s),
            Err(e) => Found::Failed(p.display().to_string(), e.to_string()),
        })
        .collect();
    objects.sort_by(|a, b| a.info.label.cmp(&b.info.label));
    objects.dedup_by(|a, b| a.info.label == b.info.label);
    out.extend(objects.into_iter().map(Found::Source));
    Ok(out)
}

/// The objects an `s3://` argument names.
async fn list_objects(url: &S3Url, stores: &Stores) -> Result<Vec<Source>> {
    let store = stores.bucket(&url.bucket)?;
    let glob_at = url.key.find(['*', '?', '[']);
    let (prefix, pattern) = match glob_at {
        Some(at) => {
            let dir = url.key[..at].rfind('/').map_or("", |d| &url.key[..d]);
            let pattern = glob::Pattern::new(&url.key)
                .map_err(|e| Error::invalid(format!("bad glob {url}: {e}")))?;
            (dir.to_string(), Some(pattern))
        }
        None => (url.key.trim_end_matches('/').to_string(), None),
    };
    let as_object = pattern.is_none() && !url.key.is_empty() && !url.key.ends_with('/');
    if as_object {
        match store
            .head(&object_store::path::Path::from(prefix.as_str()))
            .await
        {
            Ok(meta) => return Ok(vec![Source::object(store, &url.bucket, meta)]),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let list_prefix = object_store::path::Path::from(prefix.as_str());
    let metas: Vec<ObjectMeta> = store
        .list((!prefix.is_empty()).then_some(&list_prefix))
        .try_collect()
        .await?;
    let opts = glob::MatchOptions {
        require_literal_separator: true,
        ..Default::default()
    };
    let found: Vec<Source> = metas
        .into_iter()
        .filter(|m| {
            let key = m.location.as_ref();
            !key.ends_with('/')
                && !key[prefix.len()..].split('/').any(|p| p.starts_with('.'))
                && pattern.as_ref().is_none_or(|p| p.matches_with(key, opts))
        })
        .map(|m| Source::object(store.clone(), &url.bucket, m))
        .collect();
    if found.is_empty() {
        return Err(Error::invalid(format!("{url}: no objects match")));
    }
    Ok(found)
}

/// Expand local arguments (files, folders searched recursively, glob patterns) into files,
/// sorted and de-duplicated. Hidden files (`.name`) inside folders are skipped. An argument
/// that matches nothing is an error naming it.
pub fn expand(args: &[String]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for arg in args {
        let path = Path::new(arg);
        if path.is_dir() {
            walk(path, &mut out)?;
        } else if path.is_file() {
            out.push(path.to_path_buf());
        } else if arg.contains(['*', '?', '[']) {
            let paths =
                glob::glob(arg).map_err(|e| Error::invalid(format!("bad glob {arg:?}: {e}")))?;
            let before = out.len();
            for p in paths {
                let p =
                    p.map_err(|e| Error::io(e.path().to_path_buf(), std::io::Error::from(e)))?;
                if p.is_dir() {
                    walk(&p, &mut out)?;
                } else if p.is_file() {
                    out.push(p);
                }
            }
            if out.len() == before {
                return Err(Error::invalid(format!("{arg}: no files match")));
            }
        } else {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
            ));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for e in entries {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let ft = e.file_type().map_err(|e| Error::io(&p, e))?;
        if ft.is_dir() {
            walk(&p, out)?;
        } else if ft.is_file() || (ft.is_symlink() && p.is_file()) {
            out.push(p);
        }
    }
    Ok(())
}

/// Reads a transaction's sources in order from a blocking thread: local files directly,
/// small objects fetched whole with the next `PREFETCH` in flight, large objects streamed.
pub struct Prefetch {
    rt: tokio::runtime::Handle,
    sources: Vec<Source>,
    ahead: VecDeque<(usize, tokio::task::JoinHandle<Result<Bytes>>)>,
    next: usize,
}

impl Prefetch {
    /// Over `sources`, to be read in order.
    pub fn new(rt: tokio::runtime::Handle, sources: Vec<Source>) -> Self {
        Prefetch {
            rt,
            sources,
            ahead: VecDeque::new(),
            next: 0,
        }
    }

    fn fetch_whole(s: &Source) -> bool {
        matches!(s.origin, Origin::Object { .. }) && s.fetched.is_none() && s.size <= WHOLE_OBJECT
    }

    /// Source `i` as stored (maybe gzip): whole when it is a fetched object, else a reader.
    /// Call for each `i` in order.
    pub fn open(&mut self, i: usize) -> Result<Input> {
        while self.next < self.sources.len() && self.ahead.len() < PREFETCH {
            let s = &self.sources[self.next];
            if Self::fetch_whole(s) {
                let s = s.clone();
                let task = self.rt.spawn(async move { s.read_all().await });
                self.ahead.push_back((self.next, task));
            }
            self.next += 1;
        }
        let src = &self.sources[i];
        if let Some(b) = &src.fetched {
            return Ok(Input::Fetched(b.clone()));
        }
        match &src.origin {
            Origin::File(path) => open_range(path, src.stored_range())
                .map(|f| Input::Reader(Box::new(f)))
                .map_err(|e| Error::io(path, e)),
            Origin::Object { .. } if Self::fetch_whole(src) => {
                let bytes = match self.ahead.front() {
                    Some((j, _)) if *j == i => {
                        let (_, task) = self.ahead.pop_front().expect("front");
                        self.rt
                            .block_on(task)
                            .map_err(|e| Error::invalid(format!("fetch panicked: {e}")))??
                    }
                    _ => self.rt.block_on(src.read_all())?,
                };
                Ok(Input::Fetched(bytes))
            }
            Origin::Object { store, key } => {
                let stream = self.rt.block_on(store.get(key))?.into_stream();
                Ok(Input::Reader(Box::new(StreamReader {
                    rt: self.rt.clone(),
                    stream,
                    cur: Bytes::new(),
                })))
            }
        }
    }
}

/// A source's content as stored (maybe gzip).
pub enum Input {
    /// All of it, in memory.
    Fetched(Bytes),
    /// A file or a streamed object.
    Reader(Box<dyn Read + Send>),
}

impl Input {
    /// A reader over the decompressed content.
    pub fn decompressed(self) -> std::io::Result<Box<dyn Read + Send>> {
        match self {
            Input::Fetched(b) => gunzipping(std::io::Cursor::new(b)),
            Input::Reader(r) => gunzipping(r),
        }
    }
}

/// A blocking reader over an object's byte stream.
struct StreamReader {
    rt: tokio::runtime::Handle,
    stream: futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
    cur: Bytes,
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rt.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gz(text: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn whole_files_are_gunzipped_member_by_member() {
        let a: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let b = b"second member".to_vec();
        // One member: inflated in one call.
        assert_eq!(inflate_member(&gz(&a), a.len()).as_deref(), Some(&a[..]));
        assert_eq!(decompress(gz(&a)).unwrap(), a);
        assert_eq!(decompress(gz(b"")).unwrap(), b"");
        // Two members: not one member, so flate2 reads both, the first not lost.
        let two = [gz(&a), gz(&b)].concat();
        assert_eq!(inflate_member(&two, b.len()), None);
        assert_eq!(decompress(two).unwrap(), [a.clone(), b].concat());
        // A trailer that does not tell the size, and corrupt data.
        let mut wrong = gz(&a);
        let n = wrong.len();
        wrong[n - 4..].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(inflate_member(&wrong, 7), None);
        assert!(decompress(wrong).is_err());
        let mut corrupt = gz(&a);
        corrupt[20] ^= 0xff;
        assert!(decompress(corrupt).is_err());
        // Not gzip: as stored.
        assert_eq!(decompress(b"plain".to_vec()).unwrap(), b"plain");
    }

    /// Windows of every size hold whole lines, end to end, whatever the line lengths (lines
    /// longer than a window, a last line without a newline).
    #[test]
    fn mapped_windows_cut_at_line_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let text: String = (0..200)
            .map(|i| format!("{}\n", "x".repeat(i * 7 % 23)))
            .collect::<String>()
            + "last line";
        std::fs::write(&path, &text).unwrap();
        // The whole file, the lines after a resume point (not on a page boundary), and bytes
        // found at discovery of a file that grew since.
        let len = text.len() as u64;
        let resumed = text.find("xxxxxxx\n").unwrap() as u64 + 8;
        for range in [0..len, resumed..len, 0..len - 4, resumed..u64::MAX] {
            let want = &text.as_bytes()[range.start as usize..(range.end.min(len)) as usize];
            for window in [1, 5, 16, 64, 1000, 1 << 20] {
                let mut lines = MappedLines::open(&path, range.clone(), window)
                    .unwrap()
                    .unwrap();
                let mut got = Vec::new();
                while let Some(w) = lines.next_window().unwrap() {
                    let bytes = &w.map[..w.end];
                    assert!(!bytes.is_empty());
                    let at_end = got.len() + bytes.len() == want.len();
                    assert!(at_end || bytes.ends_with(b"\n"), "window {window}");
                    got.extend_from_slice(bytes);
                }
                assert_eq!(got, want, "window {window}, {range:?}");
            }
        }
        std::fs::write(&path, gz(text.as_bytes())).unwrap();
        assert!(
            MappedLines::open(&path, 0..u64::MAX, 64).unwrap().is_none(),
            "gzip is not mapped"
        );
    }

    #[test]
    fn a_file_cut_short_while_mapped_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "line\n".repeat(1000)).unwrap();
        let mut lines = MappedLines::open(&path, 0..u64::MAX, 100).unwrap().unwrap();
        assert!(lines.next_window().unwrap().is_some());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(50)
            .unwrap();
        let e = lines.next_window().err().expect("shorter file refused");
        assert!(e.to_string().contains("became shorter"), "{e}");
    }

    /// A gzip file's text has the ends (so the fingerprint) of the same text stored plain, at
    /// every length, the two ends overlapping or not; a length past the text is an error.
    #[test]
    fn text_ends_are_the_same_through_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let (plain, zipped) = (dir.path().join("a.log"), dir.path().join("a.log.gz"));
        let text: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i * 7 % 26) as u8).collect();
        std::fs::write(&plain, &text).unwrap();
        std::fs::write(&zipped, gz(&text)).unwrap();
        for len in [
            1, 10, 4095, 4096, 4097, 6000, 8191, 8192, 8193, 15_000, 20_000,
        ] {
            let (gzip, head, tail) = text_ends(&plain, len).unwrap();
            assert!(!gzip);
            assert_eq!(
                text_ends(&zipped, len).unwrap(),
                (true, head.clone(), tail.clone()),
                "len {len}"
            );
            let want = (len as usize).min(4096);
            assert_eq!(head, text[..want]);
            assert_eq!(tail, text[len as usize - want..len as usize]);
        }
        assert!(text_ends(&zipped, 20_001).is_err());
        assert!(text_ends(&plain, 20_001).is_err());
    }

    /// However a gzip file is damaged, whole or streamed, the error says so.
    #[test]
    fn damaged_gzip_is_named_as_such() {
        let a: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let full = gz(&a);
        let mut checksum = full.clone();
        let n = checksum.len();
        checksum[n - 8] ^= 0xff;
        let mut corrupt = full.clone();
        corrupt[20] ^= 0xff;
        for (what, data) in [
            ("cut short", full[..full.len() / 2].to_vec()),
            ("header cut short", full[..5].to_vec()),
            ("wrong checksum", checksum),
            ("corrupt", corrupt),
        ] {
            let whole = decompress(data.clone()).unwrap_err().to_string();
            let mut out = Vec::new();
            let streamed = gunzipping(std::io::Cursor::new(data))
                .and_then(|mut r| r.read_to_end(&mut out))
                .unwrap_err()
                .to_string();
            for e in [whole, streamed] {
                assert!(e.starts_with("damaged or cut-short gzip ("), "{what}: {e}");
            }
        }
    }
}
