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
use export_fetcher::config::Config;
use export_fetcher::handler::{env_with_clients, sinks_from_config};
use export_fetcher::pipeline::Env;

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

    pub fn glue(&self) -> aws_sdk_glue::Client {
        aws_sdk_glue::Client::from_conf(
            aws_sdk_glue::config::Builder::new()
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

/// The environment on the S3 client for `endpoint`, with no sinks.
pub fn env_at(endpoint: &str, cfg: Config) -> Arc<Env> {
    Arc::new(env_with_clients(cfg, s3_client(endpoint)).unwrap())
}

/// The environment with every sink the configuration names, on moto's clients.
pub fn env_with_sinks(moto: &Moto, cfg: Config) -> Arc<Env> {
    let sinks = sinks_from_config(&cfg, moto.sns(), moto.sqs(), moto.eventbridge()).unwrap();
    Arc::new(
        env_with_clients(cfg, s3_client(&moto.endpoint))
            .unwrap()
            .with_sinks(sinks),
    )
}

/// Creates the SQS queue `name`; returns its URL.
pub async fn queue(moto: &Moto, name: &str) -> String {
    moto.sqs()
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

/// Every message in a queue, with all its attributes (each deleted once received), once two
/// receives have come back empty.
pub async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let mut all = Vec::new();
    let mut empty = 0;
    while empty < 2 {
        let msgs = receive_batch(sqs, url).await;
        if msgs.is_empty() {
            empty += 1;
        }
        all.extend(msgs);
    }
    all
}

/// One receive of up to 10 messages (waiting up to a second), with all their attributes; each
/// is deleted once received.
pub async fn receive_batch(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
) -> Vec<aws_sdk_sqs::types::Message> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .message_attribute_names("All")
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    let msgs = out.messages.unwrap_or_default();
    for m in &msgs {
        sqs.delete_message()
            .queue_url(url)
            .receipt_handle(m.receipt_handle().unwrap())
            .send()
            .await
            .unwrap();
    }
    msgs
}

/// The JSON bodies of [`drain`].
pub async fn drain_json(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<serde_json::Value> {
    drain(sqs, url)
        .await
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect()
}

/// Accepts connections on a fresh loopback port and hands each, with a connection of its own to
/// `upstream`, to `on_connection` (with the upstream address), until the returned flag is set
/// (see [`stop_proxy`]). Returns the proxy's endpoint URL and that flag.
pub fn serve_proxy(
    upstream: &str,
    on_connection: impl Fn(TcpStream, TcpStream, &str) + Send + 'static,
) -> (String, Arc<AtomicBool>) {
    let upstream = upstream.trim_start_matches("http://").to_string();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            if stop2.load(Ordering::Relaxed) {
                return;
            }
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            on_connection(client, server, &upstream);
        }
    });
    (endpoint, stop)
}

/// Stops a [`serve_proxy`] loop: sets its flag and wakes its `accept`.
pub fn stop_proxy(stop: &AtomicBool, endpoint: &str) {
    stop.store(true, Ordering::Relaxed);
    let _ = TcpStream::connect(endpoint.trim_start_matches("http://"));
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
        let cuts = Arc::new(AtomicU64::new(0));
        let cuts2 = cuts.clone();
        let (endpoint, stop) = serve_proxy(upstream, move |client, server, _| {
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || pipe(c2, s2, u64::MAX, None));
            let cuts = cuts2.clone();
            std::thread::spawn(move || pipe(server, client, cut_after, Some((cuts, cuts_wanted))));
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
        stop_proxy(&self.stop, &self.endpoint);
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
        let failed = Arc::new(AtomicU64::new(0));
        let armed = Arc::new(AtomicBool::new(true));
        let rule = Arc::new(rule);
        let (failed2, armed2) = (failed.clone(), armed.clone());
        let (endpoint, stop) = serve_proxy(upstream, move |client, server, _| {
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || pipe(s2, c2, u64::MAX, None));
            let (rule, failed, armed) = (rule.clone(), failed2.clone(), armed2.clone());
            std::thread::spawn(move || {
                forward_requests(client, server, &rule, &failed, &armed, answer)
            });
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
        stop_proxy(&self.stop, &self.endpoint);
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
        let Some(req) = read_request_head(&mut reader) else {
            let _ = server.shutdown(Shutdown::Both);
            return;
        };
        if armed.load(Ordering::SeqCst) && rule(&req.method, &req.target) {
            failed.fetch_add(1, Ordering::SeqCst);
            // Drain the body so that the client reads the answer rather than a reset.
            let _ = reader
                .get_ref()
                .set_read_timeout(Some(Duration::from_secs(2)));
            if req.chunked {
                let _ = std::io::copy(&mut reader, &mut std::io::sink());
            } else {
                let _ = std::io::copy(&mut (&mut reader).take(req.length), &mut std::io::sink());
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
        if server.write_all(&req.head).is_err() {
            return;
        }
        if req.copy_body(&mut reader, &mut server).is_err() {
            let _ = server.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// One HTTP/1.1 request head as read from a client, with what frames its body.
pub struct RequestHead {
    /// The head as sent, request line through the empty line.
    pub head: Vec<u8>,
    pub method: String,
    pub target: String,
    /// `Content-Length` (0 when absent).
    pub length: u64,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
}

impl RequestHead {
    /// The header fields after the request line, names and values trimmed, in order.
    pub fn headers(&self) -> Vec<(String, String)> {
        String::from_utf8_lossy(&self.head)
            .lines()
            .skip(1)
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_string(), v.trim().to_string()))
            })
            .collect()
    }

    /// Reads the `Content-Length` body that follows this head.
    pub fn read_body(&self, reader: &mut BufReader<TcpStream>) -> Vec<u8> {
        let mut body = vec![0u8; self.length as usize];
        reader.read_exact(&mut body).unwrap();
        body
    }

    /// Copies the body that follows this head, as sent.
    pub fn copy_body(
        &self,
        reader: &mut BufReader<TcpStream>,
        w: &mut impl Write,
    ) -> std::io::Result<()> {
        if self.chunked {
            copy_chunked(reader, w)
        } else {
            std::io::copy(&mut reader.take(self.length), w).map(|_| ())
        }
    }
}

/// Reads one request head (lines until `"\r\n"`); `None` once the client has closed or failed.
pub fn read_request_head(reader: &mut BufReader<TcpStream>) -> Option<RequestHead> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return None,
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
    Some(RequestHead {
        head,
        method,
        target,
        length,
        chunked,
    })
}

/// Copies one `Transfer-Encoding: chunked` body, as sent (sizes, data, last chunk, trailers).
fn copy_chunked(r: &mut BufReader<TcpStream>, w: &mut impl Write) -> std::io::Result<()> {
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

/// The multipart uploads still open in `bucket`, as "key upload-id" lines.
pub async fn open_uploads(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let out = s3
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    out.uploads()
        .iter()
        .map(|u| format!("{:?} {:?}", u.key(), u.upload_id()))
        .collect()
}
