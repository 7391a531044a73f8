//! Avro object container files (Braze Currents): header, schema, and every block checked.
//!
//! The container framing (header, block count and size, sync marker) is read here so that blocks
//! can be counted, located for offsets and decompressed as streams (`decode::avro_block`, charged
//! to the object's expansion budget). The schema is parsed by `apache-avro`; records are checked
//! here, as a stream through a small window, against the schema compiled into `Node`s: no values
//! are built, so a block of any size is read in bounded memory and in time linear in its bytes.

use std::collections::HashMap;
use std::io::{self, BufRead, Read};

use std::rc::Rc;

use apache_avro::Schema;
use apache_avro::schema::{
    DecimalSchema, InnerDecimalSchema, Name, NamesRef, NamespaceRef, ResolvedSchema, UuidSchema,
};

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
        crate::read_from_buffer(self, buf)
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

/// Records of a schema whose values always take no bytes (`null`, an empty record, `fixed` of
/// size 0) are counted without being decoded; a block may claim at most this many of them.
pub const MAX_ZERO_BYTE_RECORDS: u64 = 1 << 24;

/// Size of the window the decompressed data of a block is read through.
const WINDOW: usize = 64 * 1024;

/// A schema compiled for checking records without building values. Types whose values always take
/// no bytes compile to `None` and are skipped, so every node that is visited consumes at least one
/// byte: the work per record is linear in its bytes whatever the schema.
///
/// Logical types are read as their underlying type: a `uuid` string that is not a UUID, a
/// `decimal` of any bytes or a `timestamp-millis` of any long are valid data of the file.
#[derive(Debug)]
enum Node {
    Boolean,
    Int,
    Long,
    /// `float` (4), `double` (8) and `fixed` (its size, not 0) are skipped.
    Skip(u64),
    Bytes,
    String,
    Enum(u64),
    Array(Option<Rc<Node>>),
    Map(Option<Rc<Node>>),
    Union(Vec<Option<Rc<Node>>>),
    Record(Vec<Rc<Node>>),
}

/// Compiles a parsed schema; `None` when its values take no bytes.
fn compile_schema(schema: &Schema) -> io::Result<Option<Rc<Node>>> {
    let resolved = ResolvedSchema::try_from(schema)
        .map_err(|e| FormatError::io(format!("Avro schema cannot be used: {e}")))?;
    Compiler {
        names: resolved.get_names(),
        named: HashMap::new(),
        open: Vec::new(),
    }
    .compile(schema, None)
}

struct Compiler<'a, 's> {
    names: &'a NamesRef<'s>,
    /// Named types already compiled: each is compiled once, however often it is referred to.
    named: HashMap<Name, Option<Rc<Node>>>,
    /// Records being compiled (a reference to one of them would make the schema recursive).
    open: Vec<Name>,
}

impl Compiler<'_, '_> {
    fn compile(
        &mut self,
        schema: &Schema,
        namespace: NamespaceRef<'_>,
    ) -> io::Result<Option<Rc<Node>>> {
        let fixed = |size: usize| (size > 0).then(|| Rc::new(Node::Skip(size as u64)));
        let node = match schema {
            Schema::Null => None,
            Schema::Boolean => Some(Rc::new(Node::Boolean)),
            Schema::Int | Schema::Date | Schema::TimeMillis => Some(Rc::new(Node::Int)),
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => Some(Rc::new(Node::Long)),
            Schema::Float => Some(Rc::new(Node::Skip(4))),
            Schema::Double => Some(Rc::new(Node::Skip(8))),
            Schema::Bytes
            | Schema::BigDecimal
            | Schema::Uuid(UuidSchema::Bytes)
            | Schema::Decimal(DecimalSchema {
                inner: InnerDecimalSchema::Bytes,
                ..
            }) => Some(Rc::new(Node::Bytes)),
            Schema::String | Schema::Uuid(UuidSchema::String) => Some(Rc::new(Node::String)),
            Schema::Fixed(f)
            | Schema::Uuid(UuidSchema::Fixed(f))
            | Schema::Duration(f)
            | Schema::Decimal(DecimalSchema {
                inner: InnerDecimalSchema::Fixed(f),
                ..
            }) => fixed(f.size),
            Schema::Enum(e) => Some(Rc::new(Node::Enum(e.symbols.len() as u64))),
            Schema::Array(a) => Some(Rc::new(Node::Array(self.compile(&a.items, namespace)?))),
            Schema::Map(m) => Some(Rc::new(Node::Map(self.compile(&m.types, namespace)?))),
            Schema::Union(u) => Some(Rc::new(Node::Union(
                u.variants()
                    .iter()
                    .map(|v| self.compile(v, namespace))
                    .collect::<io::Result<_>>()?,
            ))),
            Schema::Record(record) => {
                let name = record.name.fully_qualified_name(namespace).into_owned();
                if let Some(node) = self.named.get(&name) {
                    return Ok(node.clone());
                }
                self.open.push(name.clone());
                let mut fields = Vec::new();
                for field in &record.fields {
                    if let Some(node) = self.compile(&field.schema, name.namespace())? {
                        fields.push(node);
                    }
                }
                self.open.pop();
                let node = (!fields.is_empty()).then(|| Rc::new(Node::Record(fields)));
                self.named.insert(name, node.clone());
                node
            }
            Schema::Ref { name } => {
                let name = name.fully_qualified_name(namespace).into_owned();
                if let Some(node) = self.named.get(&name) {
                    return Ok(node.clone());
                }
                if self.open.contains(&name) {
                    return Err(FormatError::io(format!(
                        "recursive Avro schemas are not supported ({name:?} contains itself)"
                    )));
                }
                let target = self.names.get(&name).ok_or_else(|| {
                    FormatError::io(format!("Avro schema refers to an unknown type {name:?}"))
                })?;
                let node = self.compile(target, name.namespace())?;
                self.named.insert(name, node.clone());
                node
            }
        };
        Ok(node)
    }
}

/// The decompressed data of one block, read through a window; checks records against a [`Node`].
struct Src<'a, 'w> {
    inner: Box<dyn Read + 'a>,
    buf: &'w mut [u8],
    pos: usize,
    end: usize,
}

fn bad(message: impl Into<String>) -> io::Error {
    FormatError::io(message)
}

fn ends() -> io::Error {
    bad("the block's data ends inside the record")
}

impl<'a, 'w> Src<'a, 'w> {
    fn new(inner: Box<dyn Read + 'a>, buf: &'w mut [u8]) -> Self {
        Src {
            inner,
            buf,
            pos: 0,
            end: 0,
        }
    }

    /// Moves the unread bytes to the front of the window and reads more after them; `false` at
    /// the end of the data.
    #[cold]
    fn fill(&mut self) -> io::Result<bool> {
        self.buf.copy_within(self.pos..self.end, 0);
        self.end -= self.pos;
        self.pos = 0;
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn at_end(&mut self) -> io::Result<bool> {
        Ok(self.pos == self.end && !self.fill()?)
    }

    #[inline]
    fn byte(&mut self) -> io::Result<u8> {
        if self.pos == self.end && !self.fill()? {
            return Err(ends());
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    /// A zigzag varint of at most 10 bytes, as `apache-avro` reads it.
    #[inline]
    fn long(&mut self) -> io::Result<i64> {
        let mut z: u64 = 0;
        if self.end - self.pos >= 10 {
            let bytes = &self.buf[self.pos..self.pos + 10];
            for (i, &b) in bytes.iter().enumerate() {
                z |= u64::from(b & 0x7f) << (7 * i);
                if b & 0x80 == 0 {
                    self.pos += i + 1;
                    return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
                }
            }
        } else {
            for i in 0..10 {
                let b = self.byte()?;
                z |= u64::from(b & 0x7f) << (7 * i);
                if b & 0x80 == 0 {
                    return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
                }
            }
        }
        Err(bad("a varint is longer than 10 bytes"))
    }

    fn len(&mut self) -> io::Result<u64> {
        let n = self.long()?;
        u64::try_from(n).map_err(|_| bad(format!("negative length {n}")))
    }

    fn skip(&mut self, mut n: u64) -> io::Result<()> {
        loop {
            let avail = (self.end - self.pos) as u64;
            if avail >= n {
                self.pos += n as usize;
                return Ok(());
            }
            n -= avail;
            self.pos = self.end;
            if !self.fill()? {
                return Err(ends());
            }
        }
    }

    /// Checks that the next `n` bytes are UTF-8, in pieces when they are not all in the window.
    fn utf8(&mut self, mut n: u64) -> io::Result<()> {
        let invalid = || bad("a string is not valid UTF-8");
        loop {
            let avail = self.end - self.pos;
            if avail as u64 >= n {
                let end = self.pos + n as usize;
                simdutf8::basic::from_utf8(&self.buf[self.pos..end]).map_err(|_| invalid())?;
                self.pos = end;
                return Ok(());
            }
            // All of the window belongs to the string; a character cut by its end is checked
            // once the next read brings the rest of it to the front.
            let good = match simdutf8::compat::from_utf8(&self.buf[self.pos..self.end]) {
                Ok(_) => avail,
                Err(e) if e.error_len().is_none() => e.valid_up_to(),
                Err(_) => return Err(invalid()),
            };
            self.pos += good;
            n -= good as u64;
            if !self.fill()? {
                return Err(ends());
            }
        }
    }

    /// The number of items in the next block of an array or map (0 at its end).
    fn items(&mut self) -> io::Result<u64> {
        let n = self.long()?;
        if n < 0 {
            // A negative count is followed by the block's size in bytes.
            self.long()?;
        }
        Ok(n.unsigned_abs())
    }

    fn value(&mut self, node: &Node) -> io::Result<()> {
        match node {
            Node::Boolean => {
                let b = self.byte()?;
                if b > 1 {
                    return Err(bad(format!("boolean byte {b}")));
                }
            }
            Node::Int => {
                let v = self.long()?;
                if i32::try_from(v).is_err() {
                    return Err(bad(format!("int {v} is out of range")));
                }
            }
            Node::Long => {
                self.long()?;
            }
            Node::Skip(n) => self.skip(*n)?,
            Node::Bytes => {
                let n = self.len()?;
                self.skip(n)?;
            }
            Node::String => {
                let n = self.len()?;
                self.utf8(n)?;
            }
            Node::Enum(symbols) => {
                let i = self.long()?;
                if i < 0 || i as u64 >= *symbols || i32::try_from(i).is_err() {
                    return Err(bad(format!("enum index {i} of {symbols} symbols")));
                }
            }
            Node::Array(items) => loop {
                let n = self.items()?;
                if n == 0 {
                    break;
                }
                if let Some(item) = items {
                    for _ in 0..n {
                        self.value(item)?;
                    }
                }
            },
            Node::Map(values) => loop {
                let n = self.items()?;
                if n == 0 {
                    break;
                }
                for _ in 0..n {
                    let k = self.len()?;
                    self.utf8(k)?;
                    if let Some(v) = values {
                        self.value(v)?;
                    }
                }
            },
            Node::Union(variants) => {
                let i = self.long()?;
                match usize::try_from(i).ok().and_then(|i| variants.get(i)) {
                    Some(Some(v)) => self.value(v)?,
                    Some(None) => {}
                    None => {
                        return Err(bad(format!(
                            "union index {i} of {} variants",
                            variants.len()
                        )));
                    }
                }
            }
            Node::Record(fields) => {
                for f in fields {
                    self.value(f)?;
                }
            }
        }
        Ok(())
    }
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

/// Lowercase hex SHA-256 of the schema's Parsing Canonical Form (the Avro specification's
/// schema fingerprint, SHA-256 flavour).
pub fn schema_fingerprint(schema: &Schema) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(schema.canonical_form().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn blocks<R: BufRead>(
    t: &mut Tracked<R>,
    opts: &Options,
    out: &mut Indexed,
    offsets: &mut Offsets,
) -> io::Result<()> {
    let max = opts.max_record_bytes;
    let header = read_header(t, max)?;
    out.schema_fingerprint = Some(schema_fingerprint(&header.schema));
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
    let record = compile_schema(&header.schema)?;
    // One window for the decompressed data of every block.
    let mut window = vec![0u8; WINDOW].into_boxed_slice();
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
        // Records of a schema that takes no bytes are counted, not decoded (there is nothing to
        // decode), so a forged count costs no time; it is still bounded.
        if record.is_none() && count > MAX_ZERO_BYTE_RECORDS {
            return Err(FormatError::io(format!(
                "Avro block {block_no} at byte {block_start} claims {count} records of a schema that takes no bytes (at most {MAX_ZERO_BYTE_RECORDS} per block)"
            )));
        }
        let first_record = out.records;
        offsets.record_at(first_record, block_start);
        let block = read_block(
            t,
            &header,
            record.as_deref(),
            count,
            size,
            opts,
            &mut window,
        )
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

/// Decodes the `count` records of one block from its `size` compressed bytes, as a stream: the
/// block is never held whole (except a snappy one, see `decode::avro_block`).
fn read_block<R: BufRead>(
    t: &mut Tracked<R>,
    header: &Header,
    record: Option<&Node>,
    count: u64,
    size: u64,
    opts: &Options,
    window: &mut [u8],
) -> io::Result<()> {
    let mut compressed = (&mut *t).take(size);
    let data = avro_block(
        header.codec,
        &mut compressed,
        size,
        opts.max_record_bytes,
        &opts.budget,
    )?;
    let mut src = Src::new(data, window);
    if let Some(record) = record {
        for i in 0..count {
            src.value(record).map_err(|e| match e.get_ref() {
                Some(inner) if inner.is::<FormatError>() => FormatError::io(format!(
                    "record {i} of the block's {count} cannot be decoded: {inner}"
                )),
                _ => e,
            })?;
        }
    }
    if !src.at_end()? {
        return Err(FormatError::io(format!(
            "the block holds more data than its {count} records"
        )));
    }
    drop(src);
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
    use crate::config::Limits;
    use crate::decode::{Budget, limit_of};
    use apache_avro::types::Value as AV;
    use std::io::Write;
    use std::time::{Duration, Instant};

    fn zz(v: i64, out: &mut Vec<u8>) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    const SYNC: [u8; SYNC_LEN] = *b"0123456789abcdef";

    /// An object container written by hand: `blocks` are (declared count, uncompressed data).
    fn container(schema: &str, codec: &str, blocks: &[(i64, Vec<u8>)]) -> Vec<u8> {
        let mut out = b"Obj\x01".to_vec();
        zz(2, &mut out);
        for (k, v) in [
            ("avro.schema", schema.as_bytes()),
            ("avro.codec", codec.as_bytes()),
        ] {
            zz(k.len() as i64, &mut out);
            out.extend_from_slice(k.as_bytes());
            zz(v.len() as i64, &mut out);
            out.extend_from_slice(v);
        }
        zz(0, &mut out);
        out.extend_from_slice(&SYNC);
        for (count, data) in blocks {
            let packed = match codec {
                "null" => data.clone(),
                "deflate" => {
                    let mut e = flate2::write::DeflateEncoder::new(
                        Vec::new(),
                        flate2::Compression::default(),
                    );
                    e.write_all(data).unwrap();
                    e.finish().unwrap()
                }
                "zstandard" => zstd::encode_all(&data[..], 3).unwrap(),
                "snappy" => {
                    let mut p = snap::raw::Encoder::new().compress_vec(data).unwrap();
                    p.extend_from_slice(&crc32fast::hash(data).to_be_bytes());
                    p
                }
                other => panic!("codec {other}"),
            };
            zz(*count, &mut out);
            zz(packed.len() as i64, &mut out);
            out.extend_from_slice(&packed);
            out.extend_from_slice(&SYNC);
        }
        out
    }

    fn opts() -> Options {
        Options {
            offset_interval: 10,
            max_record_bytes: 1 << 20,
            budget: Budget::default(),
        }
    }

    fn run(bytes: &[u8], opts: &Options) -> Indexed {
        index(&mut io::BufReader::with_capacity(4096, bytes), opts)
    }

    /// Every kind of type, logical types, named types referred to by short names in namespaces.
    const ALL_TYPES: &str = r#"{"type":"record","name":"Event","namespace":"a.b","fields":[
        {"name":"b","type":"boolean"},{"name":"i","type":"int"},{"name":"l","type":"long"},
        {"name":"f","type":"float"},{"name":"d","type":"double"},{"name":"by","type":"bytes"},
        {"name":"s","type":"string"},{"name":"n","type":"null"},
        {"name":"fx","type":{"type":"fixed","name":"Hash","size":3}},
        {"name":"e","type":{"type":"enum","name":"Color","symbols":["RED","GREEN"]}},
        {"name":"arr","type":{"type":"array","items":"string"}},
        {"name":"m","type":{"type":"map","values":"long"}},
        {"name":"u","type":["null","string","Color"]},
        {"name":"inner","type":{"type":"record","name":"Inner","namespace":"c","fields":[
            {"name":"h","type":"a.b.Hash"},{"name":"empty","type":{"type":"record","name":"Empty","fields":[]}}]}},
        {"name":"again","type":"c.Inner"},
        {"name":"uuid","type":{"type":"string","logicalType":"uuid"}},
        {"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":4,"scale":2}},
        {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"date","type":{"type":"int","logicalType":"date"}}
    ]}"#;

    fn all_types_value(i: i64) -> AV {
        let inner = AV::Record(vec![
            ("h".into(), AV::Fixed(3, vec![1, 2, 3])),
            ("empty".into(), AV::Record(vec![])),
        ]);
        AV::Record(vec![
            ("b".into(), AV::Boolean(i % 2 == 0)),
            ("i".into(), AV::Int(-(i as i32) * 1000)),
            ("l".into(), AV::Long(i << 40)),
            ("f".into(), AV::Float(1.5)),
            ("d".into(), AV::Double(-2.25)),
            ("by".into(), AV::Bytes(vec![0xff; i as usize % 5])),
            ("s".into(), AV::String("été ✓ 🎉".repeat(i as usize % 4))),
            ("n".into(), AV::Null),
            ("fx".into(), AV::Fixed(3, vec![9, 8, 7])),
            ("e".into(), AV::Enum(1, "GREEN".into())),
            (
                "arr".into(),
                AV::Array(vec![AV::String("x".into()); i as usize % 3]),
            ),
            (
                "m".into(),
                AV::Map([("k".to_string(), AV::Long(i))].into_iter().collect()),
            ),
            (
                "u".into(),
                AV::Union(2, Box::new(AV::Enum(0, "RED".into()))),
            ),
            ("inner".into(), inner.clone()),
            ("again".into(), inner),
            (
                "uuid".into(),
                AV::Uuid(apache_avro::Uuid::from_u128(i as u128)),
            ),
            (
                "dec".into(),
                AV::Decimal(apache_avro::Decimal::from(vec![1u8, 2])),
            ),
            ("ts".into(), AV::TimestampMillis(1_700_000_000_000 + i)),
            ("date".into(), AV::Date(19_000)),
        ])
    }

    #[test]
    fn every_type_written_by_apache_avro_is_read_with_each_codec() {
        let schema = Schema::parse_str(ALL_TYPES).unwrap();
        for codec in ["null", "deflate", "snappy", "zstandard"] {
            let mut w = apache_avro::Writer::builder()
                .schema(&schema)
                .writer(Vec::new())
                .codec(match codec {
                    "null" => apache_avro::Codec::Null,
                    "deflate" => apache_avro::Codec::Deflate(Default::default()),
                    "snappy" => apache_avro::Codec::Snappy,
                    _ => apache_avro::Codec::Zstandard(Default::default()),
                })
                .build()
                .unwrap();
            for i in 0..250 {
                w.append_value(all_types_value(i)).unwrap();
                if i % 100 == 99 {
                    w.flush().unwrap();
                }
            }
            let bytes = w.into_inner().unwrap();
            let out = run(&bytes, &opts());
            assert!(out.fatal.is_none(), "{codec}: {:?}", out.fatal);
            assert_eq!(out.records, 250, "{codec}");
            assert_eq!(out.columns.as_ref().unwrap().len(), 19, "{codec}");
        }
    }

    #[test]
    fn broken_records_are_found_wherever_the_window_cuts_them() {
        // 40,000 records (several windows): whatever the window boundaries, every record reads;
        // a record made invalid in the middle is found and named.
        let schema = Schema::parse_str(ALL_TYPES).unwrap();
        let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
            .build()
            .unwrap();
        let mut data = Vec::new();
        let mut starts = Vec::new();
        for i in 0..40_000 {
            starts.push(data.len());
            writer.write_value(&mut data, all_types_value(i)).unwrap();
        }
        assert!(data.len() > 4 * WINDOW);
        let good = container(ALL_TYPES, "deflate", &[(40_000, data.clone())]);
        let out = run(&good, &opts());
        assert!(out.fatal.is_none(), "{:?}", out.fatal);
        assert_eq!(out.records, 40_000);
        // Record 30,001's boolean (its first byte) set to 2.
        let mut bad = data.clone();
        bad[starts[30_001]] = 2;
        let out = run(&container(ALL_TYPES, "deflate", &[(40_000, bad)]), &opts());
        let fatal = out.fatal.expect("invalid boolean").to_string();
        assert!(
            fatal.contains("record 30001 ") && fatal.contains("boolean"),
            "{fatal}"
        );
        // Fewer records declared than written; more declared than written.
        for (count, want) in [(39_999, "more data than"), (40_001, "ends inside")] {
            let out = run(
                &container(ALL_TYPES, "null", &[(count, data.clone())]),
                &opts(),
            );
            let fatal = out.fatal.expect("miscounted").to_string();
            assert!(fatal.contains(want), "{count}: {fatal}");
        }
    }

    #[test]
    fn mutated_records_are_accepted_exactly_when_apache_avro_accepts_them() {
        // Differential check against apache-avro's own decoder (which builds values), on a schema
        // without logical types: random byte changes in a block of 5 records.
        let schema_json = r#"{"type":"record","name":"R","namespace":"n","fields":[
            {"name":"b","type":"boolean"},{"name":"i","type":"int"},{"name":"s","type":"string"},
            {"name":"f","type":"float"},{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}},
            {"name":"u","type":["null","long",{"type":"fixed","name":"F","size":2}]},
            {"name":"a","type":{"type":"array","items":["null","string"]}},
            {"name":"m","type":{"type":"map","values":"E"}}]}"#;
        let schema = Schema::parse_str(schema_json).unwrap();
        let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
            .build()
            .unwrap();
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
            .build()
            .unwrap();
        let mut data = Vec::new();
        for i in 0..5i64 {
            let value = AV::Record(vec![
                ("b".into(), AV::Boolean(i % 2 == 1)),
                ("i".into(), AV::Int(i as i32 * 1_000_003)),
                ("s".into(), AV::String("é".repeat(i as usize))),
                ("f".into(), AV::Float(0.5)),
                ("e".into(), AV::Enum(2, "C".into())),
                ("u".into(), AV::Union(2, Box::new(AV::Fixed(2, vec![7, 7])))),
                (
                    "a".into(),
                    AV::Array(vec![AV::Union(1, Box::new(AV::String("x".into())))]),
                ),
                (
                    "m".into(),
                    AV::Map([("k".to_string(), AV::Enum(1, "B".into()))].into()),
                ),
            ]);
            writer.write_value(&mut data, value).unwrap();
        }
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..3000 {
            let mut block = data.clone();
            for _ in 0..1 + next() % 2 {
                let at = (next() % block.len() as u64) as usize;
                block[at] = next() as u8;
            }
            let ours = run(
                &container(schema_json, "null", &[(5, block.clone())]),
                &opts(),
            )
            .fatal
            .is_none();
            let mut r = &block[..];
            let theirs = (0..5).all(|_| reader.read_value(&mut r).is_ok()) && r.is_empty();
            assert_eq!(
                ours, theirs,
                "ours: {ours}, apache-avro: {theirs}: {block:?}"
            );
            if ours {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        assert!(accepted > 100 && refused > 100, "{accepted} {refused}");
    }

    #[test]
    fn utf8_is_checked_across_window_boundaries() {
        // One string of 3-byte characters longer than the window: read in pieces, characters cut
        // by the window's end are put back together.
        let schema = r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"}]}"#;
        let text = "✓".repeat(3 * WINDOW / 3 + 7);
        let mut data = Vec::new();
        for shift in 0..3 {
            let s = &text[..text.len() - 3 * shift];
            zz(s.len() as i64, &mut data);
            data.extend_from_slice(s.as_bytes());
        }
        let out = run(
            &container(schema, "zstandard", &[(3, data.clone())]),
            &opts(),
        );
        assert!(out.fatal.is_none(), "{:?}", out.fatal);
        assert_eq!(out.records, 3);
        // A continuation byte turned into ASCII far inside the long string.
        let mut bad = data;
        bad[2 * WINDOW + 2] = b'x';
        let out = run(&container(schema, "zstandard", &[(3, bad)]), &opts());
        let fatal = out.fatal.expect("invalid UTF-8").to_string();
        assert!(fatal.contains("UTF-8"), "{fatal}");
    }

    #[test]
    fn logical_types_with_values_that_do_not_fit_are_read_as_their_underlying_type() {
        let schema = r#"{"type":"record","name":"R","fields":[
            {"name":"id","type":{"type":"string","logicalType":"uuid"}},
            {"name":"fid","type":{"type":"fixed","name":"F","size":16,"logicalType":"uuid"}},
            {"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":2,"scale":1}},
            {"name":"big","type":{"type":"bytes","logicalType":"big-decimal"}},
            {"name":"dur","type":{"type":"fixed","name":"D","size":12,"logicalType":"duration"}},
            {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
            {"name":"t","type":{"type":"int","logicalType":"time-millis"}},
            {"name":"day","type":{"type":"int","logicalType":"date"}}]}"#;
        let mut record = Vec::new();
        zz(10, &mut record);
        record.extend_from_slice(b"not-a-uuid");
        record.extend_from_slice(&[0xff; 16]);
        zz(9, &mut record);
        record.extend_from_slice(&[0x7f; 9]); // far more digits than the precision
        zz(1, &mut record);
        record.push(0xff); // not a big-decimal encoding
        record.extend_from_slice(&[0xff; 12]);
        zz(i64::MIN, &mut record);
        zz(-1, &mut record);
        zz(i32::MAX as i64, &mut record);
        let bytes = container(schema, "deflate", &[(2, record.repeat(2))]);
        // apache-avro's own reader refuses the file: this is what the indexer must not do.
        assert!(
            apache_avro::Reader::new(&bytes[..])
                .unwrap()
                .any(|r| r.is_err())
        );
        let out = run(&bytes, &opts());
        assert!(out.fatal.is_none(), "{:?}", out.fatal);
        assert_eq!(out.records, 2);
        assert_eq!(
            out.columns.unwrap(),
            ["id", "fid", "dec", "big", "dur", "ts", "t", "day"]
        );
    }

    #[test]
    fn records_that_take_no_bytes_are_counted_not_decoded() {
        // An empty record, a record of nulls and empty records, and a bare null: nothing to
        // decode; a forged count costs no time but is bounded.
        for schema in [
            r#"{"type":"record","name":"E","fields":[]}"#,
            r#"{"type":"record","name":"N","fields":[{"name":"a","type":"null"},
                {"name":"b","type":{"type":"record","name":"E","fields":[]}},
                {"name":"c","type":{"type":"fixed","name":"Z","size":0}},{"name":"d","type":"E"}]}"#,
            r#""null""#,
        ] {
            let started = Instant::now();
            let blocks = vec![(MAX_ZERO_BYTE_RECORDS as i64, Vec::new()); 1000];
            let out = run(&container(schema, "null", &blocks), &opts());
            assert!(out.fatal.is_none(), "{schema}: {:?}", out.fatal);
            assert_eq!(out.records, 1000 * MAX_ZERO_BYTE_RECORDS, "{schema}");
            assert!(started.elapsed() < Duration::from_secs(2), "{schema}");
            let over = container(
                schema,
                "null",
                &[(MAX_ZERO_BYTE_RECORDS as i64 + 1, vec![])],
            );
            let fatal = run(&over, &opts()).fatal.expect("bounded").to_string();
            assert!(fatal.contains("takes no bytes"), "{fatal}");
            // Such records have no bytes: a block with data is broken.
            let out = run(&container(schema, "null", &[(1, vec![0])]), &opts());
            let fatal = out.fatal.expect("extra data").to_string();
            assert!(fatal.contains("more data than its 1 records"), "{fatal}");
        }
    }

    #[test]
    fn forged_item_counts_of_values_that_take_no_bytes_do_not_spin() {
        // An array of 2^62 nulls and a map whose values are empty records: the items are
        // counted per block of the array, never one by one.
        let schema = r#"{"type":"record","name":"R","fields":[
            {"name":"a","type":{"type":"array","items":"null"}},
            {"name":"m","type":{"type":"map","values":{"type":"record","name":"E","fields":[]}}}]}"#;
        let mut record = Vec::new();
        for _ in 0..1000 {
            zz(1 << 62, &mut record);
        }
        zz(0, &mut record);
        zz(-1, &mut record); // one key, block size follows
        zz(2, &mut record);
        zz(1, &mut record);
        record.push(b'k');
        zz(0, &mut record);
        let started = Instant::now();
        let out = run(&container(schema, "null", &[(1, record)]), &opts());
        assert!(out.fatal.is_none(), "{:?}", out.fatal);
        assert_eq!(out.records, 1);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn huge_record_counts_in_small_blocks_fail_at_the_end_of_the_data() {
        // 1-byte records (a boolean) with a count of a billion in a 1,000-byte block.
        let schema = r#"{"type":"record","name":"R","fields":[{"name":"b","type":"boolean"}]}"#;
        for codec in ["null", "deflate", "snappy", "zstandard"] {
            let started = Instant::now();
            let out = run(
                &container(schema, codec, &[(1_000_000_000, vec![1; 1000])]),
                &opts(),
            );
            let fatal = out.fatal.expect("too many records").to_string();
            assert!(
                fatal.contains("record 1000 of the block's 1000000000") && fatal.contains("ends"),
                "{codec}: {fatal}"
            );
            assert_eq!(out.records, 0);
            assert!(started.elapsed() < Duration::from_secs(1), "{codec}");
        }
    }

    #[test]
    fn block_codecs_are_charged_to_the_object_budget() {
        // 8 blocks of 1 MiB of zeros (1-byte records): each deflate/zstd/snappy block is tiny; the
        // object's budget is crossed by the blocks together, not by any one of them.
        let schema = r#"{"type":"record","name":"R","fields":[{"name":"b","type":"boolean"}]}"#;
        let limits = Limits {
            max_expanded_bytes: 4 << 20,
            ..Limits::default()
        };
        for codec in ["deflate", "snappy", "zstandard"] {
            let bytes = container(schema, codec, &vec![(1 << 20, vec![0u8; 1 << 20]); 8]);
            let budget = Budget::new(bytes.len() as u64, &limits);
            let o = Options {
                budget: budget.clone(),
                ..opts()
            };
            let out = run(&bytes, &o);
            let fatal = out.fatal.expect("over the budget");
            let limit = limit_of(&fatal).expect("a limit error");
            // Deflate and zstd files are a few KB: their ratio cap comes first.
            let want = if codec == "snappy" {
                "MAX_EXPANDED_BYTES"
            } else {
                "MAX_EXPANSION_RATIO"
            };
            assert_eq!(limit.variable, want, "{codec}: {limit}");
            assert!(budget.cap() < 8 << 20, "{codec}");
            assert_eq!(out.records, budget.cap() >> 20 << 20, "{codec}");
            assert!(budget.expanded() <= budget.cap() + (1 << 20), "{codec}");
        }
        // Null blocks are the object's own bytes (counted by the stream they arrive on).
        let bytes = container(schema, "null", &vec![(1 << 20, vec![0u8; 1 << 20]); 8]);
        let budget = Budget::new(1, &limits);
        let o = Options {
            budget: budget.clone(),
            ..opts()
        };
        assert!(run(&bytes, &o).fatal.is_none());
        assert_eq!(budget.expanded(), 0);
    }

    #[test]
    fn snappy_blocks_are_held_whole_up_to_max_record_bytes() {
        let schema = r#"{"type":"record","name":"R","fields":[{"name":"b","type":"boolean"}]}"#;
        let bytes = container(schema, "snappy", &[(3 << 20, vec![0u8; 3 << 20])]);
        let o = Options {
            max_record_bytes: 2 << 20,
            ..opts()
        };
        let fatal = run(&bytes, &o).fatal.expect("too large to hold");
        let limit = limit_of(&fatal).expect("a limit error");
        assert_eq!(limit.variable, "MAX_RECORD_BYTES", "{limit}");
        // The same block in deflate is streamed: no limit on its size.
        let bytes = container(schema, "deflate", &[(3 << 20, vec![0u8; 3 << 20])]);
        let out = run(&bytes, &o);
        assert!(out.fatal.is_none(), "{:?}", out.fatal);
        assert_eq!(out.records, 3 << 20);
    }

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
        // The compiler refuses it by itself too (defence in depth: it would recurse forever).
        let err = compile_schema(&list).unwrap_err().to_string();
        assert!(err.contains("recursive"), "{err}");
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
                budget: Budget::default(),
            },
        );
        let fatal = out.fatal.expect("refused").to_string();
        assert!(fatal.contains("recursive"), "{fatal}");
    }
}
