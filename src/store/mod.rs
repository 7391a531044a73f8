//! Object access behind narrow traits: where bytes come from ([`ObjectSource`]) and where parts
//! and manifests go ([`PartWriter`]). The pipeline only sees these traits.

pub mod local;
pub mod requests;
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
    /// The object's `export-fetcher-output` metadata: set on every output the fetcher writes
    /// (`part`, `manifest`, `delivery`), so that the loop guard knows an output wherever it lies.
    pub output: Option<String>,
    /// On a part: its `export-fetcher-source` metadata, the source version (ETag) it was
    /// written from (see `S3Writer::with_source_tag`).
    pub source_tag: Option<String>,
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
    /// Access denied, a KMS key that cannot be used, or a bucket that does not exist
    /// (`NoSuchBucket`): a property of the environment (IAM, a key policy, a disabled key, a
    /// wrong bucket name), never of the object. Retried like a transient failure, so a
    /// missing `kms:Decrypt` ends in the DLQ, redrivable once the permission is fixed, rather
    /// than in a `failed` manifest; not resumed on the spot (it does not heal in seconds).
    #[error("{0}")]
    Denied(String),
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Transient(_) | StoreError::PreconditionFailed | StoreError::Denied(_)
        )
    }

    /// As an `io::Error` for the blocking pipeline; transient errors (denials included) stay
    /// recognisable as [`Transient`].
    pub fn into_io(self) -> io::Error {
        match self {
            StoreError::NotFound(m) => io::Error::new(io::ErrorKind::NotFound, m),
            other => io::Error::other(Transient(other.to_string())),
        }
    }
}

/// `Read + Seek` over an [`ObjectSource`], buffered: how zip archives are read through their
/// central directory with ranged reads.
///
/// A read opens one stream `[pos, size)` and keeps it. A seek into the window last read is served
/// from memory, and one a little ahead of the stream by reading on; only a seek elsewhere drops
/// the stream. Zip members lie one after the other, so after the central directory one stream
/// serves them all: no request per member, and no prefetched bytes thrown away when a member
/// ends (they were, when each seek dropped the stream: up to megabytes per member).
pub struct SeekableSource<'a> {
    source: &'a dyn ObjectSource,
    /// The position reads continue from.
    pos: u64,
    /// The bytes last read from the stream are `window[..window_len]`; the first is at
    /// `window_start`. Allocated once, at its full size.
    window: Box<[u8]>,
    window_len: usize,
    window_start: u64,
    stream: Option<Box<dyn Read + Send + 'a>>,
    /// The position of the next byte the stream yields.
    stream_pos: u64,
}

/// Bytes read from the stream at a time.
const WINDOW: usize = 64 * 1024;
/// A seek at most this far ahead of the stream reads on rather than opening another one.
const SKIP_AHEAD: u64 = 1 << 20;

impl<'a> SeekableSource<'a> {
    pub fn new(source: &'a dyn ObjectSource) -> Self {
        SeekableSource {
            source,
            pos: 0,
            window: vec![0u8; WINDOW].into_boxed_slice(),
            window_len: 0,
            window_start: 0,
            stream: None,
            stream_pos: 0,
        }
    }

    /// Reads the next window from the stream (opened at `pos` when there is none, or when `pos`
    /// is behind it or too far ahead of it).
    fn fill(&mut self, size: u64) -> io::Result<()> {
        let reusable = self.stream.is_some()
            && self.pos >= self.stream_pos
            && self.pos - self.stream_pos <= SKIP_AHEAD;
        if !reusable {
            self.stream = Some(self.source.read_range(self.pos, size)?);
            self.stream_pos = self.pos;
        }
        let stream = self.stream.as_mut().expect("opened above");
        let n = match stream.read(&mut self.window) {
            Ok(n) => n,
            Err(e) => {
                self.window_len = 0;
                self.stream = None;
                return Err(e);
            }
        };
        self.window_len = n;
        self.window_start = self.stream_pos;
        if n == 0 {
            self.stream = None;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the object ended at byte {} of {size}", self.stream_pos),
            ));
        }
        self.stream_pos += n as u64;
        Ok(())
    }
}

impl Read for SeekableSource<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.source.size();
        if self.pos >= size || buf.is_empty() {
            return Ok(0);
        }
        // Until the window holds `pos`: each fill moves the window forward from the stream's
        // position, which is at or before `pos`.
        while !(self.window_start..self.window_start + self.window_len as u64).contains(&self.pos) {
            self.fill(size)?;
        }
        let from = (self.pos - self.window_start) as usize;
        let n = buf.len().min(self.window_len - from);
        buf[..n].copy_from_slice(&self.window[from..from + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SeekableSource<'_> {
    /// Moves the position only; the next read decides whether the stream can serve it.
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
        self.pos = target as u64;
        Ok(self.pos)
    }
}

#[cfg(test)]
pub(crate) mod conformance {
    //! One test every `ObjectSource` implementation passes, and an in-memory source for tests.
    use std::sync::Mutex;

    use super::*;

    /// Bytes in memory, read by ranges; records every range opened.
    pub struct MemSource {
        pub bytes: Vec<u8>,
        pub opened: Mutex<Vec<(u64, u64)>>,
    }

    impl MemSource {
        pub fn new(bytes: Vec<u8>) -> Self {
            MemSource {
                bytes,
                opened: Mutex::new(Vec::new()),
            }
        }
    }

    impl ObjectSource for MemSource {
        fn size(&self) -> u64 {
            self.bytes.len() as u64
        }
        fn read_range(&self, start: u64, end: u64) -> io::Result<Box<dyn Read + Send + '_>> {
            self.opened.lock().unwrap().push((start, end));
            Ok(Box::new(&self.bytes[start as usize..end as usize]))
        }
    }

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

#[cfg(test)]
mod tests {
    use super::conformance::MemSource;
    use super::*;

    fn counted(n: usize) -> MemSource {
        MemSource::new((0..n).map(|i| (i * 7 % 251) as u8).collect())
    }

    fn read_at(s: &mut SeekableSource<'_>, at: u64, n: usize) -> Vec<u8> {
        s.seek(SeekFrom::Start(at)).unwrap();
        let mut out = vec![0u8; n];
        s.read_exact(&mut out).unwrap();
        out
    }

    #[test]
    fn seekable_source_serves_members_that_follow_each_other_from_one_stream() {
        let src = counted(3 << 20);
        let mut s = SeekableSource::new(&src);
        // Header, data, then the next header right after (and a little ahead), as zip members
        // are laid out; a step back into the window just read; a skip within `SKIP_AHEAD`.
        let mut at = 0u64;
        for (len, gap) in [(30, 0), (200_000, 0), (30, 16), (700_000, 0), (46, 100_000)] {
            at += gap;
            assert_eq!(
                read_at(&mut s, at, len),
                &src.bytes[at as usize..at as usize + len]
            );
            at += len as u64;
        }
        let back = at - 20;
        assert_eq!(
            read_at(&mut s, back, 20),
            &src.bytes[back as usize..at as usize]
        );
        assert_eq!(*src.opened.lock().unwrap(), vec![(0, 3 << 20)]);
        // Behind the window, or far ahead: a new stream from there.
        assert_eq!(read_at(&mut s, 10, 5), &src.bytes[10..15]);
        assert_eq!(
            read_at(&mut s, 3 << 20 >> 1, 5),
            &src.bytes[(3 << 20 >> 1)..][..5]
        );
        let (size, half) = (3 << 20, 3 << 20 >> 1);
        assert_eq!(
            *src.opened.lock().unwrap(),
            vec![(0, size), (10, size), (half, size)]
        );
    }

    #[test]
    fn seekable_source_reports_a_short_object() {
        /// Claims more bytes than its streams yield.
        struct Short(Vec<u8>);
        impl ObjectSource for Short {
            fn size(&self) -> u64 {
                self.0.len() as u64 + 10
            }
            fn read_range(&self, start: u64, _: u64) -> io::Result<Box<dyn Read + Send + '_>> {
                Ok(Box::new(&self.0[start as usize..]))
            }
        }
        let src = Short(vec![1; 100]);
        let mut s = SeekableSource::new(&src);
        let mut all = Vec::new();
        let err = s.read_to_end(&mut all).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(all.len(), 100);
    }
}
