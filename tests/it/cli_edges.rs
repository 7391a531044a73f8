//! The command line's rough edges, each named after what a new user ran into (issue 16): `invoke`
//! with nothing but an endpoint URL, its exit status, a missing bucket, `braze-policy` without a
//! flag, an unusable `--out`, the demo's messages, configuration read only where it is used, one
//! failure printed once, and `--help`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::{Value, json};

use crate::aws::Moto;
use crate::fixtures::{gzip, users_jsonl};
use crate::lambda_s3::{BUCKET, moto_with_bucket, put, s3_event};
use crate::support::BIN;

/// The repository's `events/` folder.
pub fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("events")
}

/// The binary with an empty environment: no AWS settings, no configuration, a `HOME` without
/// `~/.aws`, so that nothing of the developer's machine leaks in.
pub fn clean_command(home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().env("HOME", home).env("TMPDIR", home);
    cmd
}

pub fn text(out: &Output) -> (i32, String, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

/// `export-fetcher s3-server` on a free port, stopped on drop.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
}

impl S3Server {
    /// Serves `root` (created) after uploading `puts` (`BUCKET/KEY=FILE`), with the server's
    /// default credentials.
    pub fn start(home: &Path, root: &Path, puts: &[String]) -> S3Server {
        let mut cmd = clean_command(home);
        cmd.arg("s3-server").arg("--root").arg(root);
        for p in puts {
            cmd.arg("--put").arg(p);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("s3-server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("s3-server prints a line");
        let endpoint = line
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("s3-server printed {line:?}, not `ready <endpoint>`"))
            .trim()
            .to_string();
        S3Server { child, endpoint }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The objects `events/sqs-s3.json` names, as `--put` arguments: one-byte files `a`, `b`, `c`
/// written into `dir`, whose MD5s are the events' eTags.
fn sqs_s3_objects(dir: &Path) -> Vec<String> {
    let keys = [
        (
            "a",
            "engagement-reports/2025-04-01/Campagne été 2025 – relance.zip",
        ),
        (
            "b",
            "sent_messages/email/0cc175b9c0f1b6a831c399e269772661/6f0ba1c4-1a5b-4c2e-9d1e-2f7a3b8c9d01/c7c2a1b9e0f34d5a8b6e4f2d1c0b9a87.json.gz",
        ),
        (
            "c",
            "currents/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5/event_type=users.messages.pushnotification.Send/date=2025-04-01-17/version=6/us-01/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5+1+98231.avro",
        ),
    ];
    keys.iter()
        .map(|(name, key)| {
            let file = dir.join(name);
            std::fs::write(&file, name).unwrap();
            format!("{BUCKET}/{key}={}", file.display())
        })
        .collect()
}

fn invoke_event(home: &Path, event: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = clean_command(home);
    cmd.arg("invoke").arg(event).envs(env.iter().copied());
    text(&cmd.output().unwrap())
}

// ---------------------------------------------------------------------------------------------
// invoke: local defaults, exit status
// ---------------------------------------------------------------------------------------------

/// `AWS_ENDPOINT_URL` and nothing else used to end in IMDS noise and "A region must be set".
#[test]
fn invoke_with_only_an_endpoint_url_uses_local_region_and_dummy_credentials() {
    let home = tempfile::tempdir().unwrap();
    let root = home.path().join("s3");
    let server = S3Server::start(home.path(), &root, &sqs_s3_objects(home.path()));
    let (code, stdout, stderr) = invoke_event(
        home.path(),
        &events_dir().join("sqs-s3.json"),
        &[("AWS_ENDPOINT_URL", &server.endpoint)],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let response: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(response, json!({"batchItemFailures": []}), "{stderr}");
    assert_eq!(
        stderr.matches("dummy").count(),
        1,
        "the dummy credentials are said once: {stderr}"
    );
    for noise in ["region must be set", "IMDS", "imds", "169.254"] {
        assert!(!stderr.contains(noise), "{noise:?} on stderr: {stderr}");
    }
    // The handler did the work: the engagement report's manifest is in the bucket.
    let manifest = root.join(format!(
        "{BUCKET}/export-fetcher/manifests/engagement-reports/2025-04-01/Campagne été 2025 – relance.zip.manifest.json"
    ));
    let m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    assert_eq!(m["source"]["etag"], "0cc175b9c0f1b6a831c399e269772661");
}

/// Credentials configured in the environment are used as they are, with no note; a wrong pair
/// is refused by the server, which proves the dummy one was not used instead.
#[test]
fn invoke_with_an_endpoint_url_keeps_configured_credentials() {
    let home = tempfile::tempdir().unwrap();
    let server = S3Server::start(home.path(), &home.path().join("s3"), &[]);
    let (code, stdout, stderr) = invoke_event(
        home.path(),
        &events_dir().join("s3-put.json"),
        &[
            ("AWS_ENDPOINT_URL", &server.endpoint),
            ("AWS_ACCESS_KEY_ID", "someone-else"),
            ("AWS_SECRET_ACCESS_KEY", "not-the-servers"),
        ],
    );
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(!stderr.contains("dummy"), "{stderr}");
    // s3s answers an unknown access key with a 403 (`NotSignedUp`): access denied.
    assert!(
        stdout.contains("access denied"),
        "the server refused the configured pair: {stdout}\n{stderr}"
    );
}

/// Against real AWS (no endpoint URL) the SDK's own chains stay in charge: no dummy
/// credentials, no made-up region. Nothing reaches the network: there is no region, and
/// instance metadata is off.
#[test]
fn invoke_without_an_endpoint_url_never_uses_local_defaults() {
    let home = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = invoke_event(
        home.path(),
        &events_dir().join("s3-put.json"),
        &[("AWS_EC2_METADATA_DISABLED", "true")],
    );
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(!stderr.contains("dummy"), "{stderr}");
    let response: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(response["errorType"], "RetryableFailure", "{stdout}");
}

/// `invoke` used to exit 0 whatever the response said.
#[test]
fn invoke_exits_1_when_a_message_is_to_be_retried() {
    let home = tempfile::tempdir().unwrap();
    let objects = sqs_s3_objects(home.path());
    let server = S3Server::start(home.path(), &home.path().join("s3"), &objects[2..]);
    let (code, stdout, stderr) = invoke_event(
        home.path(),
        &events_dir().join("sqs-mixed-with-poison.json"),
        &[("AWS_ENDPOINT_URL", &server.endpoint)],
    );
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let response: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": "1b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e"}]})
    );
    assert_eq!(
        stderr.matches("message cannot be parsed").count(),
        1,
        "the reason once: {stderr}"
    );
    assert_eq!(
        stderr.matches("1 message(s) to be retried").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn invoke_of_a_file_that_is_no_lambda_event_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    let event = home.path().join("event.json");
    std::fs::write(&event, r#"{"hello": "world"}"#).unwrap();
    let (code, _, stderr) = invoke_event(
        home.path(),
        &event,
        &[("AWS_ENDPOINT_URL", "http://127.0.0.1:9")],
    );
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        stderr.matches("not a supported trigger").count(),
        1,
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// A missing bucket
// ---------------------------------------------------------------------------------------------

fn invoke_on_moto(moto: &Moto, event: &Value, env: &[(&str, &str)]) -> (i32, Value, String) {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("event.json");
    std::fs::write(&path, event.to_string()).unwrap();
    let mut cmd = clean_command(home.path());
    cmd.arg("invoke").arg(&path);
    for (k, v) in crate::aws::env_for(&moto.endpoint) {
        cmd.env(k, v);
    }
    cmd.envs(env.iter().copied());
    let (code, stdout, stderr) = text(&cmd.output().unwrap());
    let response = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("invoke printed no JSON ({e}): {stdout}\n{stderr}"));
    (code, response, stderr)
}

/// A bucket that does not exist used to be reported as `NoSuchKey … (Braze may have removed
/// the export)`, and a `missing` manifest was attempted. It is the environment: `NoSuchBucket`,
/// no manifest, retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_source_bucket_is_nosuchbucket_and_retried() {
    let moto = Moto::start();
    let event = s3_event("no-such-bucket", "reports/daily.csv");
    let (code, response, stderr) = invoke_on_moto(&moto, &event, &[]);
    assert_eq!(code, 1, "{response}\n{stderr}");
    assert_eq!(response["errorType"], "RetryableFailure", "{response}");
    let message = response["errorMessage"].as_str().unwrap_or("");
    assert!(message.contains("NoSuchBucket"), "{message}");
    assert!(
        message.contains("no-such-bucket"),
        "names the bucket: {message}"
    );
    for wrong in ["NoSuchKey", "removed the export"] {
        assert!(!message.contains(wrong), "{wrong:?}: {message}");
        assert!(!stderr.contains(wrong), "{wrong:?}: {stderr}");
    }
    assert_eq!(
        stderr.matches("NoSuchBucket").count(),
        1,
        "said once on stderr: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_output_bucket_is_nosuchbucket_and_writes_nothing() {
    let (moto, s3) = moto_with_bucket().await;
    let key = "reports/daily.csv";
    put(&s3, BUCKET, key, b"a,b\n1,2\n".to_vec()).await;
    let event = s3_event(BUCKET, key);
    let (code, response, stderr) =
        invoke_on_moto(&moto, &event, &[("OUTPUT_BUCKET", "no-such-output")]);
    assert_eq!(code, 1, "{response}\n{stderr}");
    let message = response["errorMessage"].as_str().unwrap_or("");
    assert!(message.contains("NoSuchBucket"), "{message}");
    assert!(!message.contains("NoSuchKey"), "{message}");
    let listed = s3.list_objects_v2().bucket(BUCKET).send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, vec![key], "nothing written next to the source");
}

// ---------------------------------------------------------------------------------------------
// braze-policy, configuration
// ---------------------------------------------------------------------------------------------

#[test]
fn braze_policy_without_a_purpose_names_both_flags() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = clean_command(home.path());
    cmd.args(["braze-policy", "--bucket", "my-braze-exports"]);
    let (code, _, stderr) = text(&cmd.output().unwrap());
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--currents") && stderr.contains("--data-export"),
        "{stderr}"
    );
    let mut both = clean_command(home.path());
    both.args([
        "braze-policy",
        "--bucket",
        "my-braze-exports",
        "--currents",
        "--data-export",
    ]);
    let (code, _, stderr) = text(&both.output().unwrap());
    assert_eq!(code, 2, "one purpose at a time: {stderr}");
}

/// A bad `MAX_OBJECT_BYTES` used to stop `braze-policy`, which reads no configuration.
#[test]
fn bad_configuration_stops_only_the_commands_that_use_it() {
    let home = tempfile::tempdir().unwrap();
    let mut policy = clean_command(home.path());
    policy
        .args(["braze-policy", "--bucket", "my-braze-exports", "--currents"])
        .env("MAX_OBJECT_BYTES", "lots");
    let (code, stdout, stderr) = text(&policy.output().unwrap());
    assert_eq!(code, 0, "{stderr}");
    assert!(
        serde_json::from_str::<Value>(&stdout).is_ok(),
        "the policy: {stdout}"
    );
    let input = home.path().join("x.csv");
    std::fs::write(&input, "a,b\n1,2\n").unwrap();
    let mut index = clean_command(home.path());
    index
        .arg("index")
        .arg(&input)
        .env("MAX_OBJECT_BYTES", "lots");
    let (code, stdout, stderr) = text(&index.output().unwrap());
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stderr.contains("MAX_OBJECT_BYTES=\"lots\""), "{stderr}");
}

/// `OUTPUT_PREFIX=/` used to be echoed as `OUTPUT_PREFIX=""`.
#[test]
fn output_prefix_of_a_slash_is_named_as_given() {
    let home = tempfile::tempdir().unwrap();
    let input = home.path().join("x.csv");
    std::fs::write(&input, "a,b\n1,2\n").unwrap();
    let mut cmd = clean_command(home.path());
    cmd.arg("index").arg(&input).env("OUTPUT_PREFIX", "/");
    let (code, _, stderr) = text(&cmd.output().unwrap());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("OUTPUT_PREFIX=\"/\""), "{stderr}");
    assert!(stderr.contains("empty prefix"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// index
// ---------------------------------------------------------------------------------------------

/// `--out` naming a file, a path under a file or a device: exit 2 naming it, before any work
/// (no manifest printed, nothing written).
#[test]
fn index_out_that_cannot_be_a_directory_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    let input = home.path().join("x.csv");
    std::fs::write(&input, "a,b\n1,2\n").unwrap();
    let file = home.path().join("taken");
    std::fs::write(&file, "keep me").unwrap();
    for out in [
        file.clone(),
        file.join("below"),
        PathBuf::from("/dev/null"),
        PathBuf::from("/proc/export-fetcher-out"),
    ] {
        let mut cmd = clean_command(home.path());
        cmd.arg("index").arg(&input).arg("--out").arg(&out);
        let (code, stdout, stderr) = text(&cmd.output().unwrap());
        assert_eq!(code, 2, "{}: {stdout}\n{stderr}", out.display());
        assert!(
            stderr.contains(&format!("--out {}", out.display())),
            "names the path: {stderr}"
        );
        assert!(stdout.is_empty(), "no work done: {stdout}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

/// A failed part used to be printed twice on stderr: the pipeline's `part stopped` warning and
/// `index`'s summary.
#[test]
fn index_prints_a_failure_once() {
    let home = tempfile::tempdir().unwrap();
    let part = users_jsonl(100, 60);
    let gz = gzip(&part.bytes);
    let input = home.path().join("cut.gz");
    std::fs::write(&input, &gz[..gz.len() / 2]).unwrap();
    let mut cmd = clean_command(home.path());
    cmd.arg("index").arg(&input);
    let (code, stdout, stderr) = text(&cmd.output().unwrap());
    assert_eq!(code, 1, "{stderr}");
    let m: Value = serde_json::from_str(&stdout).unwrap();
    let message = m["errors"][0]["message"].as_str().unwrap();
    assert_eq!(stderr.matches(message).count(), 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

// ---------------------------------------------------------------------------------------------
// demo
// ---------------------------------------------------------------------------------------------

fn demo(env: &[(&str, &str)]) -> (i32, String) {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = clean_command(home.path());
    cmd.arg("demo").envs(env.iter().copied());
    let (code, stdout, stderr) = text(&cmd.output().unwrap());
    (code, format!("{stdout}{stderr}"))
}

/// Each line that ends in "for example:" is followed by an example.
fn assert_examples_follow(out: &str) {
    let lines: Vec<&str> = out.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.ends_with("for example:") {
            assert!(
                lines.get(i + 1).is_some_and(|next| next.starts_with("  /")),
                "nothing after {line:?}:\n{out}"
            );
        }
    }
}

#[test]
fn demo_without_parts_names_no_parts_location() {
    let (code, out) = demo(&[("WRITE_PARTS", "false")]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("/parts/"), "{out}");
    assert!(out.contains("none written (WRITE_PARTS=false)"), "{out}");
    assert_examples_follow(&out);
}

/// With `MAX_OBJECT_BYTES` below every sample, the corrupt one fails for the limit, not for its
/// bytes: the demo says so instead of "failed, as it should: <the limit>".
#[test]
fn demo_with_a_limit_crossed_blames_the_limit() {
    let (code, out) = demo(&[("MAX_OBJECT_BYTES", "64")]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("as it should"), "{out}");
    assert!(
        out.contains("failed with cause environment"),
        "the corrupt sample's real cause: {out}"
    );
    assert!(out.contains("MAX_OBJECT_BYTES"), "{out}");
    assert_examples_follow(&out);
}

// ---------------------------------------------------------------------------------------------
// --help
// ---------------------------------------------------------------------------------------------

/// The variables of the README's Configuration table.
pub fn readme_variables() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let table = readme
        .split("## Configuration")
        .nth(1)
        .expect("a Configuration section");
    let mut names = Vec::new();
    for line in table.lines().skip_while(|l| !l.starts_with('|')) {
        let Some(cell) = line.strip_prefix('|') else {
            break;
        };
        let first = cell.split('|').next().unwrap_or("");
        for name in first.split('`').skip(1).step_by(2) {
            names.push(name.to_string());
        }
    }
    assert!(names.len() >= 10, "{names:?}");
    names
}

#[test]
fn help_names_the_configuration_and_the_exit_codes() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = clean_command(home.path());
    cmd.arg("--help");
    let (code, help, _) = text(&cmd.output().unwrap());
    assert_eq!(code, 0);
    for name in readme_variables() {
        assert!(help.contains(&name), "--help does not name {name}:\n{help}");
    }
    for needle in [
        "AWS_ENDPOINT_URL",
        "Exit status",
        "\n  0  ",
        "\n  1  ",
        "\n  2  ",
    ] {
        assert!(help.contains(needle), "{needle:?}:\n{help}");
    }
    assert!(help.contains("s3-server"), "s3-server is listed:\n{help}");
}
