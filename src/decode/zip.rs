//! Zip archives, read through their central directory by this module itself: every entry of the
//! directory, in order, is a member (two entries with one name are two members), and the
//! archive's structure is checked before any member is trusted:
//!
//! - the end-of-central-directory record's entry count must be the number of entries found;
//! - data prepended to the archive (self-extracting style) is detected from where the central
//!   directory really is, and every offset is corrected by it, as `unzip` does;
//! - member data ranges must not overlap each other or the central directory (the
//!   overlapping-file zip bomb), and the declared sizes together must fit the object's budget;
//! - each member's local header must agree with its central entry (name, method, and, unless a
//!   data descriptor follows, CRC-32 and sizes);
//! - an entry whose name ends in `/` must hold no data;
//! - each member's decompressed bytes must have the CRC-32 and size its entry declares.
//!
//! Any disagreement is an [`ArchiveError`] naming it: the pipeline never reports such an archive
//! as `complete`. Member names are made unique in directory order: the second entry named
//! `a.txt` is `a.txt~2`, the third `a.txt~3` (skipping names already taken).

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};

use thiserror::Error;

use super::{Budget, Capped, LimitExceeded};
use crate::config::Limits;
use crate::detect::zip_end_record;

/// Why an archive or one of its members cannot be read.
#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    #[error("not a readable zip archive: {0}")]
    NotAnArchive(String),
    #[error("the zip archive is inconsistent: {0}")]
    Inconsistent(String),
    #[error(
        "zip member {0:?} is encrypted; encrypted archives are not supported (export without a password)"
    )]
    Encrypted(String),
    #[error("zip member {name:?} cannot be read: {message}")]
    Member { name: String, message: String },
    /// An I/O error of the underlying source (the caller decides whether it is transient).
    #[error("reading the archive failed: {0}")]
    Io(io::Error),
}

/// What the central directory says about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Position in the central directory.
    pub index: usize,
    /// The member's name, unique within the archive (see the module docs).
    pub name: String,
    /// The name as the archive stores it, decoded (UTF-8, or CP437 without the UTF-8 flag).
    pub stored_name: String,
    pub compressed_size: u64,
    pub size: u64,
    pub is_dir: bool,
    pub is_symlink: bool,
    pub encrypted: bool,
}

/// One central-directory entry, with what is needed to read and check its data.
#[derive(Debug, Clone)]
struct Entry {
    info: MemberInfo,
    raw_name: Vec<u8>,
    flags: u16,
    method: u16,
    crc32: u32,
    /// Offset of the local header, corrected for prepended data.
    local_offset: u64,
    /// Where the next entry's local header (or the central directory) starts: the member's data
    /// must end at or before it.
    limit: u64,
    /// Where the member's data ends, once its local header has been read.
    data_end: Option<u64>,
}

pub struct Archive<R> {
    reader: R,
    size: u64,
    entries: Vec<Entry>,
}

const EOCD_LEN: u64 = 22;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_LOCATOR_LEN: u64 = 20;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_EOCD_LEN: u64 = 56;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const CENTRAL_LEN: usize = 46;
const LOCAL_SIG: u32 = 0x0403_4b50;
const LOCAL_LEN: u64 = 30;
const DESCRIPTOR_SIG: u32 = 0x0807_4b50;
/// Longest member name accepted (S3 keys are at most 1,024 bytes; no export comes near this).
pub const MAX_NAME_BYTES: usize = 4096;

const FLAG_ENCRYPTED: u16 = 0x0001;
const FLAG_DESCRIPTOR: u16 = 0x0008;
const FLAG_UTF8: u16 = 0x0800;

const METHOD_STORED: u16 = 0;
const METHOD_DEFLATED: u16 = 8;
const METHOD_ZSTD: u16 = 93;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn read_at<R: Read + Seek>(reader: &mut R, at: u64, buf: &mut [u8]) -> Result<(), ArchiveError> {
    reader.seek(SeekFrom::Start(at)).map_err(ArchiveError::Io)?;
    reader.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ArchiveError::NotAnArchive(format!("a header at offset {at} is cut short"))
        } else {
            ArchiveError::Io(e)
        }
    })
}

/// Where the central directory is and how many entries it declares.
struct Directory {
    entries: u64,
    /// Where the directory really starts.
    start: u64,
    size: u64,
    /// Bytes before the archive proper (prepended data): added to every stored offset.
    shift: u64,
}

/// Finds and checks the end-of-central-directory record (and its zip64 form).
fn find_directory<R: Read + Seek>(reader: &mut R, size: u64) -> Result<Directory, ArchiveError> {
    if size < EOCD_LEN {
        return Err(ArchiveError::NotAnArchive(format!(
            "{size} bytes is too short for a zip archive"
        )));
    }
    let tail_len = size.min(EOCD_LEN + u16::MAX as u64);
    let tail_start = size - tail_len;
    let mut tail = vec![0u8; tail_len as usize];
    read_at(reader, tail_start, &mut tail)?;
    let pos = zip_end_record(&tail, false).ok_or_else(|| {
        ArchiveError::NotAnArchive("no end-of-central-directory record".to_string())
    })?;
    let eocd = &tail[pos..];
    if pos + EOCD_LEN as usize + u16_at(eocd, 20) as usize > tail.len() {
        return Err(ArchiveError::Inconsistent(
            "the end-of-central-directory record's comment runs past the end of the file".into(),
        ));
    }
    let eocd_at = tail_start + pos as u64;
    let (disk, cd_disk) = (u16_at(eocd, 4), u16_at(eocd, 6));
    let (on_disk, total) = (u16_at(eocd, 8), u16_at(eocd, 10));
    let (cd_size32, cd_offset32) = (u32_at(eocd, 12), u32_at(eocd, 16));
    let split =
        || ArchiveError::NotAnArchive("multi-disk (split) archives are not supported".to_string());
    // A zip64 locator just before the end record, whether or not the record's own fields say
    // zip64 (Info-ZIP writes one when streaming, with the 32-bit values still real).
    let mut locator = [0u8; ZIP64_LOCATOR_LEN as usize];
    let has_locator = eocd_at >= ZIP64_LOCATOR_LEN + ZIP64_EOCD_LEN && {
        read_at(reader, eocd_at - ZIP64_LOCATOR_LEN, &mut locator)?;
        u32_at(&locator, 0) == ZIP64_LOCATOR_SIG
    };
    let (entries, cd_size, cd_offset, records_at) = if has_locator {
        let locator_at = eocd_at - ZIP64_LOCATOR_LEN;
        let declared_at = u64_at(&locator, 8);
        // The record ends at the locator; without extensible data it is 56 bytes long, with it
        // it starts where the locator says (when nothing is prepended).
        let mut z64 = [0u8; ZIP64_EOCD_LEN as usize];
        let mut z64_at = locator_at - ZIP64_EOCD_LEN;
        read_at(reader, z64_at, &mut z64)?;
        if u32_at(&z64, 0) != ZIP64_EOCD_SIG && declared_at < locator_at {
            z64_at = declared_at;
            read_at(reader, z64_at, &mut z64)?;
        }
        if u32_at(&z64, 0) != ZIP64_EOCD_SIG
            || z64_at.checked_add(12 + u64_at(&z64, 4)) != Some(locator_at)
        {
            return Err(ArchiveError::Inconsistent(
                "the zip64 end-of-central-directory record is missing or does not end at its \
                 locator"
                    .to_string(),
            ));
        }
        if u32_at(&z64, 16) != 0 || u32_at(&z64, 20) != 0 || u64_at(&z64, 24) != u64_at(&z64, 32) {
            return Err(split());
        }
        let (total64, size64, offset64) = (u64_at(&z64, 32), u64_at(&z64, 40), u64_at(&z64, 48));
        // The record must follow the directory it describes (as the locator says), and the
        // 32-bit values that are not escapes must agree with it.
        let agrees = |v32: u64, escape: u64, v64: u64| v32 == escape || v32 == v64;
        if declared_at != offset64.saturating_add(size64)
            || !agrees(total as u64, u16::MAX as u64, total64)
            || !agrees(cd_size32 as u64, u32::MAX as u64, size64)
            || !agrees(cd_offset32 as u64, u32::MAX as u64, offset64)
        {
            return Err(ArchiveError::Inconsistent(
                "the zip64 end-of-central-directory record disagrees with the end record or \
                 its locator"
                    .to_string(),
            ));
        }
        (total64, size64, offset64, z64_at)
    } else {
        if disk != 0 || cd_disk != 0 || on_disk != total {
            return Err(split());
        }
        (total as u64, cd_size32 as u64, cd_offset32 as u64, eocd_at)
    };
    // The directory ends where the end records begin; anything before the stored offset is
    // prepended data.
    let start = records_at.checked_sub(cd_size).ok_or_else(|| {
        ArchiveError::Inconsistent(format!(
            "the central directory ({cd_size} bytes) does not fit before its end record"
        ))
    })?;
    let shift = start.checked_sub(cd_offset).ok_or_else(|| {
        ArchiveError::Inconsistent(format!(
            "the central directory is declared at offset {cd_offset}, past where it is ({start})"
        ))
    })?;
    if entries.saturating_mul(CENTRAL_LEN as u64) > cd_size {
        return Err(ArchiveError::Inconsistent(format!(
            "the end-of-central-directory record declares {entries} entries, more than a \
             central directory of {cd_size} bytes can hold"
        )));
    }
    Ok(Directory {
        entries,
        start,
        size: cd_size,
        shift,
    })
}

/// The body of the extra field `id`, if the entry has one.
fn extra_field(extra: &[u8], id: u16) -> Option<&[u8]> {
    let mut at = 0usize;
    while at + 4 <= extra.len() {
        let len = u16_at(extra, at + 2) as usize;
        let body = extra.get(at + 4..at + 4 + len)?;
        if u16_at(extra, at) == id {
            return Some(body);
        }
        at += 4 + len;
    }
    None
}

/// Replaces the central entry's values that are 0xFFFFFFFF by those of its zip64 extra field
/// (0x0001), which holds just those, in this order.
fn zip64_extra(
    extra: &[u8],
    size: &mut u64,
    compressed: &mut u64,
    offset: &mut u64,
) -> Result<(), String> {
    let Some(body) = extra_field(extra, 0x0001) else {
        return Ok(());
    };
    let mut fields = body.chunks_exact(8).map(|c| u64_at(c, 0));
    for v in [size, compressed, offset] {
        if *v == u32::MAX as u64 {
            *v = fields
                .next()
                .ok_or("the zip64 extra field lacks a size or offset")?;
        }
    }
    Ok(())
}

/// The Info-ZIP Unicode Path extra field (0x7075), when its CRC matches the stored name.
fn unicode_path(extra: &[u8], raw_name: &[u8]) -> Option<String> {
    let body = extra_field(extra, 0x7075)?;
    if body.len() <= 5 || body[0] != 1 || u32_at(body, 1) != crc32fast::hash(raw_name) {
        return None;
    }
    std::str::from_utf8(&body[5..]).ok().map(str::to_string)
}

/// Code page 437, the zip format's default name encoding, for bytes 0x80..=0xFF.
const CP437_HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{a0}";

/// A member's name: UTF-8 when flagged so, or when the bytes are valid UTF-8 (macOS writes
/// UTF-8 without the flag); else the Info-ZIP Unicode Path field; else CP437.
fn decode_name(raw: &[u8], flags: u16, extra: &[u8]) -> String {
    if flags & FLAG_UTF8 != 0 {
        return String::from_utf8_lossy(raw).into_owned();
    }
    if let Some(name) = unicode_path(extra, raw) {
        return name;
    }
    if let Ok(name) = std::str::from_utf8(raw) {
        return name.to_string();
    }
    static HIGH: std::sync::LazyLock<Vec<char>> =
        std::sync::LazyLock::new(|| CP437_HIGH.chars().collect());
    let high = &*HIGH;
    raw.iter()
        .map(|&b| {
            if b < 0x80 {
                b as char
            } else {
                high[(b - 0x80) as usize]
            }
        })
        .collect()
}

/// Reads and checks the whole central directory.
fn read_directory<R: Read + Seek>(
    reader: &mut R,
    dir: &Directory,
    limits: &Limits,
) -> Result<Vec<Entry>, ArchiveError> {
    reader
        .seek(SeekFrom::Start(dir.start))
        .map_err(ArchiveError::Io)?;
    let mut cd = BufReader::with_capacity(64 * 1024, reader.by_ref().take(dir.size));
    let mut entries: Vec<Entry> = Vec::new();
    let mut left = dir.size;
    let mut header = [0u8; CENTRAL_LEN];
    while left >= 4 {
        if left < CENTRAL_LEN as u64 {
            break;
        }
        cd.read_exact(&mut header).map_err(ArchiveError::Io)?;
        if u32_at(&header, 0) != CENTRAL_SIG {
            // A digital signature record (or trailing bytes) may end the directory.
            break;
        }
        if entries.len() as u64 >= limits.max_archive_entries {
            return Err(LimitExceeded {
                variable: "MAX_ARCHIVE_ENTRIES",
                limit: limits.max_archive_entries,
                what: format!(
                    "the central directory holds more than {} entries",
                    limits.max_archive_entries
                ),
            }
            .into());
        }
        let name_len = u16_at(&header, 28) as usize;
        let extra_len = u16_at(&header, 30) as usize;
        let comment_len = u16_at(&header, 32) as usize;
        let variable = (name_len + extra_len + comment_len) as u64;
        left = left
            .checked_sub(CENTRAL_LEN as u64 + variable)
            .ok_or_else(|| {
                ArchiveError::Inconsistent(format!(
                    "central directory entry {} runs past the end of the directory",
                    entries.len()
                ))
            })?;
        if name_len > MAX_NAME_BYTES {
            return Err(ArchiveError::Inconsistent(format!(
                "central directory entry {} has a name of {name_len} bytes (at most \
                 {MAX_NAME_BYTES} are accepted)",
                entries.len()
            )));
        }
        let mut raw_name = vec![0u8; name_len];
        cd.read_exact(&mut raw_name).map_err(ArchiveError::Io)?;
        let mut extra = vec![0u8; extra_len];
        cd.read_exact(&mut extra).map_err(ArchiveError::Io)?;
        io::copy(&mut (&mut cd).take(comment_len as u64), &mut io::sink())
            .map_err(ArchiveError::Io)?;
        let flags = u16_at(&header, 8);
        let method = u16_at(&header, 10);
        let crc32 = u32_at(&header, 16);
        let mut compressed = u32_at(&header, 20) as u64;
        let mut size = u32_at(&header, 24) as u64;
        let mut offset = u32_at(&header, 42) as u64;
        let index = entries.len();
        zip64_extra(&extra, &mut size, &mut compressed, &mut offset).map_err(|m| {
            ArchiveError::Inconsistent(format!("central directory entry {index}: {m}"))
        })?;
        let local_offset = offset.checked_add(dir.shift).ok_or_else(|| {
            ArchiveError::Inconsistent(format!("entry {index} has an impossible offset"))
        })?;
        let name = decode_name(&raw_name, flags, &extra);
        let external = u32_at(&header, 38);
        let made_on_unix = u16_at(&header, 4) >> 8 == 3;
        let is_dir = name.ends_with('/');
        entries.push(Entry {
            info: MemberInfo {
                index,
                name: name.clone(),
                stored_name: name,
                compressed_size: compressed,
                size,
                is_dir,
                is_symlink: made_on_unix && (external >> 16) & 0o170000 == 0o120000,
                encrypted: flags & FLAG_ENCRYPTED != 0,
            },
            raw_name,
            flags,
            method,
            crc32,
            local_offset,
            limit: 0,
            data_end: None,
        });
    }
    if entries.len() as u64 != dir.entries {
        return Err(ArchiveError::Inconsistent(format!(
            "the end-of-central-directory record declares {} entries, the central directory \
             holds {}",
            dir.entries,
            entries.len()
        )));
    }
    Ok(entries)
}

/// Checks that no two entries' data overlap, nor any entry the central directory, and sets
/// each entry's `limit`.
fn check_ranges(entries: &mut [Entry], dir: &Directory) -> Result<(), ArchiveError> {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| entries[i].local_offset);
    for (k, &i) in order.iter().enumerate() {
        let e = &entries[i];
        // The smallest the entry can be: its local header, its name, its data.
        let min_end = e
            .local_offset
            .saturating_add(LOCAL_LEN + e.raw_name.len() as u64)
            .saturating_add(e.info.compressed_size);
        let (limit, next) = match order.get(k + 1) {
            Some(&j) => (entries[j].local_offset, Some(j)),
            None => (dir.start, None),
        };
        if min_end > limit {
            return Err(ArchiveError::Inconsistent(match next {
                Some(j) => format!(
                    "the data of entries {:?} and {:?} overlap",
                    e.info.stored_name, entries[j].info.stored_name
                ),
                None => format!(
                    "the data of entry {:?} runs into the central directory",
                    e.info.stored_name
                ),
            }));
        }
        entries[i].limit = limit;
    }
    Ok(())
}

/// Checks the bytes before the first entry (prepended data, a self-extracting stub): they must
/// not hold a local header that parses as one (a supported method, a name, and its data
/// fitting before the first entry), which would be a member no directory entry names.
fn check_prefix<R: Read + Seek>(reader: &mut R, first: u64) -> Result<(), ArchiveError> {
    if first < LOCAL_LEN {
        return Ok(());
    }
    reader.seek(SeekFrom::Start(0)).map_err(ArchiveError::Io)?;
    let mut prefix = BufReader::with_capacity(64 * 1024, reader.by_ref().take(first));
    // The bytes from the last candidate signature on: at most a local header's fixed part.
    let mut window: Vec<u8> = Vec::with_capacity(64 * 1024 + LOCAL_LEN as usize);
    let mut window_start = 0u64;
    loop {
        let chunk = prefix.fill_buf().map_err(ArchiveError::Io)?;
        let done = chunk.is_empty();
        window.extend_from_slice(chunk);
        let n = chunk.len();
        prefix.consume(n);
        let mut at = 0usize;
        let mut pending = None;
        while let Some(i) = memchr::memmem::find(&window[at..], &LOCAL_SIG.to_le_bytes()) {
            let i = at + i;
            if i + LOCAL_LEN as usize > window.len() {
                // Wait for the rest of this header (none comes when `done`).
                pending = Some(i);
                break;
            }
            let h = &window[i..i + LOCAL_LEN as usize];
            let method = u16_at(h, 8);
            let name_len = u16_at(h, 26) as u64;
            let extra_len = u16_at(h, 28) as u64;
            let compressed = u32_at(h, 18) as u64;
            let offset = window_start + i as u64;
            let end = offset + LOCAL_LEN + name_len + extra_len + compressed;
            if matches!(method, METHOD_STORED | METHOD_DEFLATED | METHOD_ZSTD)
                && name_len > 0
                && end <= first
            {
                return Err(ArchiveError::Inconsistent(format!(
                    "the data before the first entry holds a local header at offset {offset} \
                     that no central directory entry names (a hidden member)"
                )));
            }
            at = i + 1;
        }
        if done {
            return Ok(());
        }
        // Keep what may be the start of a header cut by the read.
        let keep_from = pending.unwrap_or(window.len().saturating_sub(3));
        window_start += keep_from as u64;
        window.drain(..keep_from);
    }
}

/// Gives every entry a name no other entry has: `a.txt`, `a.txt~2`, `a.txt~3`…
fn unique_names(entries: &mut [Entry]) {
    let mut taken: HashSet<String> = entries.iter().map(|e| e.info.name.clone()).collect();
    let mut seen: HashSet<String> = HashSet::new();
    // The next suffix to try for each name, so that many entries with one name cost linear time.
    let mut next: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for e in entries.iter_mut() {
        if seen.insert(e.info.name.clone()) {
            continue;
        }
        let n = next.entry(e.info.stored_name.clone()).or_insert(2);
        let name = loop {
            let candidate = format!("{}~{n}", e.info.stored_name);
            *n += 1;
            if !taken.contains(&candidate) {
                break candidate;
            }
        };
        taken.insert(name.clone());
        seen.insert(name.clone());
        e.info.name = name;
    }
}

impl<R: Read + Seek + Send> Archive<R> {
    /// Reads and checks the central directory. The declared entry count is checked against
    /// `MAX_ARCHIVE_ENTRIES` and the declared sizes against the object's `budget` before any
    /// member data is read.
    pub fn open(
        mut reader: R,
        size: u64,
        limits: &Limits,
        budget: &Budget,
    ) -> Result<Self, ArchiveError> {
        let dir = find_directory(&mut reader, size)?;
        if dir.entries > limits.max_archive_entries {
            return Err(LimitExceeded {
                variable: "MAX_ARCHIVE_ENTRIES",
                limit: limits.max_archive_entries,
                what: format!("the archive declares {} entries", dir.entries),
            }
            .into());
        }
        let mut entries = read_directory(&mut reader, &dir, limits)?;
        for e in &entries {
            if e.info.is_dir && (e.info.size > 0 || e.info.compressed_size > 2) {
                return Err(ArchiveError::Inconsistent(format!(
                    "entry {:?} is named as a directory but holds {} bytes",
                    e.info.stored_name, e.info.size
                )));
            }
        }
        check_ranges(&mut entries, &dir)?;
        let first = entries
            .iter()
            .map(|e| e.local_offset)
            .min()
            .unwrap_or(dir.start);
        check_prefix(&mut reader, first)?;
        let declared = entries
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(e.info.size));
        budget.check_declared(declared)?;
        unique_names(&mut entries);
        Ok(Archive {
            reader,
            size,
            entries,
        })
    }

    /// Where an entry's local header lies (prepended data counted): members read in this order
    /// are read front to back.
    pub fn data_offset(&self, member: &MemberInfo) -> u64 {
        self.entries
            .get(member.index)
            .map_or(u64::MAX, |e| e.local_offset)
    }

    /// The entries of the central directory, in archive order.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.entries.iter().map(|e| e.info.clone()).collect()
    }

    /// Opens one member as a stream of its decompressed bytes, charged to the object's budget.
    /// Its local header is checked against its central entry first; at its end the stream
    /// checks the CRC-32 and the size the central directory declares.
    pub fn open_member<'a>(
        &'a mut self,
        member: &MemberInfo,
        budget: &Budget,
    ) -> Result<Box<dyn Read + Send + 'a>, ArchiveError> {
        let entry = self
            .entries
            .get(member.index)
            .filter(|e| e.info == *member)
            .ok_or_else(|| ArchiveError::Member {
                name: member.name.clone(),
                message: "no such entry in this archive".to_string(),
            })?
            .clone();
        let name = &entry.info.name;
        let bad = |message: String| ArchiveError::Member {
            name: name.clone(),
            message,
        };
        if entry.info.encrypted {
            return Err(ArchiveError::Encrypted(name.clone()));
        }
        let mut local = [0u8; LOCAL_LEN as usize];
        read_at(&mut self.reader, entry.local_offset, &mut local)?;
        if u32_at(&local, 0) != LOCAL_SIG {
            return Err(bad(format!(
                "no local header at offset {} where the central directory points",
                entry.local_offset
            )));
        }
        let local_name_len = u16_at(&local, 26) as usize;
        let local_extra_len = u16_at(&local, 28) as usize;
        let mut variable = vec![0u8; local_name_len + local_extra_len];
        read_at(
            &mut self.reader,
            entry.local_offset + LOCAL_LEN,
            &mut variable,
        )?;
        let (local_name, local_extra) = variable.split_at(local_name_len);
        let mut mismatch = Vec::new();
        if local_name != entry.raw_name.as_slice() {
            mismatch.push("name".to_string());
        }
        let local_method = u16_at(&local, 8);
        if local_method != entry.method {
            mismatch.push(format!("method ({local_method} vs {})", entry.method));
        }
        if u16_at(&local, 6) & FLAG_ENCRYPTED != 0 {
            return Err(ArchiveError::Encrypted(name.clone()));
        }
        let local_crc = u32_at(&local, 14);
        let mut local_compressed = u32_at(&local, 18) as u64;
        let mut local_size = u32_at(&local, 22) as u64;
        // The zip64 extra of a local header holds both sizes whenever it is present.
        if (local_size == u32::MAX as u64 || local_compressed == u32::MAX as u64)
            && let Some(body) = extra_field(local_extra, 0x0001).filter(|b| b.len() >= 16)
        {
            local_size = u64_at(body, 0);
            local_compressed = u64_at(body, 8);
        }
        // With a data descriptor the local values may be zero; when they are set they must
        // agree all the same.
        let descriptor = entry.flags & FLAG_DESCRIPTOR != 0;
        let agrees = |local: u64, central: u64| local == central || (descriptor && local == 0);
        if !agrees(local_crc as u64, entry.crc32 as u64) {
            mismatch.push("CRC-32".to_string());
        }
        if !agrees(local_compressed, entry.info.compressed_size) {
            mismatch.push(format!(
                "compressed size ({local_compressed} vs {})",
                entry.info.compressed_size
            ));
        }
        if !agrees(local_size, entry.info.size) {
            mismatch.push(format!("size ({local_size} vs {})", entry.info.size));
        }
        if !mismatch.is_empty() {
            return Err(bad(format!(
                "its local header disagrees with its central directory entry: {}",
                mismatch.join(", ")
            )));
        }
        let data_start = entry.local_offset + LOCAL_LEN + variable.len() as u64;
        let data_end = data_start.saturating_add(entry.info.compressed_size);
        if data_end > entry.limit || data_end > self.size {
            return Err(ArchiveError::Inconsistent(format!(
                "the data of entry {:?} runs past the next entry or the central directory",
                entry.info.stored_name
            )));
        }
        self.entries[member.index].data_end = Some(data_end);
        self.reader
            .seek(SeekFrom::Start(data_start))
            .map_err(ArchiveError::Io)?;
        let raw = (&mut self.reader).take(entry.info.compressed_size);
        let body = match entry.method {
            METHOD_STORED => {
                if entry.info.compressed_size != entry.info.size {
                    return Err(bad(format!(
                        "it is stored, but its sizes differ ({} compressed, {} stored)",
                        entry.info.compressed_size, entry.info.size
                    )));
                }
                Body::Stored(raw)
            }
            METHOD_DEFLATED => Body::Deflate(flate2::bufread::DeflateDecoder::new(
                BufReader::with_capacity(MEMBER_BUFFER, raw),
            )),
            METHOD_ZSTD => {
                let mut decoder = zstd::stream::read::Decoder::with_buffer(
                    BufReader::with_capacity(MEMBER_BUFFER, raw),
                )
                .map_err(ArchiveError::Io)?;
                decoder
                    .window_log_max(super::ZSTD_WINDOW_LOG_MAX)
                    .map_err(ArchiveError::Io)?;
                Body::Zstd(decoder)
            }
            other => {
                return Err(bad(format!(
                    "compression method {other} is not supported (stored, deflate and zstd are)"
                )));
            }
        };
        let checked = Checked {
            inner: body,
            declared_size: entry.info.size,
            declared_crc: entry.crc32,
            hasher: crc32fast::Hasher::new(),
            seen: 0,
            verified: false,
        };
        Ok(Box::new(Capped::new(checked, budget)))
    }

    /// Checks an entry whose data is not indexed (a directory entry): its local header, its
    /// (empty) data and the bytes up to the next entry, as for any member.
    pub fn check_entry(&mut self, member: &MemberInfo) -> Result<(), ArchiveError> {
        let budget = Budget::default();
        let mut stream = self.open_member(member, &budget)?;
        io::copy(&mut stream, &mut io::sink()).map_err(|e| ArchiveError::Member {
            name: member.name.clone(),
            message: e.to_string(),
        })?;
        drop(stream);
        self.check_gap_after(member)
    }
}

/// Read buffer of a compressed member's input.
const MEMBER_BUFFER: usize = 64 * 1024;

/// The decoder of one member's data, over exactly its compressed bytes.
enum Body<'a, R> {
    Stored(io::Take<&'a mut R>),
    Deflate(flate2::bufread::DeflateDecoder<BufReader<io::Take<&'a mut R>>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<io::Take<&'a mut R>>>),
}

impl<R: Read> Read for Body<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Body::Stored(r) => r.read(buf),
            Body::Deflate(r) => r.read(buf),
            Body::Zstd(r) => r.read(buf),
        }
    }
}

impl<R: Read> Body<'_, R> {
    /// Whether compressed bytes are left once the decoder has ended: data past the end of the
    /// compressed stream but inside the member's declared compressed size.
    fn input_left(&mut self) -> io::Result<bool> {
        let input = match self {
            Body::Stored(r) => return Ok(r.limit() > 0),
            Body::Deflate(r) => r.get_mut(),
            Body::Zstd(r) => r.get_mut(),
        };
        Ok(!input.fill_buf()?.is_empty())
    }
}

impl<R: Read + Seek + Send> Archive<R> {
    /// Checks the bytes between the end of `member`'s data and the next entry (or the central
    /// directory): past an optional data descriptor they must not hold a local header, which
    /// would be a member that no central-directory entry names (hidden from the index). Call it
    /// after the member's stream has been read; the bytes follow it, so a streaming source reads
    /// on instead of seeking.
    pub fn check_gap_after(&mut self, member: &MemberInfo) -> Result<(), ArchiveError> {
        let Some(entry) = self.entries.get(member.index) else {
            return Ok(());
        };
        let Some(start) = entry.data_end else {
            return Ok(());
        };
        let len = entry.limit.saturating_sub(start);
        if len < 4 {
            return Ok(());
        }
        let descriptor = entry.flags & FLAG_DESCRIPTOR != 0;
        let (crc, compressed, size) = (entry.crc32, entry.info.compressed_size, entry.info.size);
        let name = entry.info.stored_name.clone();
        self.reader
            .seek(SeekFrom::Start(start))
            .map_err(ArchiveError::Io)?;
        let mut gap = (&mut self.reader).take(len);
        // A data descriptor is skipped only when it is one: its CRC-32 and sizes (32- or 64-bit,
        // with or without its signature) are the central entry's.
        let mut head = [0u8; 24];
        let head_len = (len as usize).min(head.len());
        gap.read_exact(&mut head[..head_len])
            .map_err(ArchiveError::Io)?;
        let head = &head[..head_len];
        let skip = if descriptor {
            [(true, false), (true, true), (false, false), (false, true)]
                .into_iter()
                .find_map(|(signed, wide)| {
                    let at = if signed { 4 } else { 0 };
                    let width = if wide { 8 } else { 4 };
                    let end = at + 4 + 2 * width;
                    let field = |i: usize| -> u64 {
                        let from = at + 4 + i * width;
                        if wide {
                            u64_at(head, from)
                        } else {
                            u32_at(head, from) as u64
                        }
                    };
                    (head.len() >= end
                        && (!signed || u32_at(head, 0) == DESCRIPTOR_SIG)
                        && u32_at(head, at) == crc
                        && field(0) == compressed
                        && field(1) == size)
                        .then_some(end)
                })
                .unwrap_or(0)
        } else {
            0
        };
        let mut window: Vec<u8> = head[skip..].to_vec();
        let mut window_start = start + skip as u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(i) = memchr::memmem::find(&window, &LOCAL_SIG.to_le_bytes()) {
                return Err(ArchiveError::Inconsistent(format!(
                    "a local header at offset {} after the data of entry {name:?} belongs to no \
                     central directory entry (a hidden member)",
                    window_start + i as u64
                )));
            }
            let n = gap.read(&mut buf).map_err(ArchiveError::Io)?;
            if n == 0 {
                return Ok(());
            }
            // The last 3 bytes stay, so that a signature across reads is found.
            let keep = window.len().min(3);
            window_start += (window.len() - keep) as u64;
            window.drain(..window.len() - keep);
            window.extend_from_slice(&buf[..n]);
        }
    }
}

/// Fails at the end of a member whose data does not have the size and CRC-32 its directory
/// entry declares (and as soon as it has more bytes than declared).
struct Checked<B> {
    inner: B,
    declared_size: u64,
    declared_crc: u32,
    hasher: crc32fast::Hasher,
    seen: u64,
    /// The end was reached and checked.
    verified: bool,
}

impl<R: Read> Read for Checked<Body<'_, R>> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.verified {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        self.seen += n as u64;
        if self.seen > self.declared_size || (n == 0 && !buf.is_empty()) {
            if self.seen != self.declared_size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "member data is not what the archive says: the central directory \
                         declares {} bytes, the data has {}{}",
                        self.declared_size,
                        if self.seen > self.declared_size {
                            "more than "
                        } else {
                            ""
                        },
                        self.seen
                    ),
                ));
            }
            if self.inner.input_left()? {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "member data continues past the end of its compressed stream, inside its \
                     declared compressed size",
                ));
            }
            let crc = std::mem::take(&mut self.hasher).finalize();
            if crc != self.declared_crc {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "member data fails its CRC-32 check (the archive says {:08x}, the data \
                         has {crc:08x}): the data is corrupt",
                        self.declared_crc
                    ),
                ));
            }
            self.verified = true;
            return Ok(0);
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
