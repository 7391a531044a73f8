//! Reliability and security proof (issue 7; RELIABILITY.md maps every guarantee to its test).
//!
//! Against the real local servers (moto_server on loopback) and the real binary:
//! duplicate storms, load through SQS-shaped batches, failing multipart uploads, connections cut
//! again and again, hostile archives (symlink members, nested archives, a 100 MB single line),
//! and keys built to forge or colour log lines, with a webhook secret that must never leak.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use export_fetcher::config::Config;
use export_fetcher::handler;
use serde_json::{Value, json};

use crate::aws::{CuttingProxy, FaultProxy, drain, env_at, env_for, env_with_sinks};
use crate::fixtures::{self, DEFLATED, STORED, gzip, sha256_hex};
use crate::lambda_s3::{
    BUCKET, get, manifest, moto_with_bucket, put, s3_event, sqs_event_from_bodies, versioned_bucket,
};
use crate::sinks::Receiver;
use crate::support::{self, index_bytes_out, walk_files};

const SECRET: &str = "whsec-reliability-7d1c0e55";

/// A field of /proc/self/status, in KiB (`VmHWM` is the peak resident set, `VmRSS` the current).
fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// The outcome label of a direct (non-SQS) invocation: `retry` when the handler failed.
fn outcome_of(r: &Result<Value, handler::HandlerError>) -> String {
    match r {
        Ok(v) => v["results"][0]["outcome"]
            .as_str()
            .unwrap_or("?")
            .to_string(),
        Err(_) => "retry".to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Duplicates never multiply output
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_storm_writes_one_manifest_and_delivers_once_per_sink() {
    const OUT: &str = "storm-out";
    let (moto, s3) = moto_with_bucket().await;
    // A versioned output bucket keeps every write of the manifest: its versions count them.
    versioned_bucket(&s3, OUT).await;
    let key = "segment-export/storm/2024-05-01/0b6c1a6e-2f4c-4d7e-9f1a-3a5b7c9d1e2f-1714550400/114f0226319130e1a4770f2602b5639a.gz";
    let users = fixtures::users_jsonl(70, 300).bytes;
    put(&s3, BUCKET, key, gzip(&users)).await;
    let d = crate::sinks::downstream(&moto, false).await;
    let hook = Receiver::start(vec![200]);
    let cfg = Config {
        output_bucket: Some(OUT.into()),
        sns_topic_arn: Some(d.topic.clone()),
        sqs_queue_url: Some(d.manifests.clone()),
        event_bus_name: Some("exports-bus".into()),
        webhook_url: Some(hook.url.clone()),
        webhook_secret: Some(SECRET.into()),
        ..Config::default()
    };
    let env = env_with_sinks(&moto, cfg);

    // The same notification 20 times at once.
    let gate = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (env, gate) = (env.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            handler::handle(env, s3_event(BUCKET, key), None).await
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(outcome_of(&t.await.unwrap()));
    }
    eprintln!("duplicate storm outcomes: {outcomes:?}");
    assert_eq!(
        outcomes.iter().filter(|o| *o == "done").count(),
        1,
        "exactly one invocation processes the object: {outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .all(|o| o == "done" || o == "duplicate" || o == "retry"),
        "{outcomes:?}"
    );
    // Lambda redelivers the ones that asked for a retry (a duplicate that met a delivery in
    // progress): they find everything delivered.
    let retries = outcomes.iter().filter(|o| *o == "retry").count();
    for _ in 0..retries {
        let r = handler::handle(env.clone(), s3_event(BUCKET, key), None).await;
        let v = r.expect("a redelivered duplicate succeeds");
        assert_eq!(v["results"][0]["outcome"], "duplicate", "{v}");
    }

    let mkey = format!("export-fetcher/manifests/{key}.manifest.json");
    let versions = s3
        .list_object_versions()
        .bucket(OUT)
        .prefix(&mkey)
        .send()
        .await
        .unwrap();
    assert_eq!(
        versions.versions().len(),
        1,
        "the manifest was written exactly once: {:?}",
        versions.versions()
    );
    let m: Value = serde_json::from_slice(&get(&s3, OUT, &mkey).await.unwrap()).unwrap();
    support::validate_manifest(&m, key);
    assert_eq!(m["status"], "complete");
    assert_eq!(m["parts"][0]["sha256"], sha256_hex(&users));
    assert_eq!(m["parts"][0]["records"], 300);
    // Output keys are deterministic: duplicates overwrite, they never add objects.
    let listed = s3.list_objects_v2().bucket(OUT).send().await.unwrap();
    let mut keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    keys.sort();
    assert_eq!(
        keys.len(),
        7,
        "one part, one manifest, four delivery records, the export's open record: {keys:?}"
    );
    assert_eq!(
        keys.iter().filter(|k| k.ends_with("/open.json")).count(),
        1,
        "{keys:?}"
    );

    let sqs = moto.sqs();
    for (name, url) in [
        ("sns", &d.sns_out),
        ("sqs", &d.manifests),
        ("eventbridge", &d.eb_out),
    ] {
        let got = drain(&sqs, url).await;
        assert_eq!(got.len(), 1, "{name} got exactly one message: {got:?}");
    }
    let reqs = hook.requests();
    assert_eq!(reqs.len(), 1, "the webhook got exactly one delivery");

    // And later duplicates still send nothing.
    let v = handler::handle(env.clone(), s3_event(BUCKET, key), None)
        .await
        .unwrap();
    let outcomes: Vec<&str> = v["results"][0]["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["already_delivered"; 4], "{v}");
    assert_eq!(hook.requests().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Load: no export lost, memory flat
// ---------------------------------------------------------------------------------------------

/// Object `i` of the load test: its key, its bytes, and (records, sha256 of the decompressed part).
fn load_object(i: usize) -> (String, Vec<u8>, u64, String) {
    let rows = (i % 7 + 1) as u64;
    if i.is_multiple_of(2) {
        let mut csv = b"campaign,sent,opens\n".to_vec();
        for r in 0..rows {
            csv.extend_from_slice(format!("c{i}-{r},{},{}\n", i * 10 + r as usize, r).as_bytes());
        }
        let sha = sha256_hex(&csv);
        (format!("reports/load/{i:03}.csv"), csv, rows, sha)
    } else {
        let mut lines = Vec::new();
        for r in 0..rows {
            lines.extend_from_slice(
                format!("{{\"external_id\":\"u{i}-{r}\",\"n\":{r}}}\n").as_bytes(),
            );
        }
        let sha = sha256_hex(&lines);
        (
            format!("segment-export/load/2024-05-01/0b6c1a6e-1714550400/{i:03}.gz"),
            gzip(&lines),
            rows,
            sha,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_500_objects_through_sqs_batches_of_10_loses_nothing() {
    const N: usize = 500;
    let (moto, s3) = moto_with_bucket().await;
    let objects: Vec<(String, Vec<u8>, u64, String)> = (0..N).map(load_object).collect();
    let mut puts = tokio::task::JoinSet::new();
    for chunk in objects.chunks(N / 8) {
        let (s3, chunk) = (s3.clone(), chunk.to_vec());
        puts.spawn(async move {
            for (key, body, _, _) in chunk {
                put(&s3, BUCKET, &key, body).await;
            }
        });
    }
    while let Some(r) = puts.join_next().await {
        r.unwrap();
    }

    let env = env_at(&moto.endpoint, Config::default());
    let (hwm_before, rss_before) = (proc_status_kib("VmHWM"), proc_status_kib("VmRSS"));
    let started = Instant::now();
    // 50 SQS batches of 10 messages, 4 batches at a time (concurrent Lambda invocations).
    let batches: Vec<Value> = objects
        .chunks(10)
        .enumerate()
        .map(|(b, chunk)| {
            let msgs: Vec<(String, String)> = chunk
                .iter()
                .enumerate()
                .map(|(i, (key, _, _, _))| {
                    (format!("m-{b}-{i}"), s3_event(BUCKET, key).to_string())
                })
                .collect();
            let refs: Vec<(&str, String)> = msgs
                .iter()
                .map(|(id, body)| (id.as_str(), body.clone()))
                .collect();
            sqs_event_from_bodies(&refs)
        })
        .collect();
    assert_eq!(batches.len(), 50);
    let permits = Arc::new(tokio::sync::Semaphore::new(4));
    let mut runs = tokio::task::JoinSet::new();
    for event in batches {
        let (env, permits) = (env.clone(), permits.clone());
        runs.spawn(async move {
            let _p = permits.acquire_owned().await.unwrap();
            handler::handle(env, event, None).await.unwrap()
        });
    }
    let mut rss_mid = Vec::new();
    while let Some(r) = runs.join_next().await {
        let response = r.unwrap();
        assert_eq!(
            response,
            json!({"batchItemFailures": []}),
            "no message of a batch fails"
        );
        rss_mid.push(proc_status_kib("VmRSS"));
    }
    let elapsed = started.elapsed();
    let (hwm_after, rss_after) = (proc_status_kib("VmHWM"), proc_status_kib("VmRSS"));

    // Every object has its manifest, and every manifest is right.
    let mut checks = tokio::task::JoinSet::new();
    for chunk in objects.chunks(N / 8) {
        let (s3, chunk) = (s3.clone(), chunk.to_vec());
        checks.spawn(async move {
            for (key, body, records, sha) in chunk {
                let m = manifest(&s3, BUCKET, &key)
                    .await
                    .unwrap_or_else(|| panic!("no manifest for {key}: an export was lost"));
                assert_eq!(m["status"], "complete", "{key}: {m:#}");
                assert_eq!(m["source"]["size"], body.len() as u64, "{key}");
                assert_eq!(m["totals"]["records"], records, "{key}");
                assert_eq!(m["parts"][0]["sha256"], sha.as_str(), "{key}");
            }
        });
    }
    while let Some(r) = checks.join_next().await {
        r.unwrap();
    }
    let mut manifests = 0;
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix("export-fetcher/manifests/")
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        manifests += page.contents().len();
        token = page.next_continuation_token().map(String::from);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(manifests, N, "one manifest per object, no more, no less");

    let secs = elapsed.as_secs_f64();
    let rss_first = rss_mid.first().copied().unwrap_or(rss_before);
    eprintln!(
        "load: {N} objects in 50 SQS batches of 10: {secs:.2} s, {:.0} objects/s; \
         test process VmHWM {} -> {} MiB, VmRSS {} -> {} MiB (after first batch {} MiB, max during {} MiB)",
        N as f64 / secs,
        hwm_before / 1024,
        hwm_after / 1024,
        rss_before / 1024,
        rss_after / 1024,
        rss_first / 1024,
        rss_mid.iter().max().copied().unwrap_or(0) / 1024,
    );
    // Memory is bounded by buffers, not by the number of objects: the peak of the whole test
    // process (which other tests share) grows by far less than what 500 objects would hold.
    assert!(
        hwm_after.saturating_sub(hwm_before) < 512 * 1024,
        "peak RSS grew by {} MiB",
        (hwm_after - hwm_before) / 1024
    );
}

// ---------------------------------------------------------------------------------------------
// Fault injection: failing multipart uploads, connections cut again and again
// ---------------------------------------------------------------------------------------------

/// A JSON-lines object larger than one 8 MiB multipart part.
fn big_jsonl() -> Vec<u8> {
    let mut body = Vec::with_capacity(11 << 20);
    let mut i = 0u64;
    while body.len() < (10 << 20) + 12345 {
        body.extend_from_slice(
            format!("{{\"external_id\":\"user-{i:09}\",\"n\":{i},\"pad\":\"xxxxxxxxxxxxxxxx\"}}\n")
                .as_bytes(),
        );
        i += 1;
    }
    body
}

/// Fails every request the rule matches: the object must be retried with no manifest and no
/// visible part; once the fault clears, the retry is complete and byte-exact.
async fn failing_multipart_step_is_retried(key: &str, rule: crate::aws::FaultRule) {
    let (moto, s3) = moto_with_bucket().await;
    let body = big_jsonl();
    let records = body.iter().filter(|&&b| b == b'\n').count() as u64;
    put(&s3, BUCKET, key, body.clone()).await;
    let proxy = FaultProxy::start(&moto.endpoint, rule);
    let env = env_at(&proxy.endpoint, Config::default());
    let part_key = format!(
        "export-fetcher/parts/{key}/{}",
        key.rsplit('/').next().unwrap()
    );

    let r = handler::handle(env.clone(), s3_event(BUCKET, key), None).await;
    let err = r.expect_err("a failing upload makes the object retryable");
    eprintln!("{key}: {err}");
    assert!(
        proxy.failed.load(Ordering::SeqCst) >= 1,
        "the fault was injected"
    );
    assert!(
        manifest(&s3, BUCKET, key).await.is_none(),
        "no manifest may exist after a failed upload"
    );
    assert!(
        get(&s3, BUCKET, &part_key).await.is_none(),
        "no part object is visible after a failed upload"
    );
    let uploads = crate::aws::open_uploads(&s3, BUCKET).await;
    assert!(
        uploads.is_empty(),
        "the multipart upload was aborted: {uploads:?}"
    );

    proxy.armed.store(false, Ordering::SeqCst);
    let r = handler::handle(env, s3_event(BUCKET, key), None)
        .await
        .expect("the retry succeeds once the fault clears");
    assert_eq!(r["results"][0]["outcome"], "done", "{r}");
    let m = manifest(&s3, BUCKET, key).await.unwrap();
    assert_eq!(m["status"], "complete");
    assert_eq!(m["parts"][0]["records"], records);
    assert_eq!(m["parts"][0]["sha256"], sha256_hex(&body));
    assert!(
        get(&s3, BUCKET, &part_key).await.unwrap() == body,
        "the part is byte-exact"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_upload_part_is_retried_and_never_claims_complete() {
    failing_multipart_step_is_retried(
        "exports/upload-part-fails.jsonl",
        Box::new(|method: &str, target: &str| method == "PUT" && target.contains("partNumber=")),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_complete_multipart_upload_is_retried_and_never_claims_complete() {
    failing_multipart_step_is_retried(
        "exports/complete-fails.jsonl",
        Box::new(|method: &str, target: &str| method == "POST" && target.contains("uploadId=")),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cut_on_every_read_resumes_exactly_or_fails_retryably() {
    let (moto, s3) = moto_with_bucket().await;
    let key = "segment-export/s/2024-05-01/0b6c1a6e-1714550400/always-cut.zip";
    let users = fixtures::users_jsonl(71, 6000).bytes;
    let body = fixtures::zip_of(&[("u.txt", &users)], STORED, false);
    assert!(body.len() > 2 << 20);
    put(&s3, BUCKET, key, body).await;
    // Every connection is cut after 128 KiB, as often as it happens.
    let proxy = CuttingProxy::start(&moto.endpoint, 128 * 1024, u64::MAX);
    let env = env_at(&proxy.endpoint, Config::default());
    let r = handler::handle(env, s3_event(BUCKET, key), None).await;
    let cuts = proxy.cuts.load(Ordering::SeqCst);
    eprintln!("always-cut: {} after {cuts} cuts", outcome_of(&r));
    assert!(cuts >= 2, "the proxy cut the reads ({cuts})");
    match outcome_of(&r).as_str() {
        // Resumed from the last good byte every time: the result must be exact.
        "done" => {
            let m = manifest(&s3, BUCKET, key).await.unwrap();
            assert_eq!(m["status"], "complete", "{m:#}");
            assert_eq!(m["parts"][0]["sha256"], sha256_hex(&users));
            assert_eq!(m["parts"][0]["records"], 6000);
        }
        // Gave up: retryable, and nothing claims anything.
        "retry" => assert!(
            manifest(&s3, BUCKET, key).await.is_none(),
            "a manifest was written for an object that could not be read"
        ),
        other => panic!("unexpected outcome {other}: {r:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile archives and inputs
// ---------------------------------------------------------------------------------------------

#[test]
fn symlink_member_is_indexed_as_its_own_bytes_and_never_followed() {
    use std::io::Cursor;
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = fixtures::zip_options(DEFLATED, false);
    w.add_symlink("passwd-link", "/etc/passwd", opts).unwrap();
    w.add_symlink("up/escape", "../../../../tmp", opts).unwrap();
    w.start_file("users.txt", opts).unwrap();
    w.write_all(b"{\"external_id\":\"u1\"}\n").unwrap();
    let zip = w.finish().unwrap().into_inner();
    let key = "segment-export/s/2024-05-01/0b6c1a6e-1714550400/links.zip";
    let (run, out) = index_bytes_out(&zip, key, &[]);
    let m = run.m();
    let part = |name: &str| {
        m["parts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no part {name}: {m:#}"))
    };
    // The member's content is the link text; the link's target is never read.
    let link = part("passwd-link");
    assert_eq!(link["bytes"], "/etc/passwd".len() as u64, "{link:#}");
    assert_eq!(link["sha256"], sha256_hex(b"/etc/passwd"));
    assert_eq!(part("users.txt")["records"], 1);
    // Nothing on disk is a symlink, and nothing was written outside the out dir.
    for rel in walk_files(out.path()) {
        let meta = std::fs::symlink_metadata(out.path().join(&rel)).unwrap();
        assert!(
            !meta.file_type().is_symlink(),
            "{} is a symlink",
            rel.display()
        );
    }
    let written = out
        .path()
        .join(format!("export-fetcher/parts/{key}/passwd-link"));
    assert_eq!(std::fs::read(&written).unwrap(), b"/etc/passwd");
    let escaped = out
        .path()
        .join(format!("export-fetcher/parts/{key}/up/escape"));
    assert!(
        !std::fs::symlink_metadata(&escaped).is_ok_and(|m| m.file_type().is_symlink()),
        "a symlink was created"
    );
}

#[test]
fn nested_archives_are_indexed_as_binary_and_not_expanded() {
    let users = fixtures::users_jsonl(72, 20).bytes;
    let inner = fixtures::zip_of(&[("inner.txt", &users)], DEFLATED, false);
    let inner_gz = gzip(&users);
    let outer = fixtures::zip_of(
        &[
            ("inner.zip", &inner),
            ("inner.txt.gz", &inner_gz),
            ("top.txt", &users),
        ],
        DEFLATED,
        false,
    );
    let key = "segment-export/s/2024-05-01/0b6c1a6e-1714550400/nested.zip";
    let (run, out) = index_bytes_out(&outer, key, &[]);
    let m = run.m();
    let names: Vec<&str> = m["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["inner.zip", "inner.txt.gz", "top.txt"],
        "members of the inner archive are not parts: {m:#}"
    );
    for (i, bytes) in [(0usize, &inner), (1, &inner_gz)] {
        let p = &m["parts"][i];
        assert_eq!(p["format"], "binary", "{p:#}");
        assert_eq!(p["records"], 0);
        assert_eq!(p["bytes"], bytes.len() as u64);
        assert_eq!(p["sha256"], sha256_hex(bytes), "passed through as is");
    }
    assert_eq!(m["parts"][2]["records"], 20);
    let files = walk_files(out.path());
    assert_eq!(
        files.len(),
        4,
        "three parts and the manifest, nothing expanded: {files:?}"
    );
    // A gzip object that holds a zip: one binary part, the zip's bytes.
    let run = support::index_bytes(&gzip(&inner), "exports/archive.zip.gz", &[]);
    run.assert_status("complete");
    let p = &run.m()["parts"][0];
    assert_eq!(p["name"], "archive.zip");
    assert_eq!(p["format"], "binary");
    assert_eq!(p["sha256"], sha256_hex(&inner));
}

/// Runs the binary under `python3` and returns (exit code, stdout, stderr, peak RSS in KiB of
/// the binary, from `getrusage(RUSAGE_CHILDREN)`).
fn run_with_peak_rss(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String, u64) {
    let script = "import resource, subprocess, sys\n\
                  p = subprocess.run(sys.argv[1:], capture_output=True)\n\
                  sys.stdout.buffer.write(p.stdout)\n\
                  sys.stderr.buffer.write(p.stderr)\n\
                  sys.stderr.write('\\nPEAK_RSS_KIB=%d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
                  sys.exit(p.returncode if p.returncode >= 0 else 128 - p.returncode)\n";
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).arg(support::BIN).args(args);
    for v in [
        "MAX_RECORD_BYTES",
        "MAX_EXPANDED_BYTES",
        "MAX_OBJECT_BYTES",
        "RUST_LOG",
    ] {
        cmd.env_remove(v);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let peak = stderr
        .lines()
        .find_map(|l| l.strip_prefix("PEAK_RSS_KIB=")?.parse().ok())
        .expect("peak RSS reported");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
        peak,
    )
}

#[test]
fn hundred_mb_single_json_line_is_a_bad_record_in_bounded_memory() {
    const LINE: usize = 100 << 20;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge-line.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        f.write_all(b"{\"external_id\":\"u0\",\"blob\":\"").unwrap();
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..LINE >> 20 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(b"\"}\n{\"external_id\":\"u1\"}\n").unwrap();
    }
    let key = "segment-export/s/2024-05-01/0b6c1a6e-1714550400/huge-line.txt";
    let started = Instant::now();
    let (code, stdout, stderr, peak_kib) =
        run_with_peak_rss(&["index", path.to_str().unwrap(), "--key", key], &[]);
    eprintln!(
        "100 MB single line: exit {code}, peak RSS {} MiB, {:.1} s",
        peak_kib / 1024,
        started.elapsed().as_secs_f64()
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let m: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    support::validate_manifest(&m, key);
    assert_eq!(code, 1, "partial: {stderr}");
    assert_eq!(m["status"], "partial", "{m:#}");
    let part = &m["parts"][0];
    assert_eq!(part["format"], "jsonl");
    assert_eq!(
        part["records"], 1,
        "the line after the huge one still counts"
    );
    assert!(part["bytes"].as_u64().unwrap() > LINE as u64);
    let err = &part["errors"][0];
    assert_eq!(err["record"], 0);
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("MAX_RECORD_BYTES"),
        "{err}"
    );
    // What is held is bounded by MAX_RECORD_BYTES (32 MiB by default: the longest line kept in
    // memory before it is declared oversized), not by the line: the binary's own baseline is
    // about 27 MiB, so a held 100 MB line would put the peak well past 100 MiB.
    assert!(
        peak_kib < 80 * 1024,
        "peak RSS {} MiB: a 100 MB line must not be held in memory",
        peak_kib / 1024
    );
}

/// Runs `export-fetcher invoke` on an event; returns (exit code, stdout, stderr).
fn invoke_logged(endpoint: &str, event: &Value, env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("event.json");
    std::fs::write(&path, serde_json::to_vec(event).unwrap()).unwrap();
    let out = Command::new(support::BIN)
        .arg("invoke")
        .arg(&path)
        .envs(env_for(endpoint))
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_keys_cannot_forge_log_lines_and_the_secret_never_leaks() {
    let (moto, s3) = moto_with_bucket().await;
    let forged = "{\"level\":\"ERROR\",\"message\":\"forged by a key\"}";
    // moto cannot store a key holding `\n` (its router answers 404), so stored objects carry
    // `\r` (which rewinds a terminal line), escapes, BEL and TAB; one more key with real
    // newlines goes through the handler and its logs without ever being stored.
    let evil = |name: &str| format!("reports/{name}\r{forged}\u{1b}[31mred\u{1b}[0m\t\u{7}.csv");
    let (ok_key, bad_key, gone_key) = (evil("ok"), evil("truncated"), evil("gone"));
    let nl_key = format!("reports/nl\n{forged}\n\u{1b}[31mred.csv");
    put(&s3, BUCKET, &ok_key, b"campaign,sent\nc1,1\n".to_vec()).await;
    let gz = gzip(&fixtures::users_jsonl(73, 50).bytes);
    put(&s3, BUCKET, &bad_key, gz[..gz.len() / 2].to_vec()).await;
    let mut event = s3_event(BUCKET, &ok_key);
    for k in [&bad_key, &gone_key] {
        let record = s3_event(BUCKET, k)["Records"][0].clone();
        event["Records"].as_array_mut().unwrap().push(record);
    }
    let nl_event = sqs_event_from_bodies(&[("nl-1", s3_event(BUCKET, &nl_key).to_string())]);
    let hook = Receiver::start(vec![200]);
    let mut responses = Vec::new();
    for (round, format) in [("JSON", "JSON"), ("text", "Text")] {
        // The second round would find everything done: clear it so that it does the work again.
        for k in [&ok_key, &bad_key, &gone_key] {
            for obj in [
                format!("export-fetcher/manifests/{k}.manifest.json"),
                format!("export-fetcher/deliveries/{k}/webhook.json"),
            ] {
                let _ = s3.delete_object().bucket(BUCKET).key(obj).send().await;
            }
        }
        let env = [
            ("AWS_LAMBDA_LOG_FORMAT", format),
            ("AWS_LAMBDA_LOG_LEVEL", "DEBUG"),
            ("WEBHOOK_URL", hook.url.as_str()),
            ("WEBHOOK_SECRET", SECRET),
        ];
        let (code, stdout, stderr) = invoke_logged(&moto.endpoint, &event, &env);
        assert_eq!(code, 0, "{round}: {stdout}\n{stderr}");
        let (nl_code, nl_stdout, nl_stderr) = invoke_logged(&moto.endpoint, &nl_event, &env);
        // moto answers 404 to any write of a key holding `\n`, so the `missing` manifest cannot
        // be written: the message is retried, and `invoke` says so with exit status 1.
        assert_eq!(nl_code, 1, "{round}: {nl_stdout}\n{nl_stderr}");
        assert!(nl_stdout.contains("\"nl-1\""), "{round}: {nl_stdout}");
        for (stream, text) in [
            ("stdout", &stdout),
            ("stderr", &stderr),
            ("stdout (newline key)", &nl_stdout),
            ("stderr (newline key)", &nl_stderr),
        ] {
            assert!(!text.contains("panicked"), "{text}");
            // (Text logs may colour their own level names; the key's escape sequence and its
            // other control characters must never appear raw.)
            assert!(
                !text.contains("\u{1b}[31mred") && !text.contains('\u{7}') && !text.contains('\r'),
                "{round} {stream}: a raw control character from a key reached the output:\n{text}"
            );
            assert!(
                !text.contains(SECRET),
                "{round} {stream}: the webhook secret was printed"
            );
            for line in text.lines() {
                assert!(
                    !line.trim_start().starts_with(forged),
                    "{round} {stream}: a key forged a log line: {line}"
                );
            }
            if round == "JSON" && stream.starts_with("stderr") {
                let logged: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
                assert!(!logged.is_empty(), "nothing was logged at DEBUG");
                for line in &logged {
                    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| {
                        panic!("a log line is not one JSON object ({e}): {line:?}")
                    });
                    assert_ne!(v["message"], "forged by a key", "{line}");
                }
            }
        }
        assert!(
            stderr.contains("object finished"),
            "{round}: the objects were logged:\n{stderr}"
        );
        responses.push(stdout);
    }
    let response: Value = serde_json::from_str(&responses[0]).unwrap();
    let statuses: Vec<&str> = response["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(statuses, vec!["complete", "failed", "failed"], "{response}");

    // The keys are kept exactly (JSON-escaped) in the manifests; the secret is in none of the
    // objects written, nor in what the webhook received.
    let mut stored: HashMap<String, Vec<u8>> = HashMap::new();
    for k in [&ok_key, &bad_key, &gone_key] {
        let m = manifest(&s3, BUCKET, k).await.expect("manifest written");
        assert_eq!(m["source"]["key"], k.as_str());
        let mkey = format!("export-fetcher/manifests/{k}.manifest.json");
        stored.insert(mkey.clone(), get(&s3, BUCKET, &mkey).await.unwrap());
        let dkey = format!("export-fetcher/deliveries/{k}/webhook.json");
        stored.insert(dkey.clone(), get(&s3, BUCKET, &dkey).await.unwrap());
    }
    let part = format!(
        "export-fetcher/parts/{ok_key}/{}",
        ok_key.rsplit('/').next().unwrap()
    );
    stored.insert(part.clone(), get(&s3, BUCKET, &part).await.unwrap());
    for (i, r) in hook.requests().iter().enumerate() {
        stored.insert(format!("webhook body {i}"), r.body.clone());
        for (h, v) in &r.headers {
            assert!(!v.contains(SECRET), "header {h} carries the secret");
        }
    }
    for (name, body) in &stored {
        assert!(
            !String::from_utf8_lossy(body).contains(SECRET),
            "{name} holds the webhook secret"
        );
        assert!(!body.contains(&0x1b), "{name} holds a raw ESC");
    }
    assert_eq!(hook.requests().len(), 6, "two rounds × three manifests");
}

// ---------------------------------------------------------------------------------------------
// Fuzz regressions: every crash input scripts/fuzz.sh found, fed to the same API
// ---------------------------------------------------------------------------------------------

/// fuzz `key_detect`: a `date=` folder of 13 bytes with a multi-byte character across byte 10
/// made `is_date_hour` (src/detect.rs) slice inside a character and panic — for any key of that
/// shape, in the Lambda as in `index`.
#[test]
fn fuzz_regression_key_detect_date_hour_with_a_multibyte_character() {
    let key = "currents/event_type=users.messages.email.Send/date=2025-01-0é12/x+0+1.avro";
    assert_eq!("2025-01-0é12".len(), 13);
    let kind = std::panic::catch_unwind(|| export_fetcher::detect::kind_from_key(key));
    assert!(
        matches!(kind, Ok(None)),
        "not a Currents date-hour, and no panic: {kind:?}"
    );
    // End to end: the CLI indexes it as an ordinary file (the harness fails on a panic).
    support::index_bytes(b"a,b\n1,2\n", key, &[]).assert_status("complete");
}

/// fuzz `avro_container`: an Avro header whose map block count is i64::MIN overflowed
/// `count = -count` (src/index/avro.rs): a panic with overflow checks, a misread without.
#[test]
fn fuzz_regression_avro_header_block_count_of_i64_min() {
    let mut data = b"Obj\x01".to_vec();
    data.extend_from_slice(&[0xff; 9]);
    data.push(0x01); // zig-zag varint of i64::MIN
    data.extend_from_slice(&[0u8; 40]);
    let opts = export_fetcher::index::Options {
        offset_interval: 10,
        max_record_bytes: 1 << 20,
        budget: export_fetcher::decode::Budget::default(),
    };
    let out = std::panic::catch_unwind(|| {
        let r = export_fetcher::index::run(
            export_fetcher::manifest::Format::Avro,
            None,
            &mut &data[..],
            &opts,
        );
        r.fatal.map(|e| e.to_string())
    });
    match out {
        Ok(fatal) => assert!(fatal.is_some(), "a broken Avro header is fatal"),
        Err(_) => panic!("the Avro indexer panicked on a header block count of i64::MIN"),
    }
}

/// fuzz `jsonl_index`: a JSON line that is a bare number out of f64's range (`1e400`) is a bad
/// record ("number out of range"), while the same number inside an object is accepted: the
/// top-level value goes through `deserialize_any` (src/index/jsonl.rs, `check_line`), nested
/// ones through `IgnoredAny`. JSON's grammar accepts both; the verdict must not depend on
/// nesting.
#[test]
fn fuzz_regression_jsonl_top_level_number_out_of_range() {
    let opts = export_fetcher::index::Options {
        offset_interval: 10,
        max_record_bytes: 1 << 20,
        budget: export_fetcher::decode::Budget::default(),
    };
    let count = |data: &[u8]| {
        let out = export_fetcher::index::run(
            export_fetcher::manifest::Format::Jsonl,
            None,
            &mut &data[..],
            &opts,
        );
        (out.records, out.errors.total)
    };
    let nested = count(b"{\"n\":1111111111111111E111114}\n");
    let bare = count(b"1111111111111111E111114\n");
    assert_eq!(nested.0 + nested.1, 1);
    assert_eq!(
        bare, nested,
        "a number is judged the same at the top level and nested"
    );
}

/// Found by fuzzing (`jsonl_index`, random seed): a top-level key holding a lone surrogate
/// escape (`"\udeee"`) is valid JSON, which serde_json skips but refuses to decode as a key; the
/// record was counted bad. It is good, and its column is named with U+FFFD, like a nested key's
/// line was always judged.
#[test]
fn fuzz_regression_jsonl_lone_surrogate_in_a_top_level_key() {
    let opts = export_fetcher::index::Options {
        offset_interval: 10,
        max_record_bytes: 1 << 20,
        budget: export_fetcher::decode::Budget::default(),
    };
    let data = b"{\"'xt\\\\\\udeeeetributes\":{\"tier\":\"gold\"}}\n{\"n\":{\"\\ud800\":1}}\n";
    let out = export_fetcher::index::run(
        export_fetcher::manifest::Format::Jsonl,
        None,
        &mut &data[..],
        &opts,
    );
    assert_eq!((out.records, out.errors.total), (2, 0));
    assert_eq!(
        out.columns.unwrap(),
        vec!["'xt\\\u{FFFD}etributes".to_string(), "n".to_string()]
    );
}

/// Every `MAX_*` default, as RELIABILITY.md states them.
#[test]
fn limit_defaults_are_the_documented_ones() {
    let l = export_fetcher::config::Limits::default();
    assert_eq!(l.max_object_bytes, 16 << 30);
    assert_eq!(l.max_expanded_bytes, 64 << 30);
    assert_eq!(l.max_expansion_ratio, 250);
    assert_eq!(l.max_archive_entries, 10_000);
    assert_eq!(l.max_record_bytes, 32 << 20);
    assert_eq!(export_fetcher::config::RATIO_FLOOR_BYTES, 1 << 20);
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("RELIABILITY.md"))
        .expect("RELIABILITY.md exists");
    for (var, default) in [
        ("MAX_OBJECT_BYTES", "16G"),
        ("MAX_EXPANDED_BYTES", "64G"),
        ("MAX_EXPANSION_RATIO", "250"),
        ("MAX_ARCHIVE_ENTRIES", "10000"),
        ("MAX_RECORD_BYTES", "32M"),
    ] {
        assert!(
            doc.contains(&format!("`{var}` | `{default}`")),
            "RELIABILITY.md documents {var} = {default}"
        );
    }
}
