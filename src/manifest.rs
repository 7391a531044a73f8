//! The manifest v1 (a public contract), its JSON Schema and the deterministic output keys.
//!
//! Field names here are read by downstream systems: extend, never rename. The JSON Schema that
//! describes them is `schema/manifest.v1.schema.json`, embedded as [`SCHEMA_JSON`].

use serde::{Deserialize, Serialize};

/// Version of the manifest format written by this build.
pub const MANIFEST_VERSION: u32 = 1;

/// The JSON Schema of the manifest, as published in the repository.
pub const SCHEMA_JSON: &str = include_str!("../schema/manifest.v1.schema.json");

/// At most this many record errors are listed per part; the rest are counted in the message of
/// the last entry so the manifest stays bounded.
pub const MAX_LISTED_ERRORS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every part fully decoded, every record valid.
    Complete,
    /// Every stream decoded to its end, but some records are invalid (listed per part).
    Partial,
    /// Some stream or archive could not be decoded to its end, or a limit was crossed.
    Failed,
    /// Nothing was done for this object (filtered out, loop guard, already processed).
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Complete => "complete",
            Status::Partial => "partial",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    ApiUserExport,
    DashboardCsvExport,
    Currents,
    MessageArchive,
    Report,
    Unknown,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ApiUserExport => "api_user_export",
            Kind::DashboardCsvExport => "dashboard_csv_export",
            Kind::Currents => "currents",
            Kind::MessageArchive => "message_archive",
            Kind::Report => "report",
            Kind::Unknown => "unknown",
        }
    }
}

/// The container codec, decided from the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    Zip,
    Gzip,
    Zstd,
    None,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Zip => "zip",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        }
    }
}

/// The content format of one decompressed part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Jsonl,
    Csv,
    Avro,
    Json,
    Lines,
    Binary,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Avro => "avro",
            Format::Json => "json",
            Format::Lines => "lines",
            Format::Binary => "binary",
        }
    }
}

/// The object the manifest describes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Bucket of the object; empty for a local file.
    pub bucket: String,
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub sequencer: Option<String>,
    pub event_time: Option<String>,
    pub event_name: Option<String>,
    /// The S3 Batch Operations job (or `backfill --local` run) whose task wrote this manifest;
    /// absent for notifications. A job processes each object version at most once, even when
    /// its tasks are redriven or list the object twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_job_id: Option<String>,
}

/// Braze metadata carried by the key; only the fields the key really has are present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Braze {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub segment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub export_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub object_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub requested_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub integration_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub event_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub date_hour: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub currents_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dispatch_id: Option<String>,
}

/// Where a part was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    pub bucket: String,
    pub key: String,
}

/// One bad record inside a part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordError {
    /// 0-based ordinal of the record among all records of the part (bad ones included).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub record: Option<u64>,
    /// 1-based line number in the decompressed part, where lines mean something.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub line: Option<u64>,
    pub message: String,
}

/// One decompressed part (a zip member, or the whole stream of a single-stream object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    pub name: String,
    pub format: Format,
    pub records: u64,
    pub bytes: u64,
    pub compressed_bytes: u64,
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub columns: Option<Vec<String>>,
    /// Avro: lowercase hex SHA-256 of the writer schema's Parsing Canonical Form.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub schema_fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub delimiter: Option<String>,
    pub offsets: Vec<[u64; 2]>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub output: Option<Output>,
    #[serde(default)]
    pub errors: Vec<RecordError>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub parts: u64,
    pub records: u64,
    pub bytes: u64,
    pub compressed_bytes: u64,
}

/// An object-level error: why the manifest is not `complete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectError {
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub part: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Producer {
    pub name: String,
    pub version: String,
}

impl Default for Producer {
    fn default() -> Self {
        Producer {
            name: env!("CARGO_PKG_NAME").to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// What a `failed` manifest's failure is a property of, and so whether a redelivered
/// notification processes the object again (see [`FailureCause::reprocess_on_redelivery`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCause {
    /// The bytes themselves: corrupt, truncated, not decodable, an encrypted archive. Processing
    /// them again gives the same manifest, so a redelivery does not.
    Object,
    /// The environment: a decompression limit crossed (a limit set too low; a bomb crosses one
    /// too, and costs at most the limit each time), permissions, the network. Processed again on
    /// redelivery.
    Environment,
    /// The object did not exist (any more) when its notification was processed. Any later
    /// upload of the key is processed in full, even with the same bytes.
    Missing,
}

impl FailureCause {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCause::Object => "object",
            FailureCause::Environment => "environment",
            FailureCause::Missing => "missing",
        }
    }

    /// Whether a manifest failed for this cause still counts as the object's result when the
    /// notification comes again: only when the object is at fault.
    pub fn reprocess_on_redelivery(self) -> bool {
        !matches!(self, FailureCause::Object)
    }
}

/// Why the manifest is `failed` (present only then).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub cause: FailureCause,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub manifest_version: u32,
    pub status: Status,
    pub kind: Kind,
    pub source: Source,
    pub braze: Braze,
    pub compression: Compression,
    pub parts: Vec<Part>,
    pub totals: Totals,
    pub errors: Vec<ObjectError>,
    /// Set on `failed` manifests: whether the object or the environment is at fault. Absent in
    /// manifests written before the field existed (read as `object`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub failure: Option<Failure>,
    pub manifest_key: String,
    /// 1 for the first manifest of an object version; one higher each time the version is
    /// reprocessed on request (Batch Operations `reprocess`, `backfill --reprocess`). Each
    /// generation is forwarded once. Absent in manifests written before the field existed
    /// (read as 1).
    #[serde(default = "first_generation")]
    pub generation: u64,
    pub processed_at: String,
    pub duration_ms: u64,
    pub producer: Producer,
}

impl Manifest {
    /// Recomputes `totals` from `parts`.
    pub fn compute_totals(&mut self) {
        self.totals = Totals {
            parts: self.parts.len() as u64,
            records: self.parts.iter().map(|p| p.records).sum(),
            bytes: self.parts.iter().map(|p| p.bytes).sum(),
            compressed_bytes: self.parts.iter().map(|p| p.compressed_bytes).sum(),
        };
    }

    /// Serialises the manifest as pretty JSON (the form written to S3 and printed by `index`).
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("manifest serialises: plain data")
    }

    /// Whether its failure is one a redelivered notification processes again (the
    /// environment, or a missing object).
    pub fn reprocessable(&self) -> bool {
        self.failure
            .is_some_and(|f| f.cause.reprocess_on_redelivery())
    }

    /// Whether it is the final result of this version of its object (version id, ETag, size),
    /// so that a redelivered notification only forwards it again and a backfill passes the
    /// object by: not a `skipped` one, not a failure a redelivery processes again, and for
    /// this very version. A `missing` manifest in particular never makes a later upload of the
    /// same bytes (same ETag and size) look done.
    pub fn is_final_for(&self, version_id: Option<&str>, etag: Option<&str>, size: u64) -> bool {
        self.status != Status::Skipped
            && !self.reprocessable()
            && self.source.is_version(version_id, etag, size)
    }
}

impl Source {
    /// Whether it names this version of the object: the same version id when both have one,
    /// else the same ETag and size.
    pub fn is_version(&self, version_id: Option<&str>, etag: Option<&str>, size: u64) -> bool {
        match (self.version_id.as_deref(), version_id) {
            (Some(a), Some(b)) => a == b,
            _ => self.etag.is_some() && self.etag.as_deref() == etag && self.size == size,
        }
    }
}

fn first_generation() -> u64 {
    1
}

/// The current time as RFC 3339 UTC with millisecond precision.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&format)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// `<prefix>manifests/<source key>.manifest.json`
pub fn manifest_key(output_prefix: &str, source_key: &str) -> String {
    fit_key(
        format!("{output_prefix}manifests/{source_key}.manifest.json"),
        ".manifest.json",
    )
}

/// `<prefix>parts/<source key>/<part name>`; `part_name` must already be sanitised.
pub fn part_key(output_prefix: &str, source_key: &str, part_name: &str) -> String {
    let file = part_name.rsplit('/').next().unwrap_or(part_name);
    let extension = file
        .rfind('.')
        .map(|dot| &file[dot..])
        .filter(|e| e.len() <= 16)
        .unwrap_or("");
    fit_key(
        format!("{output_prefix}parts/{source_key}/{part_name}"),
        extension,
    )
}

/// The longest key S3 accepts, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// Makes an output key fit in S3's [`MAX_KEY_BYTES`], deterministically: a key that fits is
/// kept as it is; a longer one is cut (at a character boundary) and ends with `~`, the first 16
/// hex digits of the SHA-256 of the whole key, and `keep` (the key's own ending, e.g.
/// `.manifest.json`), so that two long keys never share a shortened one. The manifest still
/// holds the real source key and part name.
pub fn fit_key(key: String, keep: &str) -> String {
    if key.len() <= MAX_KEY_BYTES {
        return key;
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let keep = if keep.len() > 64 { "" } else { keep };
    let mut cut = MAX_KEY_BYTES.saturating_sub(1 + hash.len() + keep.len());
    while !key.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{hash}{keep}", &key[..cut])
}

/// The part key of one version of the source: [`part_key`] for an object without a version id
/// (unchanged), `<prefix>parts/<source key>/@<version id>/<part name>` for a versioned one, so
/// that the parts of two versions of a key never overwrite each other: a run of an older
/// version, late or concurrent, cannot change the bytes a newer version's manifest certifies.
pub fn part_key_of(
    output_prefix: &str,
    source_key: &str,
    version_id: Option<&str>,
    part_name: &str,
) -> String {
    match version_id.filter(|v| !v.is_empty() && *v != "null") {
        None => part_key(output_prefix, source_key, part_name),
        Some(v) => format!("{output_prefix}parts/{source_key}/@{v}/{part_name}"),
    }
}

/// Turns an archive member name into a relative path that cannot escape its parent folder:
/// `\` becomes `/`, drive letters, empty, `.` and `..` components are dropped. Returns `None`
/// when nothing is left.
pub fn sanitize_part_name(name: &str) -> Option<String> {
    let unified = name.replace('\\', "/");
    let mut parts: Vec<&str> = Vec::new();
    for (i, component) in unified.split('/').enumerate() {
        let is_drive = i == 0
            && component.len() == 2
            && component.as_bytes()[0].is_ascii_alphabetic()
            && component.as_bytes()[1] == b':';
        if component.is_empty() || component == "." || component == ".." || is_drive {
            continue;
        }
        parts.push(component);
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_keys_always_fit_in_s3s_limit_and_stay_distinct() {
        let prefix = "export-fetcher/";
        let short = "segment-export/a/2024-01-01/x-1/y.zip";
        assert_eq!(
            manifest_key(prefix, short),
            format!("{prefix}manifests/{short}.manifest.json")
        );
        assert_eq!(
            part_key(prefix, short, "a/b.txt"),
            format!("{prefix}parts/{short}/a/b.txt")
        );
        // Source keys of up to 1,024 bytes (S3's own limit), in one- to four-byte characters.
        for unit in ["k", "é", "€", "😀"] {
            let long = unit.repeat(1024 / unit.len());
            let other = format!("{}x", &long[..long.len() - unit.len()]);
            let m = manifest_key(prefix, &long);
            assert!(m.len() <= MAX_KEY_BYTES, "{}", m.len());
            assert!(m.starts_with("export-fetcher/manifests/"));
            assert!(m.ends_with(".manifest.json"), "{m}");
            assert_eq!(m, manifest_key(prefix, &long), "deterministic");
            assert_ne!(m, manifest_key(prefix, &other), "distinct");
            let p = part_key(prefix, &long, "members/users.txt");
            assert!(p.len() <= MAX_KEY_BYTES && p.ends_with(".txt"), "{p}");
            assert_ne!(p, part_key(prefix, &long, "members/users2.txt"));
        }
    }

    #[test]
    fn sanitize_part_name_cases() {
        let cases: &[(&str, Option<&str>)] = &[
            ("a.txt", Some("a.txt")),
            ("dir/a.txt", Some("dir/a.txt")),
            ("../../evil.txt", Some("evil.txt")),
            ("/abs/path.txt", Some("abs/path.txt")),
            ("C:\\win\\x.txt", Some("win/x.txt")),
            ("a/../../b.txt", Some("a/b.txt")),
            ("./././", None),
            ("..", None),
            ("dir//x", Some("dir/x")),
        ];
        for (input, want) in cases {
            assert_eq!(
                sanitize_part_name(input).as_deref(),
                *want,
                "sanitize_part_name({input:?})"
            );
        }
    }

    #[test]
    fn output_keys_are_deterministic() {
        assert_eq!(
            manifest_key("export-fetcher/", "segment-export/s/2024-01-01/x.zip"),
            "export-fetcher/manifests/segment-export/s/2024-01-01/x.zip.manifest.json"
        );
        assert_eq!(
            part_key("export-fetcher/", "a/b.zip", "m.txt"),
            "export-fetcher/parts/a/b.zip/m.txt"
        );
        for unversioned in [None, Some("null"), Some("")] {
            assert_eq!(
                part_key_of("p/", "a/b.zip", unversioned, "m.txt"),
                "p/parts/a/b.zip/m.txt",
                "{unversioned:?}"
            );
        }
        assert_eq!(
            part_key_of("p/", "a/b.zip", Some("3HL4kqtJlcpXroDTDmJ"), "m.txt"),
            "p/parts/a/b.zip/@3HL4kqtJlcpXroDTDmJ/m.txt"
        );
    }

    #[test]
    fn only_an_object_failure_is_left_alone_on_redelivery() {
        let cases = [
            (FailureCause::Object, false),
            (FailureCause::Environment, true),
            (FailureCause::Missing, true),
        ];
        for (cause, again) in cases {
            assert_eq!(cause.reprocess_on_redelivery(), again, "{cause:?}");
            let json = serde_json::to_value(Failure { cause }).unwrap();
            assert_eq!(json["cause"], cause.as_str(), "{cause:?}");
        }
    }

    #[test]
    fn schema_is_valid_json() {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA_JSON).unwrap();
        assert_eq!(schema["title"], "export-fetcher manifest v1");
    }
}
