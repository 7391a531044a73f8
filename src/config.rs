//! Typed configuration from the environment, validated once at start-up with clear errors.
//!
//! The variable names are a public contract (the README's "Configuration" table, and
//! `template.yaml` sets them); every variable has a default so that `export-fetcher index` works
//! with an empty environment.

use std::collections::HashMap;

use thiserror::Error;

/// Decompression and parsing limits. Every decoder is capped by these while it streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `MAX_OBJECT_BYTES`: objects larger than this are not read at all.
    pub max_object_bytes: u64,
    /// `MAX_EXPANDED_BYTES`: decompressed bytes of all parts of one object together.
    pub max_expanded_bytes: u64,
    /// `MAX_EXPANSION_RATIO`: decompressed bytes of a stream or member divided by its compressed
    /// bytes (streams that expand to less than [`RATIO_FLOOR_BYTES`] are never flagged).
    pub max_expansion_ratio: u64,
    /// `MAX_ARCHIVE_ENTRIES`: entries a zip archive may declare.
    pub max_archive_entries: u64,
    /// `MAX_RECORD_BYTES`: the longest single record (JSON line, CSV row, Avro block) held in memory.
    pub max_record_bytes: u64,
}

/// S3's most parts in one multipart upload.
pub const S3_MAX_PARTS: u64 = 10_000;
/// S3's largest part of a multipart upload.
pub const S3_MAX_PART_BYTES: u64 = 5 << 30;
/// S3's longest object key, in bytes (UTF-8).
pub const S3_MAX_KEY_BYTES: usize = 1024;
/// The longest `OUTPUT_PREFIX`: every output key keeps at least `S3_MAX_KEY_BYTES` minus this
/// (256 bytes) for its layout (`manifests/`, `deliveries/`, `parts/`…) and the source key and
/// part name, shortened when they are long.
pub const MAX_OUTPUT_PREFIX_BYTES: usize = S3_MAX_KEY_BYTES - 256;

/// Below this many decompressed bytes the expansion ratio is not enforced: a tiny file of
/// repetitive text is harmless whatever its ratio.
pub const RATIO_FLOOR_BYTES: u64 = 1 << 20;

impl Limits {
    /// Bytes per multipart part of an output: `PART_SIZE` (8 MiB), or more, in whole MiB, so
    /// that `max_expanded_bytes` (the largest an output can be) fits in S3's 10,000 parts.
    pub fn part_size(&self) -> u64 {
        let needed = self.max_expanded_bytes.div_ceil(S3_MAX_PARTS);
        (needed.div_ceil(1 << 20) << 20).max(crate::store::s3::PART_SIZE as u64)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_object_bytes: 16 << 30,
            max_expanded_bytes: 64 << 30,
            max_expansion_ratio: 250,
            max_archive_entries: 10_000,
            max_record_bytes: 32 << 20,
        }
    }
}

/// Server-side encryption for everything written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Sse {
    #[default]
    None,
    Aes256,
    Kms {
        key_id: Option<String>,
    },
}

/// `INCLUDE_KEYS` / `EXCLUDE_KEYS` compiled: a key is processed when it matches an include
/// pattern (or there are none) and no exclude pattern. `*` matches any characters, `/` included.
#[derive(Debug, Clone)]
pub struct KeyFilter {
    include: Option<globset::GlobSet>,
    exclude: globset::GlobSet,
}

impl KeyFilter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<KeyFilter, ConfigError> {
        let build = |name: &'static str, patterns: &[String]| {
            let mut set = globset::GlobSetBuilder::new();
            for p in patterns {
                let glob = globset::Glob::new(p).map_err(|e| ConfigError {
                    name,
                    value: p.clone(),
                    reason: e.kind().to_string(),
                })?;
                set.add(glob);
            }
            set.build().map_err(|e| ConfigError {
                name,
                value: patterns.join(","),
                reason: e.to_string(),
            })
        };
        Ok(KeyFilter {
            include: if include.is_empty() {
                None
            } else {
                Some(build("INCLUDE_KEYS", include)?)
            },
            exclude: build("EXCLUDE_KEYS", exclude)?,
        })
    }

    /// Whether the key is to be processed; `Err` names why not.
    pub fn check(&self, key: &str) -> Result<(), &'static str> {
        if let Some(include) = &self.include
            && !include.is_match(key)
        {
            return Err("matches no INCLUDE_KEYS pattern");
        }
        if self.exclude.is_match(key) {
            return Err("matches an EXCLUDE_KEYS pattern");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `OUTPUT_BUCKET`; `None` means "the source object's bucket".
    pub output_bucket: Option<String>,
    /// `OUTPUT_PREFIX`, default `export-fetcher/`. Always ends with `/` unless empty.
    pub output_prefix: String,
    /// `WRITE_PARTS`, default true.
    pub write_parts: bool,
    /// `OUTPUT_SSE` / `OUTPUT_SSE_KMS_KEY_ID`.
    pub sse: Sse,
    pub sns_topic_arn: Option<String>,
    pub sqs_queue_url: Option<String>,
    pub event_bus_name: Option<String>,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    /// `INCLUDE_KEYS`, comma-separated globs; empty means all keys.
    pub include_keys: Vec<String>,
    /// `EXCLUDE_KEYS`, comma-separated globs.
    pub exclude_keys: Vec<String>,
    pub limits: Limits,
    /// `OFFSET_INTERVAL`: records between two index offsets.
    pub offset_interval: u64,
    /// `SOURCE_BUCKET`: the bucket Braze writes to, where Braze's export callback looks for the
    /// export it closes (and where the scheduled sweep finds its records when `OUTPUT_BUCKET` is
    /// unset). Notifications name their own bucket and do not need it.
    pub source_bucket: Option<String>,
    /// `CALLBACK_TOKEN`: the secret path segment of Braze's export callback URL
    /// (`/braze/export-callback/<token>`); unset, every callback is answered 404.
    pub callback_token: Option<String>,
    /// `EXPORT_QUIET_MINUTES`, default 30 (0 accepted): the scheduled sweep closes an open API
    /// export whose newest object is at least this old.
    pub export_quiet_minutes: u64,
    /// `CURRENTS_GRACE_MINUTES`, default 60 (0 accepted): the scheduled sweep closes a Currents
    /// partition (one integration, event type and hour) this long after its hour ended.
    pub currents_grace_minutes: u64,
    /// `GLUE_DATABASE`: the Glue database that gets a table per Currents integration and event
    /// type, and a partition per hour; unset, Glue is not used.
    pub glue_database: Option<String>,
}

/// The shortest `CALLBACK_TOKEN` accepted: the token is all that authenticates Braze's callback.
pub const MIN_CALLBACK_TOKEN_CHARS: usize = 16;

impl Default for Config {
    fn default() -> Self {
        Config {
            output_bucket: None,
            output_prefix: "export-fetcher/".to_string(),
            write_parts: true,
            sse: Sse::None,
            sns_topic_arn: None,
            sqs_queue_url: None,
            event_bus_name: None,
            webhook_url: None,
            webhook_secret: None,
            include_keys: Vec::new(),
            exclude_keys: Vec::new(),
            limits: Limits::default(),
            offset_interval: 10_000,
            source_bucket: None,
            callback_token: None,
            export_quiet_minutes: 30,
            currents_grace_minutes: 60,
            glue_database: None,
        }
    }
}

/// A configuration variable that could not be accepted.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid configuration: {name}={value:?}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_vars(&std::env::vars().collect())
    }

    /// Reads configuration from a map of variables (the environment, or a test's table).
    /// Empty values count as unset.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let get = |name: &str| {
            vars.get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut cfg = Config {
            output_bucket: get("OUTPUT_BUCKET"),
            ..Config::default()
        };
        if let Some(raw) = vars.get("OUTPUT_PREFIX") {
            let prefix = raw.trim().trim_start_matches('/');
            cfg.output_prefix = if prefix.is_empty() || prefix.ends_with('/') {
                prefix.to_string()
            } else {
                format!("{prefix}/")
            };
            if cfg.output_prefix.is_empty() {
                // Name the value as it was given: `/` is not empty, but it normalises to the
                // empty prefix (S3 keys do not start with `/`, so leading slashes are dropped).
                let normalised = if raw.trim().is_empty() {
                    "must not be empty"
                } else {
                    "leaves an empty prefix once its leading `/` are dropped (S3 keys do not \
                     start with `/`), which would put outputs at the top of the bucket"
                };
                return Err(ConfigError {
                    name: "OUTPUT_PREFIX",
                    value: raw.clone(),
                    reason: format!(
                        "{normalised}: the output prefix is what keeps outputs from being \
                         processed again; unset it for the default `export-fetcher/`"
                    ),
                });
            }
            if cfg.output_prefix.len() > MAX_OUTPUT_PREFIX_BYTES {
                return Err(ConfigError {
                    name: "OUTPUT_PREFIX",
                    value: cfg.output_prefix.clone(),
                    reason: format!(
                        "{} bytes long: output keys would not fit in S3's {S3_MAX_KEY_BYTES}-byte \
                         limit (at most {MAX_OUTPUT_PREFIX_BYTES} bytes)",
                        cfg.output_prefix.len()
                    ),
                });
            }
        }
        if let Some(v) = get("WRITE_PARTS") {
            cfg.write_parts = parse_bool("WRITE_PARTS", &v)?;
        }
        let kms_key = get("OUTPUT_SSE_KMS_KEY_ID");
        cfg.sse = match get("OUTPUT_SSE").as_deref() {
            None | Some("none") | Some("NONE") => {
                if let Some(key) = kms_key {
                    return Err(ConfigError {
                        name: "OUTPUT_SSE_KMS_KEY_ID",
                        value: key,
                        reason: "set OUTPUT_SSE=aws:kms to use a KMS key".into(),
                    });
                }
                Sse::None
            }
            Some("AES256") => Sse::Aes256,
            Some("aws:kms") => Sse::Kms { key_id: kms_key },
            Some(other) => {
                return Err(ConfigError {
                    name: "OUTPUT_SSE",
                    value: other.to_string(),
                    reason: "expected none, AES256 or aws:kms".into(),
                });
            }
        };
        cfg.sns_topic_arn = get("SNS_TOPIC_ARN");
        cfg.sqs_queue_url = get("SQS_QUEUE_URL");
        cfg.event_bus_name = get("EVENT_BUS_NAME");
        cfg.webhook_url = get("WEBHOOK_URL");
        cfg.webhook_secret = get("WEBHOOK_SECRET");
        if let Some(url) = &cfg.webhook_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ConfigError {
                name: "WEBHOOK_URL",
                value: url.clone(),
                reason: "expected an http:// or https:// URL".into(),
            });
        }
        cfg.include_keys = parse_list(get("INCLUDE_KEYS"));
        cfg.exclude_keys = parse_list(get("EXCLUDE_KEYS"));
        KeyFilter::new(&cfg.include_keys, &cfg.exclude_keys)?;
        let limits = &mut cfg.limits;
        for (name, slot) in [
            ("MAX_OBJECT_BYTES", &mut limits.max_object_bytes),
            ("MAX_EXPANDED_BYTES", &mut limits.max_expanded_bytes),
            ("MAX_EXPANSION_RATIO", &mut limits.max_expansion_ratio),
            ("MAX_ARCHIVE_ENTRIES", &mut limits.max_archive_entries),
            ("MAX_RECORD_BYTES", &mut limits.max_record_bytes),
            ("OFFSET_INTERVAL", &mut cfg.offset_interval),
        ] {
            if let Some(v) = get(name) {
                *slot = parse_positive(name, &v)?;
            }
        }
        cfg.source_bucket = get("SOURCE_BUCKET");
        cfg.glue_database = get("GLUE_DATABASE");
        cfg.callback_token = get("CALLBACK_TOKEN");
        if let Some(token) = &cfg.callback_token
            && (token.chars().count() < MIN_CALLBACK_TOKEN_CHARS
                || !token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return Err(ConfigError {
                name: "CALLBACK_TOKEN",
                // The value is a secret: never echoed.
                value: "(hidden)".into(),
                reason: format!(
                    "expected at least {MIN_CALLBACK_TOKEN_CHARS} characters of A-Z, a-z, 0-9, \
                     `-` or `_` (it is a path segment of the callback URL)"
                ),
            });
        }
        for (name, slot) in [
            ("EXPORT_QUIET_MINUTES", &mut cfg.export_quiet_minutes),
            ("CURRENTS_GRACE_MINUTES", &mut cfg.currents_grace_minutes),
        ] {
            if let Some(v) = get(name) {
                *slot = v
                    .parse::<u64>()
                    .ok()
                    .filter(|m| *m <= 7 * 24 * 60)
                    .ok_or_else(|| ConfigError {
                        name,
                        value: v.clone(),
                        reason: "expected whole minutes from 0 to 10080 (a week)".into(),
                    })?;
            }
        }
        cfg.check_part_size(get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"))?;
        Ok(cfg)
    }

    /// Refuses a `MAX_EXPANDED_BYTES` whose parts ([`Limits::part_size`]) S3 would refuse, or
    /// whose upload buffers (`PARALLEL_PARTS + 1` parts) would not fit in half of the Lambda
    /// function's memory (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, in MB, when set).
    fn check_part_size(&self, memory_mb: Option<String>) -> Result<(), ConfigError> {
        let part = self.limits.part_size();
        let refuse = |reason: String| ConfigError {
            name: "MAX_EXPANDED_BYTES",
            value: self.limits.max_expanded_bytes.to_string(),
            reason,
        };
        if part > S3_MAX_PART_BYTES {
            return Err(refuse(format!(
                "an output this large needs parts of {} MiB to fit in S3's {S3_MAX_PARTS} parts; \
                 S3 allows at most {} MiB per part",
                part >> 20,
                S3_MAX_PART_BYTES >> 20
            )));
        }
        let buffers = part * (crate::store::s3::PARALLEL_PARTS as u64 + 1);
        if let Some(mb) = memory_mb.and_then(|m| m.parse::<u64>().ok())
            && buffers > (mb << 20) / 2
        {
            return Err(refuse(format!(
                "an output this large needs parts of {} MiB to fit in S3's {S3_MAX_PARTS} parts, \
                 and uploading holds {} MiB of them: more than half of the function's {mb} MB; \
                 lower MAX_EXPANDED_BYTES or give the function more memory",
                part >> 20,
                buffers >> 20
            )));
        }
        Ok(())
    }
}

fn parse_bool(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ConfigError {
            name,
            value: value.to_string(),
            reason: "expected true or false".into(),
        }),
    }
}

fn parse_list(value: Option<String>) -> Vec<String> {
    value
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// A positive integer, with an optional binary size suffix (`K`, `M`, `G`, `T`, `KiB`…).
fn parse_positive(name: &'static str, value: &str) -> Result<u64, ConfigError> {
    let err = |reason: &str| ConfigError {
        name,
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let v = value.trim();
    let digits_end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, suffix) = v.split_at(digits_end);
    let n: u64 = digits
        .parse()
        .map_err(|_| err("expected a positive integer (optionally with K, M, G or T)"))?;
    let shift = match suffix.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(err("unknown size suffix; use K, M, G or T")),
    };
    let n = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| err("too large"))?;
    if n == 0 {
        return Err(err("must be greater than zero"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_with_empty_environment() {
        let cfg = Config::from_vars(&HashMap::new()).unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(cfg.output_prefix, "export-fetcher/");
        assert_eq!(cfg.offset_interval, 10_000);
    }

    #[test]
    fn sizes_prefix_and_lists() {
        let cfg = Config::from_vars(&vars(&[
            ("MAX_EXPANDED_BYTES", "2G"),
            ("MAX_OBJECT_BYTES", "512MiB"),
            ("OUTPUT_PREFIX", "out"),
            ("INCLUDE_KEYS", "segment-export/**, currents/**"),
            ("WRITE_PARTS", "false"),
            ("OUTPUT_SSE", "aws:kms"),
            ("OUTPUT_SSE_KMS_KEY_ID", "alias/exports"),
        ]))
        .unwrap();
        assert_eq!(cfg.limits.max_expanded_bytes, 2 << 30);
        assert_eq!(cfg.limits.max_object_bytes, 512 << 20);
        assert_eq!(cfg.output_prefix, "out/");
        assert_eq!(cfg.include_keys, vec!["segment-export/**", "currents/**"]);
        assert!(!cfg.write_parts);
        assert_eq!(
            cfg.sse,
            Sse::Kms {
                key_id: Some("alias/exports".into())
            }
        );
    }

    #[test]
    fn part_size_grows_with_max_expanded_bytes_to_fit_in_10000_parts() {
        // (MAX_EXPANDED_BYTES, part size in MiB)
        let cases: &[(u64, u64)] = &[
            (1 << 30, 8),
            (64 << 30, 8),
            (80 << 30, 9),
            (1 << 40, 105),
            (5 << 40, 525),
        ];
        for &(max, mib) in cases {
            let limits = Limits {
                max_expanded_bytes: max,
                ..Limits::default()
            };
            let part = limits.part_size();
            assert_eq!(part, mib << 20, "MAX_EXPANDED_BYTES={max}");
            assert!(part * S3_MAX_PARTS >= max, "MAX_EXPANDED_BYTES={max}");
        }
    }

    #[test]
    fn part_size_that_does_not_fit_the_function_memory_is_refused() {
        let ok = vars(&[
            ("MAX_EXPANDED_BYTES", "1T"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024"),
        ]);
        assert_eq!(
            Config::from_vars(&ok).unwrap().limits.part_size(),
            105 << 20
        );
        let small = vars(&[
            ("MAX_EXPANDED_BYTES", "1T"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
        ]);
        let err = Config::from_vars(&small).unwrap_err();
        assert_eq!(err.name, "MAX_EXPANDED_BYTES", "{err}");
        assert!(err.reason.contains("512 MB"), "{err}");
    }

    #[test]
    fn output_prefix_that_leaves_no_room_for_keys_is_refused() {
        let longest = "p".repeat(MAX_OUTPUT_PREFIX_BYTES - 1);
        let cfg = Config::from_vars(&vars(&[("OUTPUT_PREFIX", &longest)])).unwrap();
        assert_eq!(cfg.output_prefix.len(), MAX_OUTPUT_PREFIX_BYTES);
        let too_long = "p".repeat(MAX_OUTPUT_PREFIX_BYTES);
        let err = Config::from_vars(&vars(&[("OUTPUT_PREFIX", &too_long)])).unwrap_err();
        assert_eq!(err.name, "OUTPUT_PREFIX");
    }

    /// `OUTPUT_PREFIX=/` used to be reported as `OUTPUT_PREFIX=""`: the message names the value
    /// given and says what it normalises to.
    #[test]
    fn output_prefix_of_slashes_is_named_as_given() {
        for raw in ["/", "//", " / "] {
            let err = Config::from_vars(&vars(&[("OUTPUT_PREFIX", raw)])).unwrap_err();
            assert_eq!(err.value, raw, "{err}");
            assert!(err.reason.contains("leaves an empty prefix"), "{err}");
            assert!(err.reason.contains("export-fetcher/"), "{err}");
        }
        let err = Config::from_vars(&vars(&[("OUTPUT_PREFIX", "")])).unwrap_err();
        assert!(err.reason.starts_with("must not be empty"), "{err}");
        let cfg = Config::from_vars(&vars(&[("OUTPUT_PREFIX", "/out")])).unwrap();
        assert_eq!(cfg.output_prefix, "out/");
    }

    #[test]
    fn key_filters() {
        let f = KeyFilter::new(
            &["segment-export/**".into(), "currents/*.avro".into()],
            &["**/tmp/**".into()],
        )
        .unwrap();
        let cases = [
            ("segment-export/s/2024-01-01/x.zip", true),
            ("segment-export/s/tmp/x.zip", false),
            ("currents/a/b/c.avro", true),
            ("reports/x.csv", false),
        ];
        for (key, want) in cases {
            assert_eq!(f.check(key).is_ok(), want, "{key}");
        }
        assert!(KeyFilter::new(&[], &[]).unwrap().check("anything").is_ok());
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases: &[(&str, &str)] = &[
            ("INCLUDE_KEYS", "a/[b"),
            ("MAX_EXPANSION_RATIO", "lots"),
            ("OFFSET_INTERVAL", "0"),
            ("WRITE_PARTS", "maybe"),
            ("OUTPUT_SSE", "rot13"),
            ("OUTPUT_PREFIX", "/"),
            ("WEBHOOK_URL", "ftp://x"),
            ("MAX_OBJECT_BYTES", "99999999999999999999T"),
            ("MAX_EXPANDED_BYTES", "64T"),
            ("EXPORT_QUIET_MINUTES", "10081"),
            ("EXPORT_QUIET_MINUTES", "-1"),
            ("CURRENTS_GRACE_MINUTES", "soon"),
        ];
        for (name, value) in cases {
            let err = Config::from_vars(&vars(&[(name, value)])).unwrap_err();
            assert_eq!(err.name, *name, "{name}={value}");
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn the_callback_token_is_checked_and_never_echoed() {
        for bad in [
            "short-token",
            "0123456789abcdef/",
            "0123456789abcdef?x",
            "0123456789abcdéf",
        ] {
            let err = Config::from_vars(&vars(&[("CALLBACK_TOKEN", bad)])).unwrap_err();
            assert_eq!(err.name, "CALLBACK_TOKEN");
            assert!(
                !err.to_string().contains(bad),
                "the secret is echoed: {err}"
            );
        }
        let token = "0123456789abcdef_-XY";
        let cfg = Config::from_vars(&vars(&[
            ("CALLBACK_TOKEN", token),
            ("SOURCE_BUCKET", "braze-exports"),
            ("EXPORT_QUIET_MINUTES", "0"),
        ]))
        .unwrap();
        assert_eq!(cfg.callback_token.as_deref(), Some(token));
        assert_eq!(cfg.source_bucket.as_deref(), Some("braze-exports"));
        assert_eq!(cfg.export_quiet_minutes, 0);
        assert_eq!(
            Config::from_vars(&vars(&[])).unwrap().export_quiet_minutes,
            30
        );
    }
}
