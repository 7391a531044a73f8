//! The only place that constructs decompressors, and where every limit is enforced.
//!
//! Streams are capped while they are read: a chunk that would cross `MAX_EXPANDED_BYTES` or
//! `MAX_EXPANSION_RATIO` is never handed to the caller, so nothing past a limit is hashed,
//! indexed or written.

pub mod zip;

use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;

use crate::config::{Limits, RATIO_FLOOR_BYTES};
use crate::manifest::Compression;

/// The largest zstd window accepted (2^25 = 32 MiB): the decoder holds a window's worth of
/// memory, so this bounds it. Level 19 uses 8 MiB windows; only `--long`/`--ultra` need more.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 25;

/// Buffer size for reads from the source and for decoder input.
pub const READ_BUFFER: usize = 256 * 1024;

/// A limit crossed while streaming. Travels inside `io::Error` through decoders and parsers.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{variable} ({limit}) exceeded: {what}")]
pub struct LimitExceeded {
    pub variable: &'static str,
    pub limit: u64,
    pub what: String,
}

impl LimitExceeded {
    pub fn into_io(self) -> io::Error {
        io::Error::other(self)
    }
}

/// Finds a [`LimitExceeded`] carried by an `io::Error`.
pub fn limit_of(err: &io::Error) -> Option<&LimitExceeded> {
    err.get_ref()?.downcast_ref::<LimitExceeded>()
}

/// The expansion budget of one object, shared by the readers of all its parts (zip members,
/// Avro blocks): the object's decompressed bytes together may not exceed `MAX_EXPANDED_BYTES`,
/// nor `MAX_EXPANSION_RATIO` times the object's size (or [`RATIO_FLOOR_BYTES`], whichever is
/// larger: one floor per object, so 10,000 small members cannot each expand to the floor).
#[derive(Debug, Clone)]
pub struct Budget {
    expanded: Arc<AtomicU64>,
    expanded_cap: u64,
    ratio_cap: u64,
    ratio: u64,
}

impl Default for Budget {
    /// No limit at all (tests and tools that bound the work otherwise).
    fn default() -> Self {
        Budget {
            expanded: Arc::default(),
            expanded_cap: u64::MAX,
            ratio_cap: u64::MAX,
            ratio: u64::MAX,
        }
    }
}

impl Budget {
    /// The budget of an object of `object_size` bytes.
    pub fn new(object_size: u64, limits: &Limits) -> Self {
        Budget {
            expanded: Arc::default(),
            expanded_cap: limits.max_expanded_bytes,
            ratio_cap: object_size
                .saturating_mul(limits.max_expansion_ratio)
                .max(RATIO_FLOOR_BYTES),
            ratio: limits.max_expansion_ratio,
        }
    }

    /// Decompressed bytes charged so far.
    pub fn expanded(&self) -> u64 {
        self.expanded.load(Ordering::Relaxed)
    }

    /// The most decompressed bytes the object may produce.
    pub fn cap(&self) -> u64 {
        self.expanded_cap.min(self.ratio_cap)
    }

    /// Checks, before anything is decoded, that `declared` decompressed bytes (what an archive's
    /// directory announces) fit in the budget.
    pub fn check_declared(&self, declared: u64) -> Result<(), LimitExceeded> {
        self.over(declared, "the archive declares")
    }

    /// Charges `n` decompressed bytes; `Err` (and nothing to hand out) once the budget is
    /// crossed. Call it before handing the bytes on.
    pub fn charge(&self, n: u64) -> io::Result<()> {
        let total = self
            .expanded
            .fetch_add(n, Ordering::Relaxed)
            .saturating_add(n);
        self.over(total, "the object expands to")
            .map_err(LimitExceeded::into_io)
    }

    fn over(&self, total: u64, what: &str) -> Result<(), LimitExceeded> {
        if total > self.ratio_cap && self.ratio_cap < self.expanded_cap {
            return Err(LimitExceeded {
                variable: "MAX_EXPANSION_RATIO",
                limit: self.ratio,
                what: format!(
                    "{what} more than {} bytes, over {}x the object's size",
                    self.ratio_cap, self.ratio
                ),
            });
        }
        if total > self.expanded_cap {
            return Err(LimitExceeded {
                variable: "MAX_EXPANDED_BYTES",
                limit: self.expanded_cap,
                what: format!("{what} more than {} bytes", self.expanded_cap),
            });
        }
        Ok(())
    }
}

/// A reader that charges every byte it produces to the object's [`Budget`] and stops with
/// [`LimitExceeded`] before handing out the bytes that cross it.
pub struct Capped<R> {
    inner: R,
    budget: Budget,
}

impl<R: Read> Capped<R> {
    pub fn new(inner: R, budget: &Budget) -> Self {
        Capped {
            inner,
            budget: budget.clone(),
        }
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.budget.charge(n as u64)?;
        Ok(n)
    }
}

/// Checks the object size against `MAX_OBJECT_BYTES` before anything is read.
pub fn check_object_size(size: u64, limits: &Limits) -> Result<(), LimitExceeded> {
    if size > limits.max_object_bytes {
        return Err(LimitExceeded {
            variable: "MAX_OBJECT_BYTES",
            limit: limits.max_object_bytes,
            what: format!("the object is {size} bytes"),
        });
    }
    Ok(())
}

/// Opens the decompressed stream of a single-stream object (gzip, possibly multi-member; zstd,
/// possibly multi-frame; or none), capped by the object's budget.
pub fn open_stream<'a>(
    compression: Compression,
    raw: Box<dyn Read + Send + 'a>,
    budget: &Budget,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    let raw = BufReader::with_capacity(READ_BUFFER, raw);
    Ok(match compression {
        Compression::Gzip => Box::new(Capped::new(
            flate2::bufread::MultiGzDecoder::new(raw),
            budget,
        )),
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(raw)?;
            // Frames may ask for a window of up to 2^31: bounded, so is the decoder's memory.
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(Capped::new(decoder, budget))
        }
        Compression::None => Box::new(Capped::new(raw, budget)),
        Compression::Zip => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "zip archives are read member by member through decode::zip",
            ));
        }
    })
}

/// The block codecs of Avro object container files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvroCodec {
    Null,
    Deflate,
    Snappy,
    Zstandard,
}

impl AvroCodec {
    pub fn from_name(name: &str) -> Option<AvroCodec> {
        match name {
            "null" => Some(AvroCodec::Null),
            "deflate" => Some(AvroCodec::Deflate),
            "snappy" => Some(AvroCodec::Snappy),
            "zstandard" => Some(AvroCodec::Zstandard),
            _ => None,
        }
    }
}

/// A reader over the decompressed data of one Avro block whose `block` reader yields exactly the
/// block's compressed bytes.
///
/// Every decompressed byte of a deflate, zstandard or snappy block is charged to the object's
/// `budget` before it is handed out (`MAX_EXPANDED_BYTES`, `MAX_EXPANSION_RATIO`); the bytes of a
/// `null` block are the object's own bytes, already counted by the stream they arrive on.
/// Deflate, zstandard and null blocks are streamed, whatever their size. Snappy compresses a block
/// as a whole (raw snappy, then the big-endian CRC-32 of the data), so a snappy block is held in
/// memory: its compressed and its decompressed size may each be at most `max_block`
/// (`MAX_RECORD_BYTES`), and its decompressed size is charged before it is allocated.
pub fn avro_block<'a>(
    codec: AvroCodec,
    block: impl BufRead + 'a,
    compressed_len: u64,
    max_block: u64,
    budget: &Budget,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match codec {
        AvroCodec::Null => Box::new(block),
        AvroCodec::Deflate => Box::new(Capped::new(
            flate2::bufread::DeflateDecoder::new(block),
            budget,
        )),
        AvroCodec::Zstandard => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(block)?;
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(Capped::new(decoder, budget))
        }
        AvroCodec::Snappy => {
            if compressed_len < 4 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("snappy block of {compressed_len} bytes has no CRC-32"),
                ));
            }
            if compressed_len > max_block {
                return Err(LimitExceeded {
                    variable: "MAX_RECORD_BYTES",
                    limit: max_block,
                    what: format!(
                        "a snappy Avro block (held whole) is {compressed_len} bytes compressed"
                    ),
                }
                .into_io());
            }
            // Grows with the bytes that really arrive, not with the declared size.
            let mut data = Vec::new();
            block.take(compressed_len).read_to_end(&mut data)?;
            if (data.len() as u64) < compressed_len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "snappy block is truncated",
                ));
            }
            let (payload, crc) = data.split_at(data.len() - 4);
            let len = snap::raw::decompress_len(payload)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if len as u64 > max_block {
                return Err(LimitExceeded {
                    variable: "MAX_RECORD_BYTES",
                    limit: max_block,
                    what: format!("a snappy Avro block (held whole) expands to {len} bytes"),
                }
                .into_io());
            }
            budget.charge(len as u64)?;
            let out = snap::raw::Decoder::new()
                .decompress_vec(payload)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let want = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
            if crc32fast::hash(&out) != want {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "snappy block CRC-32 does not match its data",
                ));
            }
            Box::new(io::Cursor::new(out))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn expand(gz: &[u8], budget: &Budget) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        open_stream(
            Compression::Gzip,
            Box::new(io::Cursor::new(gz.to_vec())),
            budget,
        )?
        .read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn capped_stops_before_handing_out_the_crossing_bytes() {
        let data = vec![b'a'; 3 << 20];
        let gz = gzip(&data);
        let limits = Limits {
            max_expanded_bytes: 2 << 20,
            max_expansion_ratio: 1 << 30,
            ..Limits::default()
        };
        let budget = Budget::new(gz.len() as u64, &limits);
        let mut r = open_stream(Compression::Gzip, Box::new(io::Cursor::new(gz)), &budget).unwrap();
        let mut got = 0u64;
        let mut buf = [0u8; 8192];
        let err = loop {
            match r.read(&mut buf) {
                Ok(0) => panic!("limit not enforced"),
                Ok(n) => got += n as u64,
                Err(e) => break e,
            }
        };
        assert!(got <= 2 << 20, "handed out {got} bytes");
        assert_eq!(limit_of(&err).unwrap().variable, "MAX_EXPANDED_BYTES");
    }

    #[test]
    fn ratio_is_enforced_above_the_floor_only() {
        let limits = Limits {
            max_expansion_ratio: 10,
            ..Limits::default()
        };
        // 512 KiB of zeros: huge ratio, but under the 1 MiB floor.
        let small = gzip(&vec![0u8; 512 << 10]);
        let out = expand(&small, &Budget::new(small.len() as u64, &limits)).unwrap();
        assert_eq!(out.len(), 512 << 10);
        let big = gzip(&vec![0u8; 8 << 20]);
        let err = expand(&big, &Budget::new(big.len() as u64, &limits)).unwrap_err();
        assert_eq!(limit_of(&err).unwrap().variable, "MAX_EXPANSION_RATIO");
    }

    #[test]
    fn expansion_ratio_bounds_the_whole_object_not_each_stream() {
        // Many small streams, each under the floor, share one object budget: together they
        // cross it (10,000 small zip members cannot each expand to the floor).
        let limits = Limits {
            max_expansion_ratio: 10,
            ..Limits::default()
        };
        let member = gzip(&vec![0u8; 256 << 10]);
        let budget = Budget::new(8 * member.len() as u64, &limits);
        let results: Vec<bool> = (0..8).map(|_| expand(&member, &budget).is_ok()).collect();
        assert_eq!(results[..4], [true; 4], "{results:?}");
        let err = expand(&member, &budget).unwrap_err();
        assert_eq!(limit_of(&err).unwrap().variable, "MAX_EXPANSION_RATIO");
        assert!(budget.check_declared(2 << 20).is_err());
        assert!(budget.check_declared(1 << 20).is_ok());
    }
}
