//! What Braze wrote: the Braze `kind` and its metadata from the key, the codec from the bytes.
//!
//! Pure functions, table-tested. Keys given here are already decoded (see `trigger`).

use crate::manifest::{Braze, Compression, Kind};

/// How many leading bytes [`codec_from_magic`] looks at.
pub const MAGIC_LEN: usize = 4;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZIP_LOCAL_MAGIC: &[u8] = b"PK\x03\x04";
const ZIP_EMPTY_MAGIC: &[u8] = b"PK\x05\x06";
const ZIP_SPANNED_MAGIC: &[u8] = b"PK\x07\x08";
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
/// Avro object container files start with `Obj` and version 1.
pub const AVRO_MAGIC: &[u8] = b"Obj\x01";

/// zstd skippable frames (`pzstd` starts its output with one) have a magic number in
/// `0x184D2A50..=0x184D2A5F`, little-endian: a first byte `0x50..=0x5F`, then these three.
const ZSTD_SKIPPABLE_TAIL: &[u8] = &[0x2a, 0x4d, 0x18];

fn is_zstd(head: &[u8]) -> bool {
    head.starts_with(ZSTD_MAGIC)
        || (head.len() >= 4
            && (0x50..=0x5f).contains(&head[0])
            && head[1..4] == *ZSTD_SKIPPABLE_TAIL)
}

/// The codec of an object, from its first bytes (never from its name). A zstd stream may start
/// with a skippable frame.
pub fn codec_from_magic(head: &[u8]) -> Compression {
    if head.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(ZIP_LOCAL_MAGIC)
        || head.starts_with(ZIP_EMPTY_MAGIC)
        || head.starts_with(ZIP_SPANNED_MAGIC)
    {
        Compression::Zip
    } else if is_zstd(head) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// How many trailing bytes [`ends_like_zip`] looks at: an end-of-central-directory record
/// with the longest comment.
pub const ZIP_TAIL_LEN: usize = 22 + u16::MAX as usize;
const ZIP_END_LEN: usize = 22;

/// Where the end-of-central-directory record is in `tail` (the last bytes of an object): the
/// last signature, as `unzip` and Python's `zipfile` take it. With `exact`, only when its
/// comment runs exactly to the end of `tail`.
pub fn zip_end_record(tail: &[u8], exact: bool) -> Option<usize> {
    let last = (0..=tail.len().checked_sub(ZIP_END_LEN)?)
        .rev()
        .find(|&i| tail[i..].starts_with(ZIP_EMPTY_MAGIC))?;
    let comment = u16::from_le_bytes([tail[last + 20], tail[last + 21]]) as usize;
    (!exact || last + ZIP_END_LEN + comment == tail.len()).then_some(last)
}

/// Whether an object that does not start like a known codec is a zip archive with data
/// prepended to it (a self-extracting archive, or a stub concatenated in front): its last bytes
/// (`tail`, up to [`ZIP_TAIL_LEN`]) end with an end-of-central-directory record whose comment
/// runs exactly to the end and whose directory fits in the object.
pub fn ends_like_zip(tail: &[u8], size: u64) -> bool {
    let Some(at) = zip_end_record(tail, true) else {
        return false;
    };
    let record = &tail[at..];
    let cd_size = u32::from_le_bytes([record[12], record[13], record[14], record[15]]) as u64;
    cd_size + (tail.len() - at) as u64 <= size
}

/// Magic numbers of binary formats that are never text: compressed streams and archives (a
/// nested one is not expanded), images, documents, executables. Each is long or unusual enough
/// that no CSV, JSON or text file starts with it.
const BINARY_MAGICS: &[(&str, &[u8])] = &[
    ("gzip", GZIP_MAGIC),
    ("zip", ZIP_LOCAL_MAGIC),
    ("zip", ZIP_EMPTY_MAGIC),
    ("zip", ZIP_SPANNED_MAGIC),
    ("zstd", ZSTD_MAGIC),
    ("xz", b"\xFD7zXZ\x00"),
    ("7z", b"7z\xBC\xAF\x27\x1C"),
    ("lz4", b"\x04\x22\x4D\x18"),
    ("snappy", b"\xFF\x06\x00\x00sNaPpY"),
    ("png", b"\x89PNG\r\n\x1a\n"),
    ("jpeg", b"\xFF\xD8\xFF"),
    ("gif", b"GIF87a"),
    ("gif", b"GIF89a"),
    ("pdf", b"%PDF-"),
    ("ole", b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1"),
    ("elf", b"\x7FELF"),
];

/// The name of the binary format whose magic number `head` starts with, if any (see
/// `BINARY_MAGICS`; also zstd skippable frames, bzip2 and tar). Such bytes are `binary`, never
/// sniffed as CSV or text.
pub fn binary_magic(head: &[u8]) -> Option<&'static str> {
    if let Some((name, _)) = BINARY_MAGICS.iter().find(|(_, m)| head.starts_with(m)) {
        return Some(name);
    }
    if is_zstd(head) {
        return Some("zstd");
    }
    // bzip2: `BZh`, the block size digit, then the first block's magic (π in BCD).
    if head.len() >= 10
        && head.starts_with(b"BZh")
        && (b'1'..=b'9').contains(&head[3])
        && (head[4..10] == *b"1AY&SY" || head[4..10] == *b"\x17rE8P\x90")
    {
        return Some("bzip2");
    }
    // tar: `ustar` at byte 257 of the first header.
    if head.get(257..262) == Some(b"ustar") {
        return Some("tar");
    }
    None
}

/// The Braze kind a key names, with the metadata the key carries. `None` when the key matches
/// no documented Braze layout (the caller then decides between `report` and `unknown` from the
/// content).
pub fn kind_from_key(key: &str) -> Option<(Kind, Braze)> {
    let segments: Vec<&str> = key.split('/').collect();
    segment_export(&segments)
        .or_else(|| currents(&segments))
        .or_else(|| message_archive(&segments))
}

/// The last path segment of a key without its compression suffix: the name of the one part of a
/// single-stream object.
pub fn single_part_name(key: &str, compression: Compression) -> String {
    let file = key.rsplit('/').next().unwrap_or(key);
    let stripped = match compression {
        Compression::Gzip => strip_suffix_ci(file, &[".gz", ".gzip"]),
        Compression::Zstd => strip_suffix_ci(file, &[".zst", ".zstd"]),
        Compression::Zip | Compression::None => None,
    };
    match stripped {
        Some(s) if !s.is_empty() => s.to_string(),
        _ if file.is_empty() => "object".to_string(),
        _ => file.to_string(),
    }
}

fn strip_suffix_ci<'a>(name: &'a str, suffixes: &[&str]) -> Option<&'a str> {
    suffixes.iter().find_map(|suffix| {
        let cut = name.len().checked_sub(suffix.len())?;
        (name.is_char_boundary(cut) && name[cut..].eq_ignore_ascii_case(suffix))
            .then(|| &name[..cut])
    })
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

fn is_date_hour(s: &str) -> bool {
    // Byte positions only after the length and ASCII checks: a multi-byte character must not be
    // sliced (found by fuzzing).
    s.len() == 13
        && s.is_ascii()
        && is_date(&s[..10])
        && s.as_bytes()[10] == b'-'
        && is_digits(&s[11..])
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

/// `segment-export/<segment_id>/<date>/<uuid>-<unix>/<file>` (API export) or
/// `segment-export/<segment_id>/<date>/users-<random>.zip` (dashboard CSV export).
fn segment_export(segments: &[&str]) -> Option<(Kind, Braze)> {
    let start = segments.iter().position(|s| *s == "segment-export")?;
    let rest = &segments[start + 1..];
    match rest {
        [segment_id, date, folder, file] if !segment_id.is_empty() && is_date(date) => {
            let (export_id, unix) = folder.rsplit_once('-')?;
            if export_id.is_empty() || !is_digits(unix) || unix.len() > 12 || file.is_empty() {
                return None;
            }
            let requested_at = unix.parse::<i64>().ok().and_then(unix_to_rfc3339);
            Some((
                Kind::ApiUserExport,
                Braze {
                    segment_id: Some(segment_id.to_string()),
                    date: Some(date.to_string()),
                    export_id: Some(export_id.to_string()),
                    object_prefix: Some(folder.to_string()),
                    requested_at,
                    ..Braze::default()
                },
            ))
        }
        [segment_id, date, file]
            if !segment_id.is_empty() && is_date(date) && file.starts_with("users-") =>
        {
            Some((
                Kind::DashboardCsvExport,
                Braze {
                    segment_id: Some(segment_id.to_string()),
                    date: Some(date.to_string()),
                    ..Braze::default()
                },
            ))
        }
        _ => None,
    }
}

/// `<folder>/dataexport.[<cluster>.]<conn>.integration.<id>/event_type=<t>/date=<YYYY-MM-DD-HH>/…`
/// in its three layouts: `version=<n>/<env>/<file>`, `<schema_id>/<zone>/<file>`, or `<file>`.
fn currents(segments: &[&str]) -> Option<(Kind, Braze)> {
    let et = segments.iter().position(|s| s.starts_with("event_type="))?;
    let event_type = segments[et].strip_prefix("event_type=")?;
    let date_hour = segments.get(et + 1)?.strip_prefix("date=")?;
    if event_type.is_empty() || !is_date_hour(date_hour) {
        return None;
    }
    let file = segments.last()?;
    if segments.len() < et + 3 {
        return None;
    }
    let currents_version = segments[et + 2..]
        .iter()
        .find_map(|s| s.strip_prefix("version="))
        .and_then(|v| v.parse::<u32>().ok());
    // The connector folder just above `event_type=`; the file name repeats it before `+`.
    let connector = et
        .checked_sub(1)
        .map(|i| segments[i])
        .filter(|s| s.starts_with("dataexport."))
        .or_else(|| {
            file.split('+')
                .next()
                .filter(|s| s.starts_with("dataexport."))
        });
    let (cluster, integration_id) = connector.and_then(parse_connector).unwrap_or((None, None));
    Some((
        Kind::Currents,
        Braze {
            integration_id,
            cluster,
            event_type: Some(event_type.to_string()),
            date_hour: Some(date_hour.to_string()),
            currents_version,
            ..Braze::default()
        },
    ))
}

type Connector = (Option<String>, Option<String>);

/// `dataexport.prod-01.S3.integration.<id>` → (cluster, id); `dataexport.S3.integration.<id>`
/// (the oldest names) → (None, id).
fn parse_connector(name: &str) -> Option<Connector> {
    let rest = name.strip_prefix("dataexport.")?;
    let (before, id) = rest.split_once(".integration.")?;
    let id = id.split('+').next().unwrap_or(id);
    let id = id.strip_suffix(".avro").unwrap_or(id);
    let cluster = match before.rsplit_once('.') {
        Some((cluster, _conn)) if !cluster.is_empty() => Some(cluster.to_string()),
        _ => None,
    };
    Some((cluster, (!id.is_empty()).then(|| id.to_string())))
}

/// `sent_messages/<email|push|sms>/<md5>/<campaign or step id|unassociated>/<dispatch_id>.json.gz`
fn message_archive(segments: &[&str]) -> Option<(Kind, Braze)> {
    let start = segments.iter().position(|s| *s == "sent_messages")?;
    match &segments[start + 1..] {
        [channel, recipient, _campaign, file]
            if matches!(*channel, "email" | "push" | "sms") && !recipient.is_empty() =>
        {
            let dispatch_id = strip_suffix_ci(file, &[".json.gz", ".json", ".gz"]).unwrap_or(file);
            if dispatch_id.is_empty() {
                return None;
            }
            Some((
                Kind::MessageArchive,
                Braze {
                    channel: Some(channel.to_string()),
                    dispatch_id: Some(dispatch_id.to_string()),
                    ..Braze::default()
                },
            ))
        }
        _ => None,
    }
}

/// Unix seconds → `YYYY-MM-DDTHH:MM:SSZ`.
pub fn unix_to_rfc3339(secs: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(secs).ok()?;
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&format).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn braze(fields: &[(&str, &str)]) -> Braze {
        let mut b = Braze::default();
        for (k, v) in fields {
            let v = Some(v.to_string());
            match *k {
                "segment_id" => b.segment_id = v,
                "date" => b.date = v,
                "export_id" => b.export_id = v,
                "object_prefix" => b.object_prefix = v,
                "requested_at" => b.requested_at = v,
                "integration_id" => b.integration_id = v,
                "cluster" => b.cluster = v,
                "event_type" => b.event_type = v,
                "date_hour" => b.date_hour = v,
                "currents_version" => b.currents_version = v.and_then(|v| v.parse().ok()),
                "channel" => b.channel = v,
                "dispatch_id" => b.dispatch_id = v,
                other => panic!("unknown field {other}"),
            }
        }
        b
    }

    #[test]
    fn kind_and_metadata_case_table() {
        let cases: Vec<(&str, Option<(Kind, Braze)>)> = vec![
            // Braze's documented API export example (segment id is not a well-formed UUID).
            (
                "segment-export/abc56c0c-rd4a-pb0a-870pdf4db07q/2019-04-25/d9696570-dfb7-45ae-baa2-25e302r2da27-1556044807/114f0226319130e1a4770f2602b5639a.zip",
                Some((
                    Kind::ApiUserExport,
                    braze(&[
                        ("segment_id", "abc56c0c-rd4a-pb0a-870pdf4db07q"),
                        ("date", "2019-04-25"),
                        ("export_id", "d9696570-dfb7-45ae-baa2-25e302r2da27"),
                        (
                            "object_prefix",
                            "d9696570-dfb7-45ae-baa2-25e302r2da27-1556044807",
                        ),
                        ("requested_at", "2019-04-23T18:40:07Z"),
                    ]),
                )),
            ),
            (
                "segment-export/global-control-group/2024-02-29/0b6c1a6e-2f4c-4d7e-9f1a-3a5b7c9d1e2f-1709164800/9f86d081884c7d659a2feaa0c55ad015.gz",
                Some((
                    Kind::ApiUserExport,
                    braze(&[
                        ("segment_id", "global-control-group"),
                        ("date", "2024-02-29"),
                        ("export_id", "0b6c1a6e-2f4c-4d7e-9f1a-3a5b7c9d1e2f"),
                        (
                            "object_prefix",
                            "0b6c1a6e-2f4c-4d7e-9f1a-3a5b7c9d1e2f-1709164800",
                        ),
                        ("requested_at", "2024-02-29T00:00:00Z"),
                    ]),
                )),
            ),
            (
                "segment-export/5e1b3c0a9d2f4a0012345678/2023-11-02/users-x7Kp2QvL9m.zip",
                Some((
                    Kind::DashboardCsvExport,
                    braze(&[
                        ("segment_id", "5e1b3c0a9d2f4a0012345678"),
                        ("date", "2023-11-02"),
                    ]),
                )),
            ),
            // Currents, current layout.
            (
                "currents-export/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5/event_type=users.messages.pushnotification.Send/date=2025-04-01-17/version=6/us-01/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5+0+123456.avro",
                Some((
                    Kind::Currents,
                    braze(&[
                        ("integration_id", "69cadaaed2d51b7c75b1a3e5"),
                        ("cluster", "prod-01"),
                        ("event_type", "users.messages.pushnotification.Send"),
                        ("date_hour", "2025-04-01-17"),
                        ("currents_version", "6"),
                    ]),
                )),
            ),
            // Currents, older layout with schema id and zone.
            (
                "currents/dataexport.prod-03.AzureBlob.integration.5a1b2c3d4e5f/event_type=users.behaviors.CustomEvent/date=2021-06-30-23/327/us-03/dataexport.prod-03.AzureBlob.integration.5a1b2c3d4e5f+1+0000012345.avro",
                Some((
                    Kind::Currents,
                    braze(&[
                        ("integration_id", "5a1b2c3d4e5f"),
                        ("cluster", "prod-03"),
                        ("event_type", "users.behaviors.CustomEvent"),
                        ("date_hour", "2021-06-30-23"),
                    ]),
                )),
            ),
            // Currents, oldest names without a cluster.
            (
                "currents/dataexport.S3.integration.5a1b2c3d4e5f/event_type=agentconsole.AgentExecutedTool/date=2019-01-01-00/dataexport.S3.integration.5a1b2c3d4e5f+2+0000035465.avro",
                Some((
                    Kind::Currents,
                    braze(&[
                        ("integration_id", "5a1b2c3d4e5f"),
                        ("event_type", "agentconsole.AgentExecutedTool"),
                        ("date_hour", "2019-01-01-00"),
                    ]),
                )),
            ),
            // A second connector in its own folder, GCS connector name.
            (
                "braze/eu/dataexport.prod-05.GCS.integration.abc/event_type=users.campaigns.Conversion/date=2026-01-31-09/version=7/eu-01/dataexport.prod-05.GCS.integration.abc+12+99.avro",
                Some((
                    Kind::Currents,
                    braze(&[
                        ("integration_id", "abc"),
                        ("cluster", "prod-05"),
                        ("event_type", "users.campaigns.Conversion"),
                        ("date_hour", "2026-01-31-09"),
                        ("currents_version", "7"),
                    ]),
                )),
            ),
            // Message archiving.
            (
                "sent_messages/email/6b9f1f5e0c1d2e3f4a5b6c7d8e9f0a1b/5f2a3b4c5d6e7f8091a2b3c4/d_1a2b3c4d.json.gz",
                Some((
                    Kind::MessageArchive,
                    braze(&[("channel", "email"), ("dispatch_id", "d_1a2b3c4d")]),
                )),
            ),
            (
                "sent_messages/sms/0cc175b9c0f1b6a831c399e269772661/unassociated/dispatch 7+x.json.gz",
                Some((
                    Kind::MessageArchive,
                    braze(&[("channel", "sms"), ("dispatch_id", "dispatch 7+x")]),
                )),
            ),
            // Keys with URL-ish characters, already decoded: spaces, '+', '=', unicode.
            (
                "segment-export/my segment+1=é/2024-01-01/users-ü 1.zip",
                Some((
                    Kind::DashboardCsvExport,
                    braze(&[("segment_id", "my segment+1=é"), ("date", "2024-01-01")]),
                )),
            ),
            // Not Braze layouts.
            ("reports/engagement/campaigns 2024-01.csv", None),
            ("segment-export/abc/not-a-date/x.zip", None),
            (
                "segment-export/abc/2024-01-01/no-timestamp-here/x.zip",
                None,
            ),
            ("sent_messages/fax/x/y/z.json.gz", None),
            ("currents/event_type=x/date=2024-01-01/file.avro", None),
            // Fuzzing: a multi-byte character where the hour's dash would be.
            ("currents/event_type=x/date=2025-01-0é12/f.avro", None),
            ("", None),
        ];
        for (key, want) in cases {
            assert_eq!(kind_from_key(key), want, "kind_from_key({key:?})");
        }
    }

    #[test]
    fn codec_case_table() {
        let cases: &[(&[u8], Compression)] = &[
            (&[0x1f, 0x8b, 8, 0], Compression::Gzip),
            (b"PK\x03\x04", Compression::Zip),
            (b"PK\x05\x06", Compression::Zip),
            (&[0x28, 0xb5, 0x2f, 0xfd], Compression::Zstd),
            // pzstd's output starts with a skippable frame (any of the 16 magic numbers).
            (&[0x50, 0x2a, 0x4d, 0x18], Compression::Zstd),
            (&[0x5f, 0x2a, 0x4d, 0x18, 4, 0, 0, 0], Compression::Zstd),
            (&[0x60, 0x2a, 0x4d, 0x18], Compression::None),
            (&[0x50, 0x2a, 0x4d], Compression::None),
            (b"Obj\x01", Compression::None),
            (b"{\"a\"", Compression::None),
            (b"PK", Compression::None),
            (b"", Compression::None),
        ];
        for (head, want) in cases {
            assert_eq!(codec_from_magic(head), *want, "codec_from_magic({head:?})");
        }
    }

    #[test]
    fn binary_magic_case_table() {
        let mut tar = vec![b'a'; 512];
        tar[257..263].copy_from_slice(b"ustar\0");
        let cases: &[(&[u8], Option<&str>)] = &[
            (&[0x1f, 0x8b, 8, 0], Some("gzip")),
            (b"PK\x03\x04rest", Some("zip")),
            (&[0x28, 0xb5, 0x2f, 0xfd, 0], Some("zstd")),
            (&[0x53, 0x2a, 0x4d, 0x18, 0, 0, 0, 0], Some("zstd")),
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", Some("png")),
            (b"\xFF\xD8\xFF\xE0\0\x10JFIF", Some("jpeg")),
            (b"%PDF-1.7\n%\xE2\xE3", Some("pdf")),
            (b"GIF89a\x01\0", Some("gif")),
            (b"BZh91AY&SY\x01", Some("bzip2")),
            (b"BZh9\x17rE8P\x90\0\0\0\0", Some("bzip2")),
            (b"\xFD7zXZ\0\0", Some("xz")),
            (&tar, Some("tar")),
            // Text that merely resembles a magic number.
            (b"BZh is not bzip2,a\n", None),
            (b"PDF,pages\n1,2\n", None),
            (b"%PD", None),
            (b"a,b\n1,2\n", None),
            (b"{\"a\":1}\n", None),
            (b"", None),
        ];
        for (head, want) in cases {
            assert_eq!(
                binary_magic(head),
                *want,
                "binary_magic({:?})",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn single_part_names() {
        let cases = [
            ("a/b/export.json.gz", Compression::Gzip, "export.json"),
            ("a/b/x.GZ", Compression::Gzip, "x"),
            ("a/b/x.gzip", Compression::Gzip, "x"),
            ("a/b/x.zst", Compression::Zstd, "x"),
            ("a/b/x.gz", Compression::None, "x.gz"),
            ("a/b/report.csv", Compression::None, "report.csv"),
            ("a/b/.gz", Compression::Gzip, ".gz"),
            ("a/b/", Compression::None, "object"),
            ("dir/ü.gz", Compression::Gzip, "ü"),
        ];
        for (key, codec, want) in cases {
            assert_eq!(
                single_part_name(key, codec),
                want,
                "single_part_name({key:?}, {codec:?})"
            );
        }
    }
}
