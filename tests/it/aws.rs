//! Real AWS-protocol servers on loopback for the integration tests, and SDK clients for them.
//!
//! `moto_server` (installed into `.venv/` by `scripts/setup.sh`) serves S3, SQS, SNS and
//! EventBridge, and emits real S3 notifications. Each test starts its own server on a free port
//! and stops it when the handle is dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";

fn moto_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    assert!(
        p.exists(),
        "moto_server not found at {}: run scripts/setup.sh first (or set MOTO_SERVER)",
        p.display()
    );
    p
}

/// A running `moto_server`, killed on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let mut child = Command::new(moto_bin())
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("moto_server starts");
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("Running on http://127.0.0.1:").nth(1) {
                    let port: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(port);
                    }
                }
                // Keep draining so the server never blocks on a full pipe.
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("moto_server printed its port");
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        s3_client(&self.endpoint)
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::new()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(REGION))
                .credentials_provider(creds())
                .endpoint_url(&self.endpoint)
                .build(),
        )
    }

    pub fn sns(&self) -> aws_sdk_sns::Client {
        aws_sdk_sns::Client::from_conf(
            aws_sdk_sns::config::Builder::new()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(REGION))
                .credentials_provider(creds())
                .endpoint_url(&self.endpoint)
                .build(),
        )
    }

    pub fn eventbridge(&self) -> aws_sdk_eventbridge::Client {
        aws_sdk_eventbridge::Client::from_conf(
            aws_sdk_eventbridge::config::Builder::new()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(REGION))
                .credentials_provider(creds())
                .endpoint_url(&self.endpoint)
                .build(),
        )
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn env_for(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", REGION),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn creds() -> Credentials {
    Credentials::new("test", "test", None, None, "tests")
}

pub fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(creds())
            .endpoint_url(endpoint)
            .force_path_style(true)
            // moto returns a multipart object's composite checksum in a form the SDK would
            // validate as a full-object checksum; the tests compare bytes themselves.
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            )
            .build(),
    )
}

/// A loopback TCP proxy in front of a server that, once armed, cuts the first server→client
/// stream that goes past `cut_after` bytes (a dropped connection mid-object).
pub struct CuttingProxy {
    pub endpoint: String,
    pub cuts: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl CuttingProxy {
    pub fn start(upstream: &str, cut_after: u64, cuts_wanted: u64) -> CuttingProxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let cuts = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (cuts2, stop2) = (cuts.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pipe(c2, s2, u64::MAX, None));
                let cuts = cuts2.clone();
                std::thread::spawn(move || {
                    pipe(server, client, cut_after, Some((cuts, cuts_wanted)))
                });
            }
        });
        CuttingProxy {
            endpoint,
            cuts,
            stop,
        }
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.endpoint.trim_start_matches("http://"));
    }
}

fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    cut_after: u64,
    cut: Option<(Arc<AtomicU64>, u64)>,
) {
    let mut buf = [0u8; 16 * 1024];
    let mut sent = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((cuts, wanted)) = &cut
            && sent + n as u64 > cut_after
            && cuts.load(Ordering::SeqCst) < *wanted
        {
            cuts.fetch_add(1, Ordering::SeqCst);
            let keep = (cut_after - sent) as usize;
            let _ = to.write_all(&buf[..keep]);
            break;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// What a [`FaultProxy`] fails: `(method, request target)` → answer `500 InternalError`.
pub type FaultRule = Box<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// An HTTP-aware loopback proxy in front of a server: requests are forwarded unchanged, except
/// those matching the rule while armed, which get `500 InternalError` (an S3 error body) and a
/// closed connection — a failing `UploadPart` or `CompleteMultipartUpload`, say. Counts the
/// requests it failed.
pub struct FaultProxy {
    pub endpoint: String,
    pub failed: Arc<AtomicU64>,
    pub armed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

/// What a [`FaultProxy`] answers a matching request: HTTP status and S3 error code.
pub type FaultAnswer = (u16, &'static str);

impl FaultProxy {
    pub fn start(upstream: &str, rule: FaultRule) -> FaultProxy {
        FaultProxy::start_answering(upstream, rule, (500, "InternalError"))
    }

    /// The same, answering matching requests with `answer` (`(403, "AccessDenied")`, say).
    pub fn start_answering(upstream: &str, rule: FaultRule, answer: FaultAnswer) -> FaultProxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let failed = Arc::new(AtomicU64::new(0));
        let armed = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let rule = Arc::new(rule);
        let (failed2, armed2, stop2) = (failed.clone(), armed.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pipe(s2, c2, u64::MAX, None));
                let (rule, failed, armed) = (rule.clone(), failed2.clone(), armed2.clone());
                std::thread::spawn(move || {
                    forward_requests(client, server, &rule, &failed, &armed, answer)
                });
            }
        });
        FaultProxy {
            endpoint,
            failed,
            armed,
            stop,
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.endpoint.trim_start_matches("http://"));
    }
}

/// Client → server, one HTTP/1.1 request at a time (the SDK never pipelines): the head and the
/// body are forwarded as read, unless the request matches the rule.
fn forward_requests(
    client: TcpStream,
    mut server: TcpStream,
    rule: &FaultRule,
    failed: &AtomicU64,
    armed: &AtomicBool,
    (status, code): FaultAnswer,
) {
    let mut out = client.try_clone().unwrap();
    let mut reader = BufReader::new(client);
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => {
                    let _ = server.shutdown(Shutdown::Both);
                    return;
                }
                Ok(_) => {}
            }
            head.extend_from_slice(&line);
            if line == b"\r\n" {
                break;
            }
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut first = text.split_whitespace();
        let (method, target) = (
            first.next().unwrap_or("").to_string(),
            first.next().unwrap_or("").to_string(),
        );
        let header = |name: &str| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let length: u64 = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        if armed.load(Ordering::SeqCst) && rule(&method, &target) {
            failed.fetch_add(1, Ordering::SeqCst);
            // Drain the body so that the client reads the answer rather than a reset.
            let _ = reader
                .get_ref()
                .set_read_timeout(Some(Duration::from_secs(2)));
            if chunked {
                let _ = std::io::copy(&mut reader, &mut std::io::sink());
            } else {
                let _ = std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink());
            }
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                 <Message>injected by FaultProxy</Message></Error>"
            );
            let resp = format!(
                "HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = out.write_all(resp.as_bytes());
            let _ = out.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            return;
        }
        if server.write_all(&head).is_err() {
            return;
        }
        let copied = if chunked {
            copy_chunked(&mut reader, &mut server)
        } else {
            std::io::copy(&mut (&mut reader).take(length), &mut server).map(|_| ())
        };
        if copied.is_err() {
            let _ = server.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Copies one `Transfer-Encoding: chunked` body, through its last chunk and trailers.
fn copy_chunked(r: &mut BufReader<TcpStream>, w: &mut TcpStream) -> std::io::Result<()> {
    loop {
        let mut size_line = Vec::new();
        r.read_until(b'\n', &mut size_line)?;
        w.write_all(&size_line)?;
        let size_text = String::from_utf8_lossy(&size_line);
        let size = u64::from_str_radix(size_text.trim().split(';').next().unwrap_or("0"), 16)
            .map_err(std::io::Error::other)?;
        if size == 0 {
            loop {
                let mut trailer = Vec::new();
                r.read_until(b'\n', &mut trailer)?;
                w.write_all(&trailer)?;
                if trailer == b"\r\n" || trailer.is_empty() {
                    return Ok(());
                }
            }
        }
        std::io::copy(&mut (&mut *r).take(size + 2), w)?;
    }
}
