//! The binary under the real Lambda runtime loop: `lambda_runtime` talks to a Runtime API double
//! on loopback, which hands it one S3 event and records the response.

use std::ffi::OsStr;
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::aws::{env_for, read_request_head};
use crate::lambda_s3::{BUCKET, manifest, moto_with_bucket, put, s3_event};
use crate::support;

/// What the function posted back.
#[derive(Debug)]
pub enum Posted {
    Response(Value),
    Error(#[allow(dead_code)] String),
}

/// Serves `GET …/invocation/next` once with `event`, then records the response or error.
pub fn runtime_api(event: Value) -> (String, mpsc::Receiver<Posted>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut served = false;
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let tx = tx.clone();
            let event = event.clone();
            let first = !served;
            served = true;
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut handed_out = !first;
                while let Some(request) = read_request_head(&mut reader) {
                    let body = request.read_body(&mut reader);
                    let path = request.target;
                    if path.ends_with("/invocation/next") {
                        if handed_out {
                            // Later polls wait forever: the test stops the process.
                            std::thread::sleep(Duration::from_secs(3600));
                            return;
                        }
                        handed_out = true;
                        let payload = serde_json::to_vec(&event).unwrap();
                        let deadline = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .unwrap()
                            .as_millis()
                            + 60_000;
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                             Lambda-Runtime-Aws-Request-Id: req-1\r\nLambda-Runtime-Deadline-Ms: {deadline}\r\n\
                             Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:export-fetcher\r\n\
                             Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000\r\n\r\n",
                            payload.len()
                        );
                        conn.write_all(head.as_bytes()).unwrap();
                        conn.write_all(&payload).unwrap();
                    } else {
                        let posted = if path.ends_with("/response") {
                            Posted::Response(serde_json::from_slice(&body).unwrap_or(Value::Null))
                        } else {
                            Posted::Error(String::from_utf8_lossy(&body).into_owned())
                        };
                        conn.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
                            .unwrap();
                        let _ = tx.send(posted);
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// Runs `bin` as Lambda runs it (`memory_mb` of memory, JSON logs at INFO) against moto at
/// `endpoint`, under a [`runtime_api`] double that hands it `event`; waits up to 60 s for what it
/// posts back, then stops it. Returns what it posted and its output (stdout as `stdout` says).
pub fn run_under_runtime_api(
    bin: impl AsRef<OsStr>,
    endpoint: &str,
    event: Value,
    memory_mb: &str,
    stdout: Stdio,
) -> (Result<Posted, mpsc::RecvTimeoutError>, Output) {
    let (addr, rx) = runtime_api(event);
    let mut child = Command::new(bin)
        .envs(env_for(endpoint))
        .env("AWS_LAMBDA_RUNTIME_API", &addr)
        .env("AWS_LAMBDA_FUNCTION_NAME", "export-fetcher")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_LAMBDA_LOG_LEVEL", "INFO")
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let posted = rx.recv_timeout(Duration::from_secs(60));
    let _ = child.kill();
    (posted, child.wait_with_output().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_the_lambda_runtime_api() {
    let (moto, s3) = moto_with_bucket().await;
    let key = "reports/runtime test.csv";
    put(&s3, BUCKET, key, b"campaign;sent\nc1;10\n".to_vec()).await;
    let (posted, out) = run_under_runtime_api(
        support::BIN,
        &moto.endpoint,
        s3_event(BUCKET, key),
        "512",
        Stdio::piped(),
    );
    let logs = String::from_utf8_lossy(&out.stderr);
    match posted {
        Ok(Posted::Response(r)) => {
            assert_eq!(r["results"][0]["outcome"], "done", "{r}\n{logs}");
            assert_eq!(r["results"][0]["key"], key);
        }
        other => panic!("no response from the function: {other:?}\n{logs}"),
    }
    let m = manifest(&s3, BUCKET, key).await.expect("manifest written");
    assert_eq!(m["status"], "complete");
    assert_eq!(m["parts"][0]["delimiter"], ";");
    // JSON logs with Lambda's log controls: one line per event, the object's span fields in it.
    let line = logs
        .lines()
        .find(|l| l.contains("object finished"))
        .unwrap_or_else(|| panic!("no 'object finished' log line:\n{logs}"));
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(v["level"], "INFO", "{v}");
    assert_eq!(v["outcome"], "done", "{v}");
    assert!(
        v.to_string().contains("runtime test.csv"),
        "the span names the key: {v}"
    );
    // Metrics: one Embedded Metric Format line per object on stdout.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let emf: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect();
    assert_eq!(emf.len(), 1, "one EMF line per object:\n{stdout}");
    let e = &emf[0];
    assert_eq!(
        e["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "ExportFetcher"
    );
    assert_eq!(e["FunctionName"], "export-fetcher");
    assert_eq!(e["Kind"], "report");
    assert_eq!(e["Status"], "complete");
    assert_eq!(e["Objects"], 1);
    assert_eq!(e["Records"], 1);
    assert!(e["Lag"].as_f64().is_some_and(|l| l >= 0.0), "{e}");
}
