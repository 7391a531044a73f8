//! S3 Inventory reports as a backfill's object list (`--from-inventory s3://…/manifest.json`).
//!
//! A report's `manifest.json` names the source bucket, the bucket holding the data files
//! (`destinationBucket`, an ARN), their format (`fileFormat`; only `CSV` is read here) and their
//! columns (`fileSchema`, e.g. `"Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size,
//! LastModifiedDate, ETag"`), and lists the data files (`files[].key`, gzip-compressed CSV,
//! no header, every field quoted). Keys in the data files are URL-encoded the way S3
//! notifications encode them (`+` for a space), and decoded here with the same decoder.
//!
//! A data file is streamed (ranged GETs through the S3 adapter, decompressed by `decode`,
//! capped by the configured limits) on a blocking thread; its rows are handed over one by one
//! through a bounded channel, so a report of any size is read in bounded memory.

use std::io::{self, Cursor, Read};

use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::BackfillError;
use super::location::{S3Url, parse_arn};
use super::select::Listed;
use crate::config::Limits;
use crate::decode::{self, Budget};
use crate::detect::{MAGIC_LEN, codec_from_magic};
use crate::manifest::Compression;
use crate::store::ObjectSource;
use crate::store::s3::S3Store;
use crate::trigger::decode_s3_key;

/// An inventory report's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InventoryManifest {
    pub source_bucket: String,
    /// `arn:aws:s3:::BUCKET` of the bucket that holds the data files.
    pub destination_bucket: String,
    #[serde(default)]
    pub file_format: String,
    #[serde(default)]
    pub file_schema: String,
    pub files: Vec<DataFile>,
}

/// One data file of a report.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DataFile {
    pub key: String,
    #[serde(default)]
    pub size: u64,
}

impl InventoryManifest {
    /// Parses and checks a `manifest.json`: CSV data files, a schema with `Bucket` and `Key`.
    pub fn parse(bytes: &[u8]) -> Result<(InventoryManifest, Columns), String> {
        let m: InventoryManifest = serde_json::from_slice(bytes)
            .map_err(|e| format!("not an S3 Inventory manifest.json: {e}"))?;
        if !m.file_format.eq_ignore_ascii_case("CSV") {
            return Err(format!(
                "the report's data files are {:?}: only CSV inventories are read (configure the \
                 inventory with the CSV output format)",
                m.file_format
            ));
        }
        let columns = Columns::from_schema(&m.file_schema)?;
        m.destination()?;
        Ok((m, columns))
    }

    /// The bucket that holds the data files.
    pub fn destination(&self) -> Result<&str, String> {
        match parse_arn(&self.destination_bucket) {
            Some(arn) if arn.service == "s3" && !arn.resource.is_empty() => Ok(arn.resource),
            None if !self.destination_bucket.is_empty() => Ok(&self.destination_bucket),
            _ => Err(format!(
                "destinationBucket {:?} is not a bucket ARN",
                self.destination_bucket
            )),
        }
    }
}

/// Where each column the backfill uses sits in a data file's rows (from `fileSchema`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    pub bucket: usize,
    pub key: usize,
    pub version_id: Option<usize>,
    pub is_latest: Option<usize>,
    pub is_delete_marker: Option<usize>,
    pub size: Option<usize>,
    pub last_modified: Option<usize>,
    pub etag: Option<usize>,
    /// Fields per row.
    pub count: usize,
}

impl Columns {
    pub fn from_schema(schema: &str) -> Result<Columns, String> {
        let names: Vec<&str> = schema.split(',').map(str::trim).collect();
        let at = |name: &str| names.iter().position(|n| n.eq_ignore_ascii_case(name));
        let required = |name: &str| {
            at(name).ok_or_else(|| format!("fileSchema {schema:?} has no {name} column"))
        };
        Ok(Columns {
            bucket: required("Bucket")?,
            key: required("Key")?,
            version_id: at("VersionId"),
            is_latest: at("IsLatest"),
            is_delete_marker: at("IsDeleteMarker"),
            size: at("Size"),
            last_modified: at("LastModifiedDate"),
            etag: at("ETag"),
            count: names.len(),
        })
    }
}

/// One row of a data file.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    /// The current version of an object.
    Object(Listed),
    /// An older version, or a delete marker: nothing to backfill.
    NotLatest,
}

/// Reads one row; `Err` says what is wrong with it.
pub fn parse_row(record: &csv::StringRecord, cols: &Columns) -> Result<Row, String> {
    if record.len() < cols.count {
        return Err(format!(
            "a row has {} fields, the schema {}",
            record.len(),
            cols.count
        ));
    }
    let field = |i: Option<usize>| i.map(|i| &record[i]).filter(|v| !v.is_empty());
    let flag = |i: Option<usize>| field(i).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if field(cols.is_latest).is_some_and(|v| v.eq_ignore_ascii_case("false"))
        || flag(cols.is_delete_marker)
    {
        return Ok(Row::NotLatest);
    }
    let raw_key = &record[cols.key];
    let key = decode_s3_key(raw_key).map_err(|e| e.to_string())?;
    let size = match field(cols.size) {
        None => 0,
        Some(v) => v
            .parse()
            .map_err(|_| format!("Size {v:?} of {raw_key:?} is not a number"))?,
    };
    let last_modified = match field(cols.last_modified) {
        None => None,
        Some(v) => Some(
            DateTime::from_str(v, DateTimeFormat::DateTime)
                .map_err(|_| format!("LastModifiedDate {v:?} of {raw_key:?} is not a time"))?,
        ),
    };
    Ok(Row::Object(Listed {
        bucket: record[cols.bucket].to_string(),
        key,
        version_id: field(cols.version_id)
            .filter(|v| *v != "null")
            .map(String::from),
        size,
        etag: field(cols.etag).map(|e| e.trim_matches('"').to_string()),
        last_modified,
    }))
}

/// Reads the rows of one data file (gzip or not, as its bytes say), handing each to `each`;
/// stops at the first row that cannot be read, naming it by its number.
pub fn read_rows(
    reader: impl Read,
    cols: &Columns,
    mut each: impl FnMut(Row) -> bool,
) -> Result<u64, String> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut record = csv::StringRecord::new();
    let mut n = 0u64;
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => return Ok(n),
            Ok(true) => {}
            Err(e) => return Err(format!("row {}: {e}", n + 1)),
        }
        n += 1;
        let row = parse_row(&record, cols).map_err(|e| format!("row {n}: {e}"))?;
        if !each(row) {
            return Ok(n);
        }
    }
}

/// The decompressed stream of a data file: gzip when its first bytes say so (`.csv.gz`), as
/// it is otherwise; capped by `MAX_EXPANDED_BYTES` / `MAX_EXPANSION_RATIO`.
pub fn open_data<'a>(
    mut raw: Box<dyn Read + Send + 'a>,
    size: u64,
    limits: &Limits,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    let mut head = Vec::with_capacity(MAGIC_LEN);
    (&mut raw).take(MAGIC_LEN as u64).read_to_end(&mut head)?;
    let codec = match codec_from_magic(&head) {
        Compression::Gzip => Compression::Gzip,
        Compression::Zstd => Compression::Zstd,
        _ => Compression::None,
    };
    let whole: Box<dyn Read + Send + 'a> = Box::new(Cursor::new(head).chain(raw));
    decode::open_stream(codec, whole, &Budget::new(size, limits))
}

/// Reads `manifest.json` at `url`.
pub async fn open(
    store: &S3Store,
    url: &S3Url,
) -> Result<(InventoryManifest, Columns), BackfillError> {
    let body = match store.get_small(&url.bucket, &url.key).await {
        Ok(Some((body, _))) => body,
        Ok(None) => {
            return Err(BackfillError::Usage(format!(
                "--from-inventory {url}: no such object"
            )));
        }
        Err(e) => return Err(BackfillError::s3("GetObject", &url.bucket, &url.key, e)),
    };
    InventoryManifest::parse(&body)
        .map_err(|e| BackfillError::Usage(format!("--from-inventory {url}: {e}")))
}

/// Rows handed over at once by the reading thread (the channel's bound).
const ROW_BUFFER: usize = 1024;

/// Streams the rows of one data file into `rows`, from a blocking thread. Returns the rows read.
pub async fn read_data_file(
    store: &S3Store,
    bucket: &str,
    key: &str,
    cols: Columns,
    limits: Limits,
    rows: mpsc::Sender<Row>,
) -> Result<u64, BackfillError> {
    let info = store
        .head(bucket, key, None)
        .await
        .map_err(|e| BackfillError::s3("HeadObject", bucket, key, e))?;
    let source = store.source(&info, tokio::runtime::Handle::current());
    let (b, k) = (bucket.to_string(), key.to_string());
    tokio::task::spawn_blocking(move || {
        let fail = |message: String| BackfillError::Inventory {
            bucket: b.clone(),
            key: k.clone(),
            message,
        };
        let raw = source
            .read_range(0, source.size())
            .map_err(|e| fail(e.to_string()))?;
        let data = open_data(raw, source.size(), &limits).map_err(|e| fail(e.to_string()))?;
        // A closed channel means the reader stopped: stop reading too.
        read_rows(data, &cols, |row| rows.blocking_send(row).is_ok()).map_err(fail)
    })
    .await
    .map_err(|e| BackfillError::Inventory {
        bucket: bucket.to_string(),
        key: key.to_string(),
        message: format!("reading stopped unexpectedly: {e}"),
    })?
}

/// The channel rows come through (see [`read_data_file`]).
pub fn row_channel() -> (mpsc::Sender<Row>, mpsc::Receiver<Row>) {
    mpsc::channel(ROW_BUFFER)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"{
      "sourceBucket" : "braze-exports",
      "destinationBucket" : "arn:aws:s3:::braze-inventory",
      "version" : "2016-11-30",
      "creationTimestamp" : "1743465600000",
      "fileFormat" : "CSV",
      "fileSchema" : "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass",
      "files" : [ {
        "key" : "inventory/braze-exports/daily/data/7dfc0bdc-f886-473e-956b-99d1ea278f89.csv.gz",
        "size" : 21049,
        "MD5checksum" : "403576ada95ac133c34c810aa0a2e6ee"
      } ]
    }"#;

    #[test]
    fn manifest_json_is_read_and_checked() {
        let (m, cols) = InventoryManifest::parse(MANIFEST.as_bytes()).unwrap();
        assert_eq!(m.source_bucket, "braze-exports");
        assert_eq!(m.destination().unwrap(), "braze-inventory");
        assert_eq!(m.files.len(), 1);
        assert_eq!(m.files[0].size, 21049);
        assert_eq!(
            cols,
            Columns {
                bucket: 0,
                key: 1,
                version_id: Some(2),
                is_latest: Some(3),
                is_delete_marker: Some(4),
                size: Some(5),
                last_modified: Some(6),
                etag: Some(7),
                count: 9,
            }
        );
        let parquet = MANIFEST.replace("\"CSV\"", "\"Parquet\"");
        let err = InventoryManifest::parse(parquet.as_bytes()).unwrap_err();
        assert!(err.contains("only CSV"), "{err}");
        let keyless = MANIFEST.replace("Bucket, Key,", "Bucket,");
        let err = InventoryManifest::parse(keyless.as_bytes()).unwrap_err();
        assert!(err.contains("no Key column"), "{err}");
        assert!(InventoryManifest::parse(b"{}").is_err());
    }

    #[test]
    fn rows_decode_keys_and_skip_old_versions() {
        let cols = Columns::from_schema(
            "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag",
        )
        .unwrap();
        let data = concat!(
            "\"braze-exports\",\"segment-export/6f1e/2025-04-01/users-a1b2c3.zip\",\"3HL4kqtJ\",\"true\",\"false\",\"2048\",\"2025-04-01T17:42:22.000Z\",\"9b2cf535f27731c974343645a3985328\"\n",
            // Form-URL-encoded: `+` is a space, `%2B` a plus, `%3D` an equals sign.
            "\"braze-exports\",\"reports/engagement+report%2B1.csv\",\"\",\"true\",\"false\",\"10\",\"2025-04-02T00:00:00.000Z\",\"e2\"\n",
            "\"braze-exports\",\"currents/x/event_type%3Dusers.messages.email.Send/a.avro\",\"v0\",\"false\",\"false\",\"10\",\"2025-03-02T00:00:00.000Z\",\"e3\"\n",
            "\"braze-exports\",\"deleted.zip\",\"v9\",\"true\",\"true\",\"\",\"2025-03-02T00:00:00.000Z\",\"\"\n",
            "\"braze-exports\",\"%E6%97%A5%E6%9C%AC/null.csv\",\"null\",\"true\",\"false\",\"1\",\"2025-04-03T00:00:00.000Z\",\"e4\"\n",
        );
        let mut rows = Vec::new();
        let n = read_rows(data.as_bytes(), &cols, |r| {
            rows.push(r);
            true
        })
        .unwrap();
        assert_eq!(n, 5);
        let Row::Object(first) = &rows[0] else {
            panic!("{:?}", rows[0])
        };
        assert_eq!(first.key, "segment-export/6f1e/2025-04-01/users-a1b2c3.zip");
        assert_eq!(first.version_id.as_deref(), Some("3HL4kqtJ"));
        assert_eq!(first.size, 2048);
        assert_eq!(
            first.etag.as_deref(),
            Some("9b2cf535f27731c974343645a3985328")
        );
        assert_eq!(
            first.last_modified,
            Some(DateTime::from_secs(
                1_743_465_600 + 17 * 3600 + 42 * 60 + 22
            ))
        );
        let Row::Object(second) = &rows[1] else {
            panic!("{:?}", rows[1])
        };
        assert_eq!(second.key, "reports/engagement report+1.csv");
        assert_eq!(second.version_id, None);
        assert_eq!(rows[2], Row::NotLatest);
        assert_eq!(rows[3], Row::NotLatest);
        let Row::Object(last) = &rows[4] else {
            panic!("{:?}", rows[4])
        };
        assert_eq!(
            (last.key.as_str(), last.version_id.as_deref()),
            ("日本/null.csv", None)
        );
    }

    #[test]
    fn current_version_reports_need_only_bucket_and_key() {
        let cols = Columns::from_schema("Bucket, Key").unwrap();
        let mut rows = Vec::new();
        read_rows(&b"\"b\",\"a+b.zip\"\n"[..], &cols, |r| {
            rows.push(r);
            true
        })
        .unwrap();
        let Row::Object(o) = &rows[0] else {
            panic!("{rows:?}")
        };
        assert_eq!(
            (o.key.as_str(), o.size, o.last_modified),
            ("a b.zip", 0, None)
        );
    }

    #[test]
    fn bad_rows_are_named_by_number() {
        let cols = Columns::from_schema("Bucket, Key, Size").unwrap();
        let cases: &[(&str, &str)] = &[
            (
                "\"b\",\"k\",\"1\"\n\"b\",\"k\"\n",
                "row 2: a row has 2 fields",
            ),
            ("\"b\",\"k\",\"lots\"\n", "row 1: Size \"lots\""),
            ("\"b\",\"bad%zz\",\"1\"\n", "row 1:"),
        ];
        for (data, want) in cases {
            let err = read_rows(data.as_bytes(), &cols, |_| true).unwrap_err();
            assert!(err.starts_with(want), "{data:?}: {err}");
        }
    }

    #[test]
    fn data_files_are_read_gzipped_or_plain() {
        use std::io::Write;
        let csv = b"\"b\",\"a.zip\"\n\"b\",\"c.zip\"\n".to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&csv).unwrap();
        let gz = gz.finish().unwrap();
        let cols = Columns::from_schema("Bucket, Key").unwrap();
        for bytes in [csv.clone(), gz, b"\"b\"".to_vec()] {
            let size = bytes.len() as u64;
            let stream = open_data(Box::new(Cursor::new(bytes)), size, &Limits::default()).unwrap();
            let mut keys = Vec::new();
            let read = read_rows(stream, &cols, |r| {
                if let Row::Object(o) = r {
                    keys.push(o.key);
                }
                true
            });
            match read {
                Ok(_) => assert_eq!(keys, ["a.zip", "c.zip"]),
                Err(e) => assert!(e.contains("row 1: a row has 1 fields"), "{e}"),
            }
        }
    }
}
