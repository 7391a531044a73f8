//! Which listed objects a backfill picks: pure decisions over what a listing (or an inventory
//! row) and the manifests listing say, with case tables.
//!
//! An object is looked at twice at most. [`first_look`] needs only listings: an object with no
//! manifest is picked (it was never processed), one whose manifest is older than the object is
//! picked (the manifest describes an earlier upload: a manifest cannot have been written before
//! the bytes it describes existed, and S3's `LastModified` of an object is never later than its
//! upload's end). Anything else needs the manifest itself ([`second_look`]), one GET: it is
//! current when it is the object's final result: [`Manifest::is_final_for`], the one rule a
//! notification follows too.

use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};

use crate::config::KeyFilter;
use crate::manifest::{FailureCause, Manifest, Status};

/// One object as a listing or an inventory row describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub bucket: String,
    pub key: String,
    /// Only from an inventory that lists versions; `None` for `null` versions.
    pub version_id: Option<String>,
    pub size: u64,
    /// Without quotes.
    pub etag: Option<String>,
    pub last_modified: Option<DateTime>,
}

/// What the manifests listing says of one manifest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ManifestEntry {
    pub last_modified: Option<DateTime>,
}

/// `--reprocess` and `--failed-only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mode {
    pub reprocess: bool,
    pub failed_only: bool,
}

/// Why an object is not picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    /// A key under `OUTPUT_PREFIX` of the output bucket: an output of the fetcher.
    Output,
    /// A zero-byte key ending in `/`: a folder placeholder, not a file.
    Folder,
    /// Left out by `--include` / `--exclude`, or by `INCLUDE_KEYS` / `EXCLUDE_KEYS`.
    Filtered,
    /// Last modified before `--since`.
    BeforeSince,
    /// An inventory row for an older version, or a delete marker.
    NotLatest,
    /// Its manifest is current: the object is done.
    Done,
    /// `--failed-only`: its manifest is not `failed`, or it has none.
    NotFailed,
    /// `--failed-only` without `--reprocess`: failed because of the object itself (corrupt,
    /// truncated); indexing the same bytes again gives the same result, so the function would
    /// answer it as a duplicate.
    FailedByObject,
}

impl Skip {
    pub const ALL: [Skip; 8] = [
        Skip::Output,
        Skip::Folder,
        Skip::Filtered,
        Skip::BeforeSince,
        Skip::NotLatest,
        Skip::Done,
        Skip::NotFailed,
        Skip::FailedByObject,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Skip::Output => "outputs of export-fetcher (under OUTPUT_PREFIX)",
            Skip::Folder => "folder placeholders (empty keys ending in /)",
            Skip::Filtered => "left out by --include/--exclude or INCLUDE_KEYS/EXCLUDE_KEYS",
            Skip::BeforeSince => "last modified before --since",
            Skip::NotLatest => "older versions and delete markers (inventory)",
            Skip::Done => "already done (a current manifest)",
            Skip::NotFailed => "not failed (--failed-only)",
            Skip::FailedByObject => {
                "failed because of the object itself (add --reprocess to index them again)"
            }
        }
    }
}

/// What is backfilled, before any manifest is looked at: the prefix, the key filters, `--since`
/// and the loop guard.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The key prefix (`s3://BUCKET/PREFIX`).
    pub prefix: String,
    /// `--include` / `--exclude`.
    pub keys: KeyFilter,
    /// `INCLUDE_KEYS` / `EXCLUDE_KEYS` of the configuration: what the function would skip.
    pub configured: KeyFilter,
    pub since: Option<DateTime>,
    /// `OUTPUT_BUCKET` (`None`: the source bucket).
    pub output_bucket: Option<String>,
    pub output_prefix: String,
}

impl Scope {
    /// `Err` with the reason when the object is out of scope.
    pub fn check(&self, obj: &Listed) -> Result<(), Skip> {
        let out_bucket = self.output_bucket.as_deref().unwrap_or(&obj.bucket);
        if out_bucket == obj.bucket && obj.key.starts_with(&self.output_prefix) {
            return Err(Skip::Output);
        }
        if obj.key.ends_with('/') && obj.size == 0 {
            return Err(Skip::Folder);
        }
        if !obj.key.starts_with(&self.prefix) {
            return Err(Skip::Filtered);
        }
        if self.keys.check(&obj.key).is_err() || self.configured.check(&obj.key).is_err() {
            return Err(Skip::Filtered);
        }
        if let (Some(since), Some(modified)) = (&self.since, &obj.last_modified)
            && modified < since
        {
            return Err(Skip::BeforeSince);
        }
        Ok(())
    }
}

/// The decision the listings allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstLook {
    Pick,
    Skip(Skip),
    /// Only the manifest itself can tell: GET it, then [`second_look`].
    ReadManifest,
}

/// Decides from the listings alone when it can (see the module's documentation).
pub fn first_look(obj: &Listed, manifest: Option<&ManifestEntry>, mode: Mode) -> FirstLook {
    let Some(manifest) = manifest else {
        return if mode.failed_only {
            FirstLook::Skip(Skip::NotFailed)
        } else {
            FirstLook::Pick
        };
    };
    if mode.failed_only {
        return FirstLook::ReadManifest;
    }
    if mode.reprocess {
        return FirstLook::Pick;
    }
    match (&manifest.last_modified, &obj.last_modified) {
        (Some(written), Some(modified)) if written < modified => FirstLook::Pick,
        _ => FirstLook::ReadManifest,
    }
}

/// Decides with the manifest in hand (`None`: it vanished, or it is not a manifest).
pub fn second_look(obj: &Listed, manifest: Option<&Manifest>, mode: Mode) -> Result<(), Skip> {
    let Some(m) = manifest else {
        return if mode.failed_only {
            Err(Skip::NotFailed)
        } else {
            Ok(())
        };
    };
    if mode.failed_only {
        if m.status != Status::Failed {
            return Err(Skip::NotFailed);
        }
        // Absent in manifests older than the field: read as the object's fault, as the
        // pipeline does.
        let cause = m.failure.map_or(FailureCause::Object, |f| f.cause);
        if !mode.reprocess
            && cause == FailureCause::Object
            && m.source
                .is_version(obj.version_id.as_deref(), obj.etag.as_deref(), obj.size)
        {
            return Err(Skip::FailedByObject);
        }
        return Ok(());
    }
    if !mode.reprocess && already_done(m, obj) {
        return Err(Skip::Done);
    }
    Ok(())
}

/// Whether the manifest is this version's final result ([`Manifest::is_final_for`], the rule a
/// notification follows too).
pub fn already_done(m: &Manifest, obj: &Listed) -> bool {
    m.is_final_for(obj.version_id.as_deref(), obj.etag.as_deref(), obj.size)
}

/// `--since`: a date (`2025-04-01`, midnight UTC) or an RFC 3339 time
/// (`2025-04-01T17:00:00Z`).
pub fn parse_since(s: &str) -> Result<DateTime, String> {
    let s = s.trim();
    let full = if s.len() == 10 && s.as_bytes().get(4) == Some(&b'-') {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    DateTime::from_str(&full, DateTimeFormat::DateTime).map_err(|_| {
        format!(
            "--since {:?}: expected a date (2025-04-01) or an RFC 3339 time (2025-04-01T17:00:00Z)",
            crate::sanitize_for_log(s)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Failure;

    const KEY: &str = "segment-export/6f1e2d3c/2025-04-01/0b6c1a6e-2f4c-4d7e-9f1a-3a5b7c9d1e2f-1743465600/114f0226319130e1a4770f2602b5639a.zip";

    fn obj(etag: &str, size: u64, modified: i64) -> Listed {
        Listed {
            bucket: "braze-exports".into(),
            key: KEY.into(),
            version_id: None,
            size,
            etag: Some(etag.into()),
            last_modified: Some(DateTime::from_secs(modified)),
        }
    }

    fn manifest(status: Status, cause: Option<FailureCause>, etag: &str, size: u64) -> Manifest {
        let json = serde_json::json!({
            "manifest_version": 1, "status": status.as_str(), "kind": "api_user_export",
            "source": {"bucket": "braze-exports", "key": KEY, "size": size, "etag": etag,
                       "version_id": null, "sequencer": null, "event_time": null, "event_name": null},
            "braze": {}, "compression": "zip", "parts": [],
            "totals": {"parts": 0, "records": 0, "bytes": 0, "compressed_bytes": 0},
            "errors": [], "manifest_key": "k", "processed_at": "2025-04-01T00:00:00.000Z",
            "duration_ms": 1, "producer": {"name": "export-fetcher", "version": "0"}
        });
        let mut m: Manifest = serde_json::from_value(json).unwrap();
        m.failure = cause.map(|cause| Failure { cause });
        m
    }

    const PLAIN: Mode = Mode {
        reprocess: false,
        failed_only: false,
    };
    const REPROCESS: Mode = Mode {
        reprocess: true,
        failed_only: false,
    };
    const FAILED: Mode = Mode {
        reprocess: false,
        failed_only: true,
    };
    const FAILED_REPROCESS: Mode = Mode {
        reprocess: true,
        failed_only: true,
    };

    #[test]
    fn first_look_cases() {
        let entry = |t: i64| ManifestEntry {
            last_modified: Some(DateTime::from_secs(t)),
        };
        let o = obj("e1", 10, 1000);
        // (manifest written at, mode, decision)
        let cases = [
            (None, PLAIN, FirstLook::Pick),
            (None, REPROCESS, FirstLook::Pick),
            (None, FAILED, FirstLook::Skip(Skip::NotFailed)),
            (None, FAILED_REPROCESS, FirstLook::Skip(Skip::NotFailed)),
            // Written before the object: an earlier upload's manifest.
            (Some(entry(999)), PLAIN, FirstLook::Pick),
            // Written after (or in the same second): only the manifest can tell.
            (Some(entry(1000)), PLAIN, FirstLook::ReadManifest),
            (Some(entry(1001)), PLAIN, FirstLook::ReadManifest),
            (Some(entry(1001)), REPROCESS, FirstLook::Pick),
            (Some(entry(999)), FAILED, FirstLook::ReadManifest),
            (Some(entry(1001)), FAILED_REPROCESS, FirstLook::ReadManifest),
            (
                Some(ManifestEntry {
                    last_modified: None,
                }),
                PLAIN,
                FirstLook::ReadManifest,
            ),
        ];
        for (m, mode, want) in cases {
            assert_eq!(first_look(&o, m.as_ref(), mode), want, "{m:?} {mode:?}");
        }
    }

    #[test]
    fn second_look_cases() {
        use FailureCause::*;
        use Status::*;
        let o = obj("e1", 10, 1000);
        let env = Some(Environment);
        // (manifest (status, cause, etag, size), mode, decision)
        let cases: Vec<(Option<Manifest>, Mode, Result<(), Skip>)> = vec![
            (None, PLAIN, Ok(())),
            (None, FAILED, Err(Skip::NotFailed)),
            (
                Some(manifest(Complete, None, "e1", 10)),
                PLAIN,
                Err(Skip::Done),
            ),
            (
                Some(manifest(Partial, None, "e1", 10)),
                PLAIN,
                Err(Skip::Done),
            ),
            // Another version of the key: not this object's result.
            (Some(manifest(Complete, None, "e0", 10)), PLAIN, Ok(())),
            (Some(manifest(Complete, None, "e1", 11)), PLAIN, Ok(())),
            // A failure caused by the object is its result; one caused by the environment
            // or a missing object is processed again.
            (
                Some(manifest(Failed, Some(Object), "e1", 10)),
                PLAIN,
                Err(Skip::Done),
            ),
            (
                Some(manifest(Failed, None, "e1", 10)),
                PLAIN,
                Err(Skip::Done),
            ),
            (Some(manifest(Failed, env, "e1", 10)), PLAIN, Ok(())),
            (
                Some(manifest(Failed, Some(Missing), "e1", 10)),
                PLAIN,
                Ok(()),
            ),
            (Some(manifest(Skipped, None, "e1", 10)), PLAIN, Ok(())),
            (Some(manifest(Complete, None, "e1", 10)), REPROCESS, Ok(())),
            // --failed-only
            (
                Some(manifest(Complete, None, "e1", 10)),
                FAILED,
                Err(Skip::NotFailed),
            ),
            (
                Some(manifest(Partial, None, "e1", 10)),
                FAILED,
                Err(Skip::NotFailed),
            ),
            (Some(manifest(Failed, env, "e1", 10)), FAILED, Ok(())),
            (
                Some(manifest(Failed, Some(Missing), "e1", 10)),
                FAILED,
                Ok(()),
            ),
            (
                Some(manifest(Failed, Some(Object), "e1", 10)),
                FAILED,
                Err(Skip::FailedByObject),
            ),
            (
                Some(manifest(Failed, Some(Object), "e0", 10)),
                FAILED,
                Ok(()),
            ),
            (
                Some(manifest(Failed, Some(Object), "e1", 10)),
                FAILED_REPROCESS,
                Ok(()),
            ),
            (
                Some(manifest(Complete, None, "e1", 10)),
                FAILED_REPROCESS,
                Err(Skip::NotFailed),
            ),
        ];
        for (i, (m, mode, want)) in cases.into_iter().enumerate() {
            let shown = m
                .as_ref()
                .map(|m| (m.status, m.failure, m.source.etag.clone(), m.source.size));
            assert_eq!(
                second_look(&o, m.as_ref(), mode),
                want,
                "case {i}: {shown:?} {mode:?}"
            );
        }
    }

    #[test]
    fn versions_decide_when_both_sides_have_one() {
        let mut m = manifest(Status::Complete, None, "e1", 10);
        m.source.version_id = Some("v1".into());
        let mut o = obj("other", 99, 1000);
        o.version_id = Some("v1".into());
        assert!(already_done(&m, &o));
        o.version_id = Some("v2".into());
        assert!(!already_done(&m, &o));
        // Only one side versioned: ETag and size decide.
        o.version_id = None;
        assert!(!already_done(&m, &o));
        let o = obj("e1", 10, 1000);
        assert!(already_done(&m, &o));
    }

    #[test]
    fn scope_cases() {
        let scope = Scope {
            prefix: "segment-export/".into(),
            keys: KeyFilter::new(&["**/*.zip".into()], &["**/tmp/**".into()]).unwrap(),
            configured: KeyFilter::new(&[], &["**/*.part".into()]).unwrap(),
            since: Some(parse_since("2025-04-01").unwrap()),
            output_bucket: None,
            output_prefix: "export-fetcher/".into(),
        };
        let at = |key: &str, size: u64, modified: &str| Listed {
            bucket: "braze-exports".into(),
            key: key.into(),
            version_id: None,
            size,
            etag: None,
            last_modified: Some(parse_since(modified).unwrap()),
        };
        let cases = [
            (at(KEY, 10, "2025-04-01"), Ok(())),
            (at(KEY, 10, "2025-03-31T23:59:59Z"), Err(Skip::BeforeSince)),
            (
                at("export-fetcher/manifests/x.zip", 10, "2025-05-01"),
                Err(Skip::Output),
            ),
            (at("segment-export/a/", 0, "2025-05-01"), Err(Skip::Folder)),
            (
                at("segment-export/a/tmp/x.zip", 10, "2025-05-01"),
                Err(Skip::Filtered),
            ),
            (
                at("segment-export/a/x.zip.part", 10, "2025-05-01"),
                Err(Skip::Filtered),
            ),
            (at("currents/a.zip", 10, "2025-05-01"), Err(Skip::Filtered)),
        ];
        for (o, want) in cases {
            assert_eq!(scope.check(&o), want, "{}", o.key);
        }
        // Outputs in a bucket of their own: the same key is a source there.
        let elsewhere = Scope {
            output_bucket: Some("braze-exports-outputs".into()),
            prefix: String::new(),
            keys: KeyFilter::new(&[], &[]).unwrap(),
            ..scope
        };
        assert_eq!(
            elsewhere.check(&at("export-fetcher/x.zip", 10, "2025-05-01")),
            Ok(())
        );
    }

    #[test]
    fn since_accepts_dates_and_times() {
        assert_eq!(
            parse_since("2025-04-01").unwrap(),
            DateTime::from_secs(1_743_465_600)
        );
        assert_eq!(
            parse_since("2025-04-01T17:00:00Z").unwrap(),
            DateTime::from_secs(1_743_465_600 + 17 * 3600)
        );
        for bad in ["yesterday", "2025-13-01", "01/04/2025", ""] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }
}
