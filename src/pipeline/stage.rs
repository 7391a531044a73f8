//! The staged part pipeline: a decoder thread pulls the decompressed stream, a hasher thread
//! hashes it and writes it out, and the calling thread indexes the same bytes. Chunks travel
//! through bounded channels and come back for reuse, so memory stays at about
//! `(2 × QUEUE + 2) × CHUNK` per part however large the part is. Inflating (~40% of the work),
//! hashing and writing (~20%) and parsing (~40%) overlap; with three stages the scheduler keeps
//! both cores of a small machine busy.
//!
//! A stage that panics never ends its part quietly: the panic is caught in the stage's thread and
//! travels down the channels as a [`Transient`] read error, so the indexer fails the part and the
//! object is retried. Without this, the indexer would see a closed channel as the end of the
//! stream and certify a truncated part (or, for the hash/write stage, one with no output).

use std::any::Any;
use std::io::{self, BufRead, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Instant;

use crate::store::{PartUpload, Transient};

/// Bytes per chunk handed from the producer to the indexer.
pub const CHUNK: usize = 512 * 1024;
/// Chunks in flight between the two stages.
pub const QUEUE: usize = 4;

/// What the producer saw: every byte it handed over was hashed, counted and written.
pub struct Produced<'w> {
    pub sha256: String,
    pub bytes: u64,
    pub upload: Option<Box<dyn PartUpload + 'w>>,
}

/// Runs `consume` over the bytes of `stream` while a scoped producer thread reads, hashes and
/// writes them. `consume` sees the producer's errors (decoder, limits, source, writer, deadline)
/// as read errors, with their payload intact.
pub fn run<'w, T>(
    stream: &mut (dyn Read + Send),
    upload: Option<Box<dyn PartUpload + 'w>>,
    out_key: &str,
    deadline: Option<Instant>,
    consume: impl FnOnce(&mut ChunkReader) -> T,
) -> (T, Produced<'w>) {
    std::thread::scope(|scope| {
        let (raw_tx, raw_rx) = sync_channel::<io::Result<Vec<u8>>>(QUEUE);
        let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(QUEUE);
        let (free_tx, free_rx) = sync_channel::<Vec<u8>>(2 * QUEUE + 2);
        scope.spawn(move || decode(stream, deadline, out_key, raw_tx, free_rx));
        let producer = scope.spawn(move || hash_and_write(raw_rx, upload, out_key, tx));
        let mut reader = ChunkReader {
            rx,
            free: free_tx,
            current: Vec::new(),
            pos: 0,
            state: State::Open,
        };
        let result = consume(&mut reader);
        // Dropping the reader closes the channel: a producer still running stops.
        drop(reader);
        // The stages catch their own panics; should one escape anyway, it goes on to the caller
        // (whose task fails as retryable) rather than becoming an empty, "successful" part.
        let produced = producer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (result, produced)
    })
}

/// The message of a caught panic.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// The read error a stage's panic becomes: transient, so the part fails and the object is
/// retried instead of being certified.
fn panicked(stage: &str, out_key: &str, panic: &(dyn Any + Send)) -> io::Error {
    io::Error::other(Transient(format!(
        "the {stage} stage of part {out_key:?} panicked: {}",
        panic_message(panic)
    )))
}

/// A failpoint that panics when its configured argument (`return(<marker>)`) occurs in
/// `subject`, so that a test can aim it at one object while other tests run alongside.
#[cfg(feature = "failpoints")]
fn panic_failpoint(name: &str, subject: &str) {
    fail::fail_point!(name, |marker: Option<String>| {
        if marker.is_some_and(|m| !m.is_empty() && subject.contains(&m)) {
            panic!("failpoint {name}: injected panic for {subject:?}");
        }
    });
}

/// Stage 1: the decompressed stream, cut into chunks. A panic (a decoder bug) reaches the next
/// stage as a transient error.
fn decode(
    stream: &mut (dyn Read + Send),
    deadline: Option<Instant>,
    out_key: &str,
    tx: SyncSender<io::Result<Vec<u8>>>,
    free: Receiver<Vec<u8>>,
) {
    let run = catch_unwind(AssertUnwindSafe(|| {
        decode_chunks(stream, deadline, &tx, &free)
    }));
    if let Err(panic) = run {
        let _ = tx.send(Err(panicked("decode", out_key, &*panic)));
    }
}

fn decode_chunks(
    stream: &mut (dyn Read + Send),
    deadline: Option<Instant>,
    tx: &SyncSender<io::Result<Vec<u8>>>,
    free: &Receiver<Vec<u8>>,
) {
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = tx.send(Err(io::Error::other(Transient(
                "the invocation deadline is near: stopped so that the object is retried".into(),
            ))));
            return;
        }
        let mut buf = free.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        match fill(stream, &mut buf) {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                if tx.send(Ok(buf)).is_err() {
                    return; // the later stages stopped
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
}

/// Stage 2: every chunk is hashed, counted and written before the indexer sees it. A panic
/// (in the hasher or the writer) reaches the indexer as a transient error, so the part fails
/// and its upload is aborted by the caller: it is never certified without its output.
fn hash_and_write<'w>(
    rx: Receiver<io::Result<Vec<u8>>>,
    mut upload: Option<Box<dyn PartUpload + 'w>>,
    out_key: &str,
    tx: SyncSender<io::Result<Vec<u8>>>,
) -> Produced<'w> {
    // ring's SHA-256 picks the CPU's SHA instructions at run time on x86_64 (SHA-NI) and on
    // arm64 (ARMv8 crypto extensions; `sha2` 0.10 uses them there only with its `asm` feature).
    let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
    let mut bytes = 0u64;
    let run = catch_unwind(AssertUnwindSafe(|| {
        for chunk in &rx {
            let buf = match chunk {
                Ok(buf) => buf,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    break;
                }
            };
            #[cfg(feature = "failpoints")]
            panic_failpoint("stage::hash_write", out_key);
            sha.update(&buf);
            bytes += buf.len() as u64;
            if let Some(out) = upload.as_mut()
                && let Err(e) = out.write_all(&buf)
            {
                let _ = tx.send(Err(io::Error::other(Transient(format!(
                    "writing part {out_key:?} failed: {e}"
                )))));
                break;
            }
            if tx.send(Ok(buf)).is_err() {
                break; // the indexer stopped
            }
        }
    }));
    if let Err(panic) = run {
        let _ = tx.send(Err(panicked("hash/write", out_key, &*panic)));
    }
    Produced {
        sha256: crate::hex(sha.finish().as_ref()),
        bytes,
        upload,
    }
}

/// Reads until `buf` is full or the stream ends.
fn fill(stream: &mut (dyn Read + Send), buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match stream.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

enum State {
    Open,
    Ended,
    Failed,
}

/// The indexer's side: a `BufRead` over the producer's chunks, without copying them.
pub struct ChunkReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    free: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    state: State,
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.current.len() {
            match self.state {
                State::Ended => return Ok(&[]),
                State::Failed => return Err(io::Error::other("the stream failed earlier")),
                State::Open => {}
            }
            match self.rx.recv() {
                Ok(Ok(next)) => {
                    let used = std::mem::replace(&mut self.current, next);
                    self.pos = 0;
                    let _ = self.free.try_send(used);
                }
                Ok(Err(e)) => {
                    self.state = State::Failed;
                    return Err(e);
                }
                Err(_) => self.state = State::Ended,
            }
        }
        Ok(&self.current[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.current.len());
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        crate::read_from_buffer(self, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn consumer_sees_every_byte_and_the_producer_hashes_them() {
        let data: Vec<u8> = (0..3 * CHUNK + 123).map(|i| (i % 251) as u8).collect();
        let mut src: &[u8] = &data;
        let (seen, produced) = run(&mut src, None, "k", None, |r| {
            let mut v = Vec::new();
            r.read_to_end(&mut v).unwrap();
            v
        });
        assert!(seen == data);
        assert_eq!(produced.bytes, data.len() as u64);
        assert_eq!(produced.sha256, format!("{:x}", Sha256::digest(&data)));
    }

    #[test]
    fn producer_errors_reach_the_consumer_with_their_payload() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other(Transient("gone".into())));
                }
                let n = buf.len().min(self.0);
                self.0 -= n;
                Ok(n)
            }
        }
        let (err, _) = run(&mut Failing(CHUNK * 2), None, "k", None, |r| {
            let mut v = Vec::new();
            r.read_to_end(&mut v).unwrap_err()
        });
        assert!(crate::store::is_transient(&err));
    }

    #[test]
    fn a_panicking_decoder_fails_the_part_as_transient_instead_of_ending_it() {
        struct Panicking(usize);
        impl Read for Panicking {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    panic!("decoder bug");
                }
                let n = buf.len().min(self.0);
                self.0 -= n;
                Ok(n)
            }
        }
        let (err, _) = run(&mut Panicking(CHUNK + 5), None, "k", None, |r| {
            let mut v = Vec::new();
            r.read_to_end(&mut v).unwrap_err()
        });
        assert!(crate::store::is_transient(&err), "{err}");
        assert!(err.to_string().contains("decoder bug"), "{err}");
    }

    #[test]
    fn a_panicking_part_writer_fails_the_part_as_transient_and_returns_the_upload() {
        struct PanicsOnWrite;
        impl io::Write for PanicsOnWrite {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                panic!("writer bug");
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        impl PartUpload for PanicsOnWrite {
            fn finish(self: Box<Self>) -> io::Result<crate::store::Pending> {
                unreachable!("a failed part is aborted, not finished")
            }
            fn abort(self: Box<Self>) {}
        }
        let mut src: &[u8] = &[1u8; 1000];
        let (err, produced) = run(&mut src, Some(Box::new(PanicsOnWrite)), "k", None, |r| {
            let mut v = Vec::new();
            r.read_to_end(&mut v).unwrap_err()
        });
        assert!(crate::store::is_transient(&err), "{err}");
        assert!(err.to_string().contains("writer bug"), "{err}");
        assert!(
            produced.upload.is_some(),
            "the caller gets the upload to abort"
        );
    }

    #[test]
    fn a_consumer_that_stops_early_stops_the_producer() {
        let mut endless = io::repeat(7);
        let (_, produced) = run(&mut endless, None, "k", None, |r| {
            let mut first = [0u8; 10];
            r.read_exact(&mut first).unwrap();
        });
        assert!(produced.bytes < (2 * QUEUE as u64 + 4) * CHUNK as u64);
    }
}
