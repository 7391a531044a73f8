//! Avro object container files (Braze Currents): header, schema, and every block checked.
//!
//! The container framing (header, block count and size, sync marker) is read here so that blocks
//! can be counted, located for offsets and decompressed as streams; the schema and every record
//! are decoded by `apache-avro`. Blocks are decompressed by `decode::avro_block`, capped.

use std::collections::HashMap;
use std::io::{self, BufRead, Read};

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;

use super::{FormatError, Indexed, Offsets, Options};
use crate::decode::{AvroCodec, avro_block};
use crate::detect::AVRO_MAGIC;

const SYNC_LEN: usize = 16;

/// Counts bytes consumed and keeps the first error of the underlying stream, so that a decoder
/// or source failure is not mistaken for a broken record by `apache-avro`.
struct Tracked<R> {
    inner: R,
    pos: u64,
    error: Option<io::Error>,
}

impl<R: BufRead> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Tracked<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.error.is_some() {
            return Err(io::Error::other("the stream failed earlier"));
        }
        match self.inner.fill_buf() {
            Ok(buf) => Ok(buf),
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.error = Some(e);
                Err(copy)
            }
        }
    }
    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        self.pos += n as u64;
    }
}

impl<R> Tracked<R> {
    /// The stream's own error if there was one, else a format error with `message`.
    fn fail(&mut self, message: String) -> io::Error {
        self.error
            .take()
            .unwrap_or_else(|| FormatError::io(message))
    }
}

fn read_long(r: &mut impl Read) -> io::Result<i64> {
    let mut value: u64 = 0;
    for shift in (0..70).step_by(7) {
        let mut b = [0u8; 1];
        r.read_exact(&mut b)?;
        value |= ((b[0] & 0x7f) as u64) << shift;
        if b[0] & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "varint longer than 10 bytes",
    ))
}

fn read_bytes(r: &mut impl Read, max: u64) -> io::Result<Vec<u8>> {
    let len = read_long(r)?;
    if len < 0 || len as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("header value of {len} bytes"),
        ));
    }
    let mut v = vec![0u8; len as usize];
    r.read_exact(&mut v)?;
    Ok(v)
}

struct Header {
    schema: Schema,
    codec: AvroCodec,
    sync: [u8; SYNC_LEN],
}

fn read_header<R: BufRead>(r: &mut Tracked<R>, max: u64) -> io::Result<Header> {
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)
        .map_err(|e| r.fail(format!("Avro header is truncated: {e}")))?;
    if magic != AVRO_MAGIC {
        return Err(FormatError::io("not an Avro object container file"));
    }
    let mut meta: HashMap<String, Vec<u8>> = HashMap::new();
    loop {
        let mut count = read_long(r).map_err(|e| r.fail(format!("Avro header is broken: {e}")))?;
        if count == 0 {
            break;
        }
        if count < 0 {
            // A negative count is followed by the block's size; i64::MIN has no positive
            // counterpart (found by fuzzing).
            count = count
                .checked_neg()
                .ok_or_else(|| FormatError::io("Avro header has an impossible block count"))?;
            read_long(r).map_err(|e| r.fail(format!("Avro header is broken: {e}")))?;
        }
        for _ in 0..count {
            let key =
                read_bytes(r, max).map_err(|e| r.fail(format!("Avro header is broken: {e}")))?;
            let value =
                read_bytes(r, max).map_err(|e| r.fail(format!("Avro header is broken: {e}")))?;
            meta.insert(String::from_utf8_lossy(&key).into_owned(), value);
        }
    }
    let mut sync = [0u8; SYNC_LEN];
    r.read_exact(&mut sync)
        .map_err(|e| r.fail(format!("Avro header is truncated: {e}")))?;
    let schema_json = meta
        .get("avro.schema")
        .ok_or_else(|| FormatError::io("Avro header has no avro.schema"))?;
    let schema = Schema::parse_str(&String::from_utf8_lossy(schema_json))
        .map_err(|e| FormatError::io(format!("Avro schema cannot be parsed: {e}")))?;
    let codec_name = meta
        .get("avro.codec")
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .unwrap_or_else(|| "null".to_string());
    let codec = AvroCodec::from_name(&codec_name)
        .ok_or_else(|| FormatError::io(format!("unsupported Avro codec {codec_name:?}")))?;
    Ok(Header {
        schema,
        codec,
        sync,
    })
}

pub fn index<R: BufRead>(r: &mut R, opts: &Options) -> Indexed {
    let mut out = Indexed::default();
    let mut offsets = Offsets::new(opts.offset_interval);
    let mut t = Tracked {
        inner: r,
        pos: 0,
        error: None,
    };
    if let Err(e) = blocks(&mut t, opts, &mut out, &mut offsets) {
        out.fatal = Some(e);
    }
    out.offsets = offsets.into_vec();
    out
}

fn blocks<R: BufRead>(
    t: &mut Tracked<R>,
    opts: &Options,
    out: &mut Indexed,
    offsets: &mut Offsets,
) -> io::Result<()> {
    let max = opts.max_record_bytes;
    let header = read_header(t, max)?;
    if let Schema::Record(record) = &header.schema {
        out.columns = Some(record.fields.iter().map(|f| f.name.clone()).collect());
    } else {
        out.columns = Some(Vec::new());
    }
    if is_recursive(&header.schema, &mut Vec::new()) {
        // Decoding a recursive type recurses once per level of the data: a few megabytes of
        // forged nesting overflow the stack (found by fuzzing). Braze never writes such schemas.
        return Err(FormatError::io(
            "recursive Avro schemas (a named type that contains itself) are not supported",
        ));
    }
    let datum = GenericDatumReader::builder(&header.schema)
        .build()
        .map_err(|e| FormatError::io(format!("Avro schema cannot be used: {e}")))?;
    let mut block_no = 0u64;
    loop {
        let at_end = match t.fill_buf() {
            Ok(buf) => buf.is_empty(),
            Err(e) => {
                let message = e.to_string();
                return Err(t.fail(message));
            }
        };
        if at_end {
            return Ok(());
        }
        let block_start = t.pos;
        let truncated = |t: &mut Tracked<R>, e: io::Error| {
            t.fail(format!(
                "Avro block {block_no} at byte {block_start} is truncated or broken: {e}"
            ))
        };
        let count = read_long(t).map_err(|e| truncated(t, e))?;
        let size = read_long(t).map_err(|e| truncated(t, e))?;
        if count < 0 || size < 0 {
            return Err(FormatError::io(format!(
                "Avro block {block_no} at byte {block_start} has a negative count or size"
            )));
        }
        let (count, size) = (count as u64, size as u64);
        // Records of an empty schema take no bytes: without a bound, a forged count would spin.
        if count > max {
            return Err(FormatError::io(format!(
                "Avro block {block_no} at byte {block_start} claims {count} records, over MAX_RECORD_BYTES ({max})"
            )));
        }
        if size > max {
            return Err(FormatError::io(format!(
                "Avro block {block_no} at byte {block_start} is {size} bytes, over MAX_RECORD_BYTES ({max})"
            )));
        }
        let first_record = out.records;
        offsets.record_at(first_record, block_start);
        let block = read_block(t, &header, &datum, count, size, first_record, max)
            .map_err(|e| tag(e, block_no, block_start));
        // The stream's own failure (decoder, limit, source) explains a broken block best.
        if let Some(e) = t.error.take() {
            return Err(e);
        }
        block?;
        let mut sync = [0u8; SYNC_LEN];
        t.read_exact(&mut sync).map_err(|e| {
            t.fail(format!(
                "Avro file is truncated after block {block_no} (no sync marker): {e}"
            ))
        })?;
        if sync != header.sync {
            return Err(FormatError::io(format!(
                "Avro sync marker after block {block_no} (at byte {}) does not match the header's",
                t.pos - SYNC_LEN as u64
            )));
        }
        out.records += count;
        block_no += 1;
    }
}

/// Whether a named type refers to itself, directly or through arrays, maps and unions. `path`
/// holds the simple names of the records enclosing `schema`.
fn is_recursive<'a>(schema: &'a Schema, path: &mut Vec<&'a str>) -> bool {
    match schema {
        Schema::Ref { name } => path.contains(&name.name()),
        Schema::Record(record) => {
            path.push(record.name.name());
            let found = record.fields.iter().any(|f| is_recursive(&f.schema, path));
            path.pop();
            found
        }
        Schema::Array(array) => is_recursive(&array.items, path),
        Schema::Map(map) => is_recursive(&map.types, path),
        Schema::Union(union) => union.variants().iter().any(|v| is_recursive(v, path)),
        _ => false,
    }
}

/// Decodes the `count` records of one block from its `size` compressed bytes.
fn read_block<R: BufRead>(
    t: &mut Tracked<R>,
    header: &Header,
    datum: &GenericDatumReader<'_>,
    count: u64,
    size: u64,
    first_record: u64,
    max: u64,
) -> io::Result<()> {
    let mut compressed = (&mut *t).take(size);
    let mut data = avro_block(header.codec, &mut compressed, size, max)?;
    for i in 0..count {
        datum.read_value(&mut data).map_err(|e| {
            FormatError::io(format!(
                "record {} cannot be decoded: {e}",
                first_record + i
            ))
        })?;
    }
    let mut probe = [0u8; 1];
    if data.read(&mut probe)? != 0 {
        return Err(FormatError::io(format!(
            "the block holds more data than its {count} records"
        )));
    }
    drop(data);
    // Compressed codecs may stop before the end of their input.
    io::copy(&mut compressed, &mut io::sink())?;
    if compressed.limit() != 0 {
        return Err(FormatError::io("the block is truncated"));
    }
    Ok(())
}

/// Says which block was broken; limit errors keep their own payload.
fn tag(e: io::Error, block_no: u64, block_start: u64) -> io::Error {
    if crate::decode::limit_of(&e).is_some() {
        return e;
    }
    FormatError::io(format!(
        "Avro block {block_no} at byte {block_start} is broken: {}",
        e.get_ref()
            .map(|inner| inner.to_string())
            .unwrap_or_else(|| e.to_string())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recursive_schemas_are_refused_before_any_record_is_decoded() {
        // Found by fuzzing: a self-referencing record made decoding recurse until the stack
        // overflowed. A linked list through a union is the realistic shape of it.
        let list = Schema::parse_str(
            r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}"#,
        )
        .unwrap();
        assert!(is_recursive(&list, &mut Vec::new()));
        let flat = Schema::parse_str(
            r#"{"type":"record","name":"Send","fields":[{"name":"id","type":"string"},
                {"name":"tags","type":["null",{"type":"array","items":"string"}]}]}"#,
        )
        .unwrap();
        assert!(!is_recursive(&flat, &mut Vec::new()));
        // A whole container with the recursive schema: a clear error, no recursion.
        let mut w = apache_avro::Writer::new(&list, Vec::new()).unwrap();
        w.flush().unwrap();
        let mut bytes = w.into_inner().unwrap();
        // One block of 1,000,000 records of deep nesting (each level: union index 1).
        let mut block = vec![1u8; 200_000];
        block.push(0);
        let mut framed = Vec::new();
        for v in [1_000_000i64, block.len() as i64] {
            let mut z = ((v << 1) ^ (v >> 63)) as u64;
            loop {
                let b = (z & 0x7f) as u8;
                z >>= 7;
                if z == 0 {
                    framed.push(b);
                    break;
                }
                framed.push(b | 0x80);
            }
        }
        framed.extend_from_slice(&block);
        let sync = bytes[bytes.len() - SYNC_LEN..].to_vec();
        framed.extend_from_slice(&sync);
        bytes.extend_from_slice(&framed);
        let out = index(
            &mut &bytes[..],
            &Options {
                offset_interval: 10,
                max_record_bytes: 32 << 20,
            },
        );
        let fatal = out.fatal.expect("refused").to_string();
        assert!(fatal.contains("recursive"), "{fatal}");
    }
}
