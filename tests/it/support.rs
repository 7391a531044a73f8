//! Runs `export-fetcher index` and checks the invariants every manifest must satisfy
//! (JSON Schema, exit code vs status, totals, no panic).

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_export-fetcher");

/// Configuration variables cleared before each run so the developer's environment cannot leak in.
const CONFIG_VARS: &[&str] = &[
    "AWS_LAMBDA_RUNTIME_API",
    "OUTPUT_BUCKET",
    "OUTPUT_PREFIX",
    "WRITE_PARTS",
    "OUTPUT_SSE",
    "OUTPUT_SSE_KMS_KEY_ID",
    "SNS_TOPIC_ARN",
    "SQS_QUEUE_URL",
    "EVENT_BUS_NAME",
    "WEBHOOK_URL",
    "WEBHOOK_SECRET",
    "INCLUDE_KEYS",
    "EXCLUDE_KEYS",
    "MAX_OBJECT_BYTES",
    "MAX_EXPANDED_BYTES",
    "MAX_EXPANSION_RATIO",
    "MAX_ARCHIVE_ENTRIES",
    "OFFSET_INTERVAL",
];

#[derive(Debug)]
pub struct Run {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub manifest: Option<Value>,
}

impl Run {
    /// The manifest (panics with the run's output if there is none).
    pub fn m(&self) -> &Value {
        self.manifest
            .as_ref()
            .unwrap_or_else(|| panic!("no manifest; {}", self.describe()))
    }
    pub fn describe(&self) -> String {
        format!(
            "args={:?}\nexit={}\nstderr:\n{}\nstdout:\n{}",
            self.args,
            self.code,
            truncate(&self.stderr, 4000),
            truncate(&self.stdout, 8000)
        )
    }
    pub fn status(&self) -> &str {
        self.m()["status"].as_str().unwrap_or("<none>")
    }
    pub fn parts(&self) -> &Vec<Value> {
        self.m()["parts"]
            .as_array()
            .unwrap_or_else(|| panic!("parts not an array; {}", self.describe()))
    }
    pub fn part(&self, name: &str) -> &Value {
        self.parts()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no part named {name:?}; {}", self.describe()))
    }
    pub fn errors(&self) -> Vec<Value> {
        self.m()
            .get("errors")
            .and_then(|e| e.as_array())
            .cloned()
            .unwrap_or_default()
    }
    /// All error messages (top-level and per part), lowercased, joined, plus stderr.
    pub fn all_error_text(&self) -> String {
        let mut s = String::new();
        for e in self.errors() {
            s.push_str(&e.to_string());
            s.push('\n');
        }
        for p in self.parts() {
            if let Some(errs) = p.get("errors") {
                s.push_str(&errs.to_string());
                s.push('\n');
            }
        }
        s
    }
    pub fn assert_status(&self, status: &str) {
        assert_eq!(self.status(), status, "status; {}", self.describe());
        let code = if status == "complete" { 0 } else { 1 };
        assert_eq!(
            self.code,
            code,
            "exit code for status {status}; {}",
            self.describe()
        );
    }
    /// `failed`, with a top-level error; returns the concatenated error text.
    pub fn assert_failed(&self) -> String {
        self.assert_status("failed");
        assert!(
            !self.errors().is_empty(),
            "failed manifest must carry top-level errors; {}",
            self.describe()
        );
        for e in self.errors() {
            let msg = e["message"].as_str().unwrap_or("");
            assert!(
                !msg.trim().is_empty(),
                "error without message: {e}; {}",
                self.describe()
            );
        }
        self.all_error_text()
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes total]", &s[..end], s.len())
}

/// The JSON Schema `file` of this repository (`schema/…`), compiled once.
pub fn schema_validator(file: &'static str) -> &'static jsonschema::Validator {
    static V: OnceLock<Mutex<HashMap<&'static str, &'static jsonschema::Validator>>> =
        OnceLock::new();
    let mut known = V.get_or_init(Default::default).lock().unwrap();
    known.entry(file).or_insert_with(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let schema: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        Box::leak(Box::new(jsonschema::validator_for(&schema).unwrap_or_else(
            |e| panic!("{} is not a valid JSON Schema: {e}", path.display()),
        )))
    })
}

/// Panics with every violation of the JSON Schema `file` by `value`.
pub fn assert_matches_schema(value: &Value, file: &'static str) {
    let errors: Vec<String> = schema_validator(file)
        .iter_errors(value)
        .map(|e| format!("  at {}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "does not match {file}:\n{}\n{value:#}",
        errors.join("\n")
    );
}

fn validator() -> &'static jsonschema::Validator {
    schema_validator("schema/manifest.v1.schema.json")
}

/// Validates a manifest against schema/manifest.v1.schema.json, panicking with every violation.
pub fn validate_manifest(manifest: &Value, context: &str) {
    let v = validator();
    if !v.is_valid(manifest) {
        let errors: Vec<String> = v
            .iter_errors(manifest)
            .map(|e| format!("  at {}: {}", e.instance_path(), e))
            .collect();
        panic!(
            "manifest does not match schema/manifest.v1.schema.json:\n{}\n{context}",
            errors.join("\n")
        );
    }
}

#[derive(Default)]
pub struct Opts<'a> {
    pub key: Option<&'a str>,
    pub out: Option<&'a Path>,
    pub env: &'a [(&'a str, &'a str)],
}

/// Runs `export-fetcher index FILE [--key KEY] [--out DIR]` and checks the universal invariants.
pub fn index(file: &Path, opts: Opts<'_>) -> Run {
    let mut args: Vec<String> = vec!["index".into(), file.display().to_string()];
    if let Some(k) = opts.key {
        args.push("--key".into());
        args.push(k.into());
    }
    if let Some(o) = opts.out {
        args.push("--out".into());
        args.push(o.display().to_string());
    }
    run_raw(&args, opts.env)
}

/// Runs the binary with arbitrary arguments; parses and checks a manifest when exit is 0 or 1.
pub fn run_raw(args: &[String], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for v in CONFIG_VARS {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("spawn export-fetcher");
    let mut run = Run {
        args: args.to_vec(),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        manifest: None,
    };
    assert!(
        !run.stderr.contains("panicked"),
        "the binary panicked; {}",
        run.describe()
    );
    assert!(
        matches!(run.code, 0..=2),
        "unexpected exit code (signal or crash); {}",
        run.describe()
    );
    if run.code == 0 || run.code == 1 {
        let manifest: Value = serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not exactly one JSON document ({e}); {}",
                run.describe()
            )
        });
        assert!(
            manifest.is_object(),
            "manifest must be an object; {}",
            run.describe()
        );
        run.manifest = Some(manifest);
        check_invariants(&run);
    }
    run
}

fn as_u64(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("expected unsigned integer, got {v}"))
}

fn check_invariants(run: &Run) {
    let m = run.m();
    let ctx = run.describe();
    validate_manifest(m, &ctx);
    assert_eq!(m["manifest_version"], 1, "manifest_version; {ctx}");
    assert_eq!(
        m["producer"]["name"], "export-fetcher",
        "producer.name; {ctx}"
    );
    let status = m["status"].as_str().unwrap_or("");
    match run.code {
        0 => assert_eq!(status, "complete", "exit 0 only for complete; {ctx}"),
        1 => {
            assert!(
                status == "partial" || status == "failed",
                "exit 1 for partial/failed; {ctx}"
            );
            assert!(
                !run.stderr.trim().is_empty(),
                "exit 1 must give a reason on stderr; {ctx}"
            );
        }
        _ => unreachable!(),
    }
    let parts = m["parts"]
        .as_array()
        .unwrap_or_else(|| panic!("parts must be an array; {ctx}"));
    assert_eq!(
        as_u64(&m["totals"]["parts"]),
        parts.len() as u64,
        "totals.parts; {ctx}"
    );
    if status == "complete" || status == "partial" {
        for field in ["records", "bytes", "compressed_bytes"] {
            let sum: u64 = parts.iter().map(|p| as_u64(&p[field])).sum();
            assert_eq!(
                as_u64(&m["totals"][field]),
                sum,
                "totals.{field} = sum over parts; {ctx}"
            );
        }
    }
    if status == "complete" {
        assert!(
            m.get("errors")
                .is_none_or(|e| e.as_array().is_some_and(|a| a.is_empty())),
            "complete with errors; {ctx}"
        );
        for p in parts {
            assert!(
                p.get("errors")
                    .is_none_or(|e| e.as_array().is_some_and(|a| a.is_empty())),
                "complete with part errors; {ctx}"
            );
        }
    }
    if status == "partial" {
        let bad = parts.iter().any(|p| {
            p.get("errors")
                .and_then(|e| e.as_array())
                .is_some_and(|a| !a.is_empty())
        });
        assert!(
            bad,
            "partial manifest must list the bad records in a part's errors; {ctx}"
        );
    }
    for p in parts {
        let sha = p["sha256"].as_str().unwrap_or("");
        if status != "failed" {
            assert!(
                sha.len() == 64
                    && sha
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                "sha256 lowercase hex; {ctx}"
            );
        }
    }
}

/// A temporary directory holding `bytes` under `file_name`.
pub struct Input {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn input(file_name: &str, bytes: &[u8]) -> Input {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file_name);
    std::fs::write(&path, bytes).unwrap();
    Input { dir, path }
}

/// Runs `index` on `bytes` as the object `key`.
pub fn index_bytes(bytes: &[u8], key: &str, env: &[(&str, &str)]) -> Run {
    let inp = input("object.bin", bytes);
    index(
        &inp.path,
        Opts {
            key: Some(key),
            out: None,
            env,
        },
    )
}

/// Runs `index` on `bytes` as `key` with `--out DIR`; returns the run and the (kept) out dir.
pub fn index_bytes_out(bytes: &[u8], key: &str, env: &[(&str, &str)]) -> (Run, tempfile::TempDir) {
    let inp = input("object.bin", bytes);
    let out = tempfile::tempdir().unwrap();
    let run = index(
        &inp.path,
        Opts {
            key: Some(key),
            out: Some(out.path()),
            env,
        },
    );
    (run, out)
}

/// Every regular file under `dir`, as paths relative to `dir`, sorted.
pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn go(base: &Path, d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                go(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_path_buf());
            }
        }
    }
    go(dir, dir, &mut out);
    out.sort();
    out
}

/// The offsets array of a part as `(record, byte)` pairs.
pub fn offsets(part: &Value) -> Vec<(u64, u64)> {
    part["offsets"]
        .as_array()
        .unwrap_or_else(|| panic!("part has no offsets: {part}"))
        .iter()
        .map(|pair| (as_u64(&pair[0]), as_u64(&pair[1])))
        .collect()
}

pub fn str_vec(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected array, got {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("expected string, got {s}"))
                .to_string()
        })
        .collect()
}
