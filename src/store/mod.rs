//! Object access behind narrow traits: where bytes come from ([`ObjectSource`]) and where parts
//! and manifests go ([`PartWriter`]). The pipeline only sees these traits.

pub mod local;
pub mod s3;

use std::io::{self, Read, Seek, SeekFrom, Write};

/// A readable object of known size, read by byte ranges. Reads are blocking: the pipeline calls
/// them from a blocking thread, never from the async executor.
pub trait ObjectSource: Send + Sync {
    fn size(&self) -> u64;
    /// A stream of the bytes `[start, end)`.
    fn read_range(&self, start: u64, end: u64) -> io::Result<Box<dyn Read + Send + '_>>;
}

/// Where parts and manifests are written.
pub trait PartWriter: Send + Sync {
    /// The bucket (or folder) named in the manifest's `output`.
    fn bucket(&self) -> &str;
    /// Starts writing an object at `key`; nothing is visible there until [`PartUpload::finish`].
    fn create(&self, key: &str) -> io::Result<Box<dyn PartUpload + '_>>;
    /// Writes a small object in one go (the manifest).
    fn put(&self, key: &str, body: &[u8]) -> io::Result<()>;
}

/// One object being written.
pub trait PartUpload: Write + Send {
    /// Hands over the last bytes and starts making the object visible. The object is complete
    /// only when the returned [`Pending`] says so: an adapter may finish in the background (S3
    /// completes a multipart upload while the pipeline goes on with the next part). Errors
    /// already known are returned here.
    fn finish(self: Box<Self>) -> io::Result<Pending>;
    /// Discards what was written.
    fn abort(self: Box<Self>);
}

/// The completion of an upload whose bytes were all handed over (see [`PartUpload::finish`]).
/// Dropping it without [`Pending::wait`] does not stop the completion; it only loses its result.
#[must_use = "the object is written only when `wait` says so"]
pub struct Pending(Option<Box<dyn FnOnce() -> io::Result<()> + Send>>);

impl Pending {
    /// Already complete.
    pub fn done() -> Pending {
        Pending(None)
    }

    /// Complete when `wait` returns `Ok` (it blocks).
    pub fn later(wait: impl FnOnce() -> io::Result<()> + Send + 'static) -> Pending {
        Pending(Some(Box::new(wait)))
    }

    /// Blocks until the object is visible, or says why it is not.
    pub fn wait(self) -> io::Result<()> {
        self.0.map_or(Ok(()), |wait| wait())
    }
}

/// A transient failure of a source or a writer (network, throttling, timeouts): the work is
/// retried rather than reported as a property of the file. Travels inside `io::Error`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Transient(pub String);

/// Whether an I/O error is a [`Transient`] one.
pub fn is_transient(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<Transient>())
}

/// What a HEAD says about the object being processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub size: u64,
    /// Without quotes.
    pub etag: Option<String>,
}

/// A precondition on a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    None,
    /// Only if nothing exists at the key (`If-None-Match: *`).
    IfNoneMatch,
    /// Only if the object at the key still has this ETag (`If-Match`).
    IfMatch(String),
}

/// What a store operation can end in, as far as the pipeline cares.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("the precondition of a conditional write failed")]
    PreconditionFailed,
    /// Worth retrying: network, throttling, 5xx.
    #[error("{0}")]
    Transient(String),
    /// Not worth retrying: access denied, invalid request.
    #[error("{0}")]
    Permanent(String),
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Transient(_) | StoreError::PreconditionFailed
        )
    }

    /// As an `io::Error` for the blocking pipeline; transient errors stay recognisable.
    pub fn into_io(self) -> io::Error {
        match self {
            StoreError::NotFound(m) => io::Error::new(io::ErrorKind::NotFound, m),
            StoreError::Permanent(m) => io::Error::new(io::ErrorKind::PermissionDenied, m),
            other => io::Error::other(Transient(other.to_string())),
        }
    }
}

/// `Read + Seek` over an [`ObjectSource`]: each seek that moves drops the current range stream,
/// and the next read opens `[pos, size)`. Wrapped in a `BufReader`, this is how zip archives are
/// read through their central directory with ranged reads.
pub struct SeekableSource<'a> {
    source: &'a dyn ObjectSource,
    pos: u64,
    current: Option<Box<dyn Read + Send + 'a>>,
}

impl<'a> SeekableSource<'a> {
    pub fn new(source: &'a dyn ObjectSource) -> Self {
        SeekableSource {
            source,
            pos: 0,
            current: None,
        }
    }
}

impl Read for SeekableSource<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.source.size();
        if self.pos >= size || buf.is_empty() {
            return Ok(0);
        }
        if self.current.is_none() {
            self.current = Some(self.source.read_range(self.pos, size)?);
        }
        let n = self.current.as_mut().expect("opened above").read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the object ended at byte {} of {size}", self.pos),
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SeekableSource<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let size = self.source.size() as i128;
        let target = match to {
            SeekFrom::Start(n) => n as i128,
            SeekFrom::End(d) => size + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if target < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the object",
            ));
        }
        let target = target as u64;
        if target != self.pos {
            self.current = None;
            self.pos = target;
        }
        Ok(self.pos)
    }
}

#[cfg(test)]
pub(crate) mod conformance {
    //! One test every `ObjectSource` implementation passes.
    use super::*;

    pub fn object_source(source: &dyn ObjectSource, content: &[u8]) {
        assert_eq!(source.size(), content.len() as u64);
        let mut all = Vec::new();
        source
            .read_range(0, content.len() as u64)
            .unwrap()
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(all, content);
        let (a, b) = (content.len() as u64 / 3, 2 * content.len() as u64 / 3);
        let mut mid = Vec::new();
        source
            .read_range(a, b)
            .unwrap()
            .read_to_end(&mut mid)
            .unwrap();
        assert_eq!(mid, &content[a as usize..b as usize]);
        let mut seekable = io::BufReader::with_capacity(7, SeekableSource::new(source));
        seekable.seek(SeekFrom::End(-5)).unwrap();
        let mut tail = Vec::new();
        seekable.read_to_end(&mut tail).unwrap();
        assert_eq!(tail, &content[content.len() - 5..]);
        seekable.seek(SeekFrom::Start(a)).unwrap();
        let mut some = vec![0u8; 10];
        seekable.read_exact(&mut some).unwrap();
        assert_eq!(some, &content[a as usize..a as usize + 10]);
    }
}
