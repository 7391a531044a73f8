//! A webhook: `POST` of the manifest JSON, signed.
//!
//! Headers: `Idempotency-Key: <deterministic id of the object version, or of the roll-up's
//! generation>`, `X-Export-Fetcher-Message-Type: object | export | partition` and
//! `X-Export-Fetcher-Signature: t=<unix seconds>,v2=<hex HMAC-SHA256 of "<t>.<Idempotency-Key>.<raw
//! body>">` keyed by `WEBHOOK_SECRET`: the signature covers the timestamp, the key a receiver
//! deduplicates on, and the body. Timeouts, connection errors, 5xx and 429 are retried with
//! exponential backoff and jitter (a `Retry-After` is honoured, clamped to [`MAX_TOTAL`]), within
//! the invocation deadline; other 4xx are not. Redirects are never followed: a 3xx is a refused
//! delivery (a misconfigured URL), so the object is never acknowledged as delivered to a URL that
//! did not take the `POST`. With a secret the URL must be `https://` (or `http://` on loopback).
//! The secret is never logged.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tracing::warn;

use super::{Outgoing, SinkError};

pub const NAME: &str = "webhook";
pub const SIGNATURE_HEADER: &str = "X-Export-Fetcher-Signature";
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// `object`, `export` or `partition` (see `sink::MessageType`).
pub const MESSAGE_TYPE_HEADER: &str = "X-Export-Fetcher-Message-Type";
/// Attempts per delivery.
pub const MAX_ATTEMPTS: u32 = 5;
/// Total time one delivery may take, whatever the deadline.
pub const MAX_TOTAL: Duration = Duration::from_secs(60);
/// One attempt's timeout.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const BASE_BACKOFF: Duration = Duration::from_millis(200);

pub struct WebhookSink {
    client: reqwest::Client,
    url: String,
    secret: Option<String>,
    base_backoff: Duration,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The signature scheme's label in the header. `v1` signed `"<t>.<body>"` only; `v2` also covers
/// the `Idempotency-Key`, so a captured request cannot be replayed under another key.
pub const SCHEME: &str = "v2";

/// The MAC over the signed string `"<t>.<idempotency key>.<body>"`. The key is lowercase hex and
/// `t` decimal digits, so the string cannot be read two ways.
fn mac(secret: &str, timestamp: u64, idempotency_key: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(idempotency_key.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// `t=<t>,v2=<hex HMAC-SHA256(secret, "<t>.<idempotency key>.<body>")>`.
pub fn signature(secret: &str, timestamp: u64, idempotency_key: &str, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, idempotency_key, body)
        .finalize()
        .into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},{SCHEME}={hex}")
}

/// Checks a signature header as a receiver would: the `Idempotency-Key` and the body as received,
/// constant-time comparison, timestamp within `tolerance` of `now`.
pub fn verify(
    secret: &str,
    header: &str,
    idempotency_key: &str,
    body: &[u8],
    now: u64,
    tolerance: u64,
) -> bool {
    let mut t = None;
    let mut candidates = Vec::new();
    for item in header.split(',') {
        match item.split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some((scheme, v)) if scheme == SCHEME => candidates.push(v.to_string()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if now.abs_diff(t) > tolerance {
        return false;
    }
    candidates.iter().any(|candidate| {
        let Some(raw) = decode_hex(candidate) else {
            return false;
        };
        mac(secret, t, idempotency_key, body)
            .verify_slice(&raw)
            .is_ok()
    })
}

/// Why a webhook sink cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum WebhookConfigError {
    #[error("not a URL: {0}")]
    Url(String),
    #[error("expected an http:// or https:// URL")]
    Scheme,
    #[error(
        "a signed webhook must use https:// (plain http:// is accepted only on loopback): the \
         signature and the manifest would cross the network in clear text"
    )]
    CleartextWithSecret,
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Whether `url` names this machine: `localhost`, 127.0.0.0/8 or `::1`.
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    // An IPv6 host comes bracketed; a parsed URL's IPv4 host is in dotted form.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Checks a webhook URL: `https://`, or `http://` when there is no secret or the host is
/// loopback (a local receiver, tests).
pub fn check_url(url: &str, has_secret: bool) -> Result<reqwest::Url, WebhookConfigError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| WebhookConfigError::Url(e.to_string()))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if !has_secret || is_loopback(&parsed) => Ok(parsed),
        "http" => Err(WebhookConfigError::CleartextWithSecret),
        _ => Err(WebhookConfigError::Scheme),
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// A `Retry-After` in seconds, clamped to [`MAX_TOTAL`] (no delivery waits longer, and a huge
/// value must not overflow an `Instant`). An HTTP-date or garbage falls back to the backoff.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|secs| Duration::from_secs(secs.min(MAX_TOTAL.as_secs())))
}

fn jitter(max: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0) as u64;
    // xorshift of the clock's nanoseconds: enough to spread retries, no RNG needed.
    let mut x = nanos ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let ms = max.as_millis().max(1) as u64;
    Duration::from_millis(x % ms)
}

impl WebhookSink {
    /// Refuses a URL [`check_url`] refuses; built once at start-up, so a bad configuration stops
    /// the function before any object is processed.
    pub fn new(url: String, secret: Option<String>) -> Result<Self, WebhookConfigError> {
        check_url(&url, secret.is_some())?;
        let client = reqwest::Client::builder()
            // A redirect would turn the POST into a bodiless GET (301/302/303) that could answer
            // 200; a 3xx is reported as a refused delivery instead.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("export-fetcher/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WebhookSink {
            client,
            url,
            secret,
            base_backoff: BASE_BACKOFF,
        })
    }

    /// For tests: a shorter first backoff.
    pub fn with_base_backoff(mut self, base: Duration) -> Self {
        self.base_backoff = base;
        self
    }

    pub async fn send(&self, msg: &Outgoing) -> Result<(), SinkError> {
        let started = Instant::now();
        let stop = msg
            .deadline
            .map_or(started + MAX_TOTAL, |d| d.min(started + MAX_TOTAL));
        let body = msg.full.as_bytes();
        let mut last = String::new();
        for attempt in 1..=MAX_ATTEMPTS {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let mut req = self
                .client
                .post(&self.url)
                .header("Content-Type", "application/json")
                .header(IDEMPOTENCY_HEADER, &msg.idempotency_key)
                .header(MESSAGE_TYPE_HEADER, msg.message_type.as_str())
                .body(body.to_vec());
            if let Some(secret) = &self.secret {
                req = req.header(
                    SIGNATURE_HEADER,
                    signature(secret, t, &msg.idempotency_key, body),
                );
            }
            let retry_after = match req.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => {
                    let status = resp.status();
                    last = format!("HTTP {status}");
                    if status.is_redirection() {
                        return Err(SinkError {
                            sink: NAME,
                            message: format!(
                                "{last}: the webhook URL redirects; redirects are not followed, \
                                 so the manifest was not delivered (fix WEBHOOK_URL; not retried \
                                 within this delivery)"
                            ),
                        });
                    }
                    if !(status.is_server_error() || status.as_u16() == 429) {
                        return Err(SinkError {
                            sink: NAME,
                            message: format!(
                                "{last}: the receiver refused the manifest (not retried)"
                            ),
                        });
                    }
                    retry_after(resp.headers())
                }
                Err(e) => {
                    last = if e.is_timeout() {
                        "timed out".to_string()
                    } else if e.is_connect() {
                        "cannot connect".to_string()
                    } else {
                        "request failed".to_string()
                    };
                    None
                }
            };
            if attempt == MAX_ATTEMPTS {
                break;
            }
            let backoff = self.base_backoff * 2u32.pow(attempt - 1);
            let wait = retry_after.unwrap_or(backoff / 2 + jitter(backoff / 2));
            let next_attempt_ends = Instant::now()
                .checked_add(wait + ATTEMPT_TIMEOUT.min(Duration::from_secs(1)))
                .unwrap_or(stop + Duration::from_secs(1));
            if next_attempt_ends > stop {
                last = format!("{last}; no time left for another attempt");
                break;
            }
            warn!(attempt, error = %last, wait_ms = wait.as_millis() as u64, "webhook delivery will be retried");
            tokio::time::sleep(wait).await;
        }
        Err(SinkError {
            sink: NAME,
            message: format!("not delivered after retries: {last}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_an_independent_computation_and_verifies() {
        let key = "5f1c".repeat(16);
        // HMAC-SHA256("secret", "1700000000.<key>.{}") computed independently (Python hmac).
        let sig = signature("secret", 1_700_000_000, &key, b"{}");
        assert_eq!(
            sig,
            "t=1700000000,v2=15e9a2011c23afc28a40566592e02887ad7a1a10c7ea17916c5ec0664878d5ce"
        );
        assert!(verify("secret", &sig, &key, b"{}", 1_700_000_010, 300));
        assert!(!verify("other", &sig, &key, b"{}", 1_700_000_010, 300));
        assert!(!verify("secret", &sig, &key, b"{ }", 1_700_000_010, 300));
        assert!(!verify(
            "secret",
            &sig,
            &"0".repeat(64),
            b"{}",
            1_700_000_010,
            300
        ));
        assert!(!verify("secret", &sig, &key, b"{}", 1_700_009_999, 300));
        assert!(!verify(
            "secret",
            "garbage",
            &key,
            b"{}",
            1_700_000_000,
            300
        ));
        // The timestamp is signed: moving it breaks the signature.
        let moved = sig.replace("t=1700000000", "t=1700000001");
        assert!(!verify("secret", &moved, &key, b"{}", 1_700_000_010, 300));
    }

    #[test]
    fn webhook_http_url_with_secret_is_refused_unless_loopback() {
        let secret = Some("s".to_string());
        let cases = [
            ("https://hooks.example.com/x", true, true),
            ("http://hooks.example.com/x", true, false),
            ("http://hooks.example.com/x", false, true),
            ("http://127.0.0.1:8080/x", true, true),
            ("http://127.9.9.9/x", true, true),
            ("http://localhost:9/x", true, true),
            ("http://LOCALHOST/x", true, true),
            ("http://[::1]:9/x", true, true),
            ("http://10.0.0.1/x", true, false),
            ("http://localhost.example.com/x", true, false),
            ("http://127.0.0.1.nip.io/x", true, false),
            ("ftp://127.0.0.1/x", false, false),
            ("not a url", false, false),
        ];
        for (url, with_secret, ok) in cases {
            let built = WebhookSink::new(url.into(), secret.clone().filter(|_| with_secret));
            assert_eq!(
                built.is_ok(),
                ok,
                "url={url} secret={with_secret}: {:?}",
                built.err()
            );
        }
        let err = WebhookSink::new("http://hooks.example.com/x".into(), secret).unwrap_err();
        assert!(matches!(err, WebhookConfigError::CleartextWithSecret));
        assert!(err.to_string().contains("https://"), "{err}");
    }

    #[test]
    fn retry_after_is_clamped_and_never_overflows() {
        let mut h = reqwest::header::HeaderMap::new();
        for (value, want) in [
            ("18446744073709551615", Some(MAX_TOTAL)),
            ("99999999999", Some(MAX_TOTAL)),
            ("3", Some(Duration::from_secs(3))),
            (" 0 ", Some(Duration::ZERO)),
            ("Wed, 21 Oct 2015 07:28:00 GMT", None),
            ("-1", None),
        ] {
            h.insert(reqwest::header::RETRY_AFTER, value.parse().unwrap());
            assert_eq!(retry_after(&h), want, "Retry-After: {value}");
            if let Some(wait) = retry_after(&h) {
                assert!(Instant::now().checked_add(wait).is_some());
            }
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let w =
            WebhookSink::new("http://127.0.0.1:1/x".into(), Some("s3cr3t-value".into())).unwrap();
        assert!(!format!("{w:?}").contains("s3cr3t-value"));
    }
}
