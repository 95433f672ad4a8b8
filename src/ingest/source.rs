//! Inputs: expanding paths, folders and globs into files, their identity, and reading them.
//!
//! A source's identity ([`Source::id`]) is derived from its canonical path, size and
//! modification time: the same file seen again has the same id and is skipped; a file
//! rewritten in place gets a new id. gzip is recognised by its magic bytes, not its name.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::error::{Error, Result};
use crate::parse::SourceInfo;

/// One input file.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub size: u64,
    pub info: SourceInfo,
}

impl Source {
    /// Describe the file at `path`.
    pub fn local(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let canonical = path.canonicalize().map_err(|e| Error::io(path, e))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let key = format!("file\0{}\0{}\0{}", canonical.display(), meta.len(), mtime);
        Ok(Source {
            path: path.to_path_buf(),
            size: meta.len(),
            info: SourceInfo {
                id: source_id(&key),
                label: canonical.display().to_string(),
            },
        })
    }

    /// Open for reading, decompressing gzip.
    pub fn open(&self) -> Result<Box<dyn Read + Send>> {
        let mut f = File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let mut magic = [0u8; 2];
        let n = read_full(&mut f, &mut magic).map_err(|e| Error::io(&self.path, e))?;
        let head = std::io::Cursor::new(magic[..n].to_vec());
        let chained = head.chain(f);
        Ok(if n == 2 && magic == [0x1f, 0x8b] {
            Box::new(MultiGzDecoder::new(BufReader::with_capacity(
                1 << 20,
                chained,
            )))
        } else {
            Box::new(chained)
        })
    }
}

/// The bytes of a whole file as stored: gunzipped when they start with gzip's magic bytes.
pub fn decompress(data: Vec<u8>) -> std::io::Result<Vec<u8>> {
    if !data.starts_with(&[0x1f, 0x8b]) {
        return Ok(data);
    }
    // The trailer holds the (last member's) size mod 2^32: a good first guess.
    let hint = data.len().checked_sub(4).map_or(0, |at| {
        u32::from_le_bytes(data[at..].try_into().expect("4 bytes")) as usize
    });
    let mut out = Vec::with_capacity(hint.clamp(data.len(), 1 << 30));
    MultiGzDecoder::new(&data[..]).read_to_end(&mut out)?;
    Ok(out)
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The 32-hex-digit id of a source identity string.
pub fn source_id(identity: &str) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(identity.as_bytes()))
}

/// Expand arguments (files, folders searched recursively, glob patterns) into files, sorted
/// and de-duplicated. Hidden files (`.name`) inside folders are skipped. An argument that
/// matches nothing is an error naming it.
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
