//! Zip archives, read through their central directory: members are opened one at a time and
//! streamed, each capped and checked (CRC-32 by the zip crate, declared size here).

use std::io::{self, Read, Seek, SeekFrom};

use thiserror::Error;
use zip::ZipArchive;
use zip::result::ZipError;

use super::{Budget, Capped, LimitExceeded};
use crate::config::Limits;

/// Why an archive or one of its members cannot be read.
#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    #[error("not a readable zip archive: {0}")]
    NotAnArchive(String),
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
    pub index: usize,
    /// The name as stored in the archive (decoded as UTF-8 or CP437 by the zip crate).
    pub name: String,
    pub compressed_size: u64,
    pub size: u64,
    pub is_dir: bool,
    pub is_symlink: bool,
    pub encrypted: bool,
}

pub struct Archive<R> {
    inner: ZipArchive<R>,
}

const EOCD_SIG: &[u8] = b"PK\x05\x06";
const EOCD_LEN: u64 = 22;
const ZIP64_LOCATOR_SIG: &[u8] = b"PK\x06\x07";
const ZIP64_EOCD_SIG: &[u8] = b"PK\x06\x06";

/// Reads the entry count the end-of-central-directory record declares, without reading the
/// central directory itself, so that a hostile count is refused before anything is allocated.
fn declared_entries<R: Read + Seek>(reader: &mut R, size: u64) -> Result<u64, ArchiveError> {
    if size < EOCD_LEN {
        return Err(ArchiveError::NotAnArchive(format!(
            "{size} bytes is too short for a zip archive"
        )));
    }
    let tail_len = size.min(EOCD_LEN + u16::MAX as u64);
    let tail_start = size - tail_len;
    let mut tail = vec![0u8; tail_len as usize];
    reader
        .seek(SeekFrom::Start(tail_start))
        .map_err(ArchiveError::Io)?;
    reader.read_exact(&mut tail).map_err(ArchiveError::Io)?;
    let pos = (0..=tail.len() - EOCD_LEN as usize)
        .rev()
        .find(|&i| &tail[i..i + 4] == EOCD_SIG)
        .ok_or_else(|| {
            ArchiveError::NotAnArchive("no end-of-central-directory record".to_string())
        })?;
    let eocd = &tail[pos..];
    let entries16 = u16::from_le_bytes([eocd[10], eocd[11]]);
    let cd_offset32 = u32::from_le_bytes([eocd[16], eocd[17], eocd[18], eocd[19]]);
    if entries16 != u16::MAX && cd_offset32 != u32::MAX {
        return Ok(entries16 as u64);
    }
    // Zip64: the locator sits just before the EOCD record and points at the zip64 EOCD.
    let abs_eocd = tail_start + pos as u64;
    if abs_eocd < 20 {
        return Ok(entries16 as u64);
    }
    let mut locator = [0u8; 20];
    reader
        .seek(SeekFrom::Start(abs_eocd - 20))
        .map_err(ArchiveError::Io)?;
    reader.read_exact(&mut locator).map_err(ArchiveError::Io)?;
    if &locator[..4] != ZIP64_LOCATOR_SIG {
        return Ok(entries16 as u64);
    }
    let z64_offset = u64::from_le_bytes(locator[8..16].try_into().expect("8 bytes"));
    if z64_offset.saturating_add(56) > size {
        return Err(ArchiveError::NotAnArchive(
            "zip64 end-of-central-directory record points outside the file".to_string(),
        ));
    }
    let mut z64 = [0u8; 56];
    reader
        .seek(SeekFrom::Start(z64_offset))
        .map_err(ArchiveError::Io)?;
    reader.read_exact(&mut z64).map_err(ArchiveError::Io)?;
    if &z64[..4] != ZIP64_EOCD_SIG {
        return Err(ArchiveError::NotAnArchive(
            "zip64 end-of-central-directory record is missing".to_string(),
        ));
    }
    Ok(u64::from_le_bytes(z64[32..40].try_into().expect("8 bytes")))
}

fn zip_error(err: ZipError) -> ArchiveError {
    match err {
        ZipError::Io(e) => ArchiveError::Io(e),
        other => ArchiveError::NotAnArchive(other.to_string()),
    }
}

impl<R: Read + Seek + Send> Archive<R> {
    /// Reads the central directory, after checking the declared entry count against
    /// `MAX_ARCHIVE_ENTRIES`.
    pub fn open(mut reader: R, size: u64, limits: &Limits) -> Result<Self, ArchiveError> {
        let entries = declared_entries(&mut reader, size)?;
        if entries > limits.max_archive_entries {
            return Err(LimitExceeded {
                variable: "MAX_ARCHIVE_ENTRIES",
                limit: limits.max_archive_entries,
                what: format!("the archive declares {entries} entries"),
            }
            .into());
        }
        reader.seek(SeekFrom::Start(0)).map_err(ArchiveError::Io)?;
        let inner = ZipArchive::new(reader).map_err(zip_error)?;
        if inner.len() as u64 > limits.max_archive_entries {
            return Err(LimitExceeded {
                variable: "MAX_ARCHIVE_ENTRIES",
                limit: limits.max_archive_entries,
                what: format!("the archive holds {} entries", inner.len()),
            }
            .into());
        }
        Ok(Archive { inner })
    }

    /// The entries of the central directory, in archive order.
    pub fn members(&self) -> Result<Vec<MemberInfo>, ArchiveError> {
        (0..self.inner.len())
            .map(|index| {
                let entry = self.inner.by_index_data(index).map_err(zip_error)?;
                Ok(MemberInfo {
                    index,
                    name: match entry.name() {
                        Ok(name) => name.into_owned(),
                        Err(_) => String::from_utf8_lossy(entry.name_raw()).into_owned(),
                    },
                    compressed_size: entry.compressed_size(),
                    size: entry.size(),
                    is_dir: entry.is_dir(),
                    is_symlink: entry.is_symlink(),
                    encrypted: entry.encrypted(),
                })
            })
            .collect()
    }

    /// Opens one member as a capped stream of its decompressed bytes. At its end the stream
    /// checks the CRC-32 (zip crate) and the size the central directory declares.
    pub fn open_member<'a>(
        &'a mut self,
        member: &MemberInfo,
        limits: &Limits,
        budget: &Budget,
    ) -> Result<Box<dyn Read + Send + 'a>, ArchiveError> {
        if member.encrypted {
            return Err(ArchiveError::Encrypted(member.name.clone()));
        }
        let file = self.inner.by_index(member.index).map_err(|e| match e {
            ZipError::Io(e) => ArchiveError::Io(e),
            other => ArchiveError::Member {
                name: member.name.clone(),
                message: other.to_string(),
            },
        })?;
        let checked = SizeChecked {
            inner: file,
            declared: member.size,
            seen: 0,
        };
        Ok(Box::new(Capped::new(
            checked,
            Some(member.compressed_size),
            limits,
            budget,
        )))
    }
}

/// Fails at the end of a member whose data does not have the size its directory entry declares.
struct SizeChecked<R> {
    inner: R,
    declared: u64,
    seen: u64,
}

impl<R: Read> Read for SizeChecked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen += n as u64;
        if (n == 0 && !buf.is_empty() && self.seen != self.declared) || self.seen > self.declared {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "member data is not what the archive says: the central directory declares {} bytes, the data has {}{}",
                    self.declared,
                    if self.seen > self.declared {
                        "more than "
                    } else {
                        ""
                    },
                    self.seen
                ),
            ));
        }
        Ok(n)
    }
}
