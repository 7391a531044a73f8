//! A webhook: `POST` of the manifest JSON, signed.
//!
//! Headers: `Idempotency-Key: <deterministic id of the object version>` and
//! `X-Export-Fetcher-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` keyed
//! by `WEBHOOK_SECRET`. Timeouts, connection errors, 5xx and 429 are retried with exponential
//! backoff and jitter, within the invocation deadline; other 4xx are not. The secret is never
//! logged.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tracing::warn;

use super::{Outgoing, SinkError};

pub const NAME: &str = "webhook";
pub const SIGNATURE_HEADER: &str = "X-Export-Fetcher-Signature";
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
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

/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// Checks a signature header as a receiver would (constant-time comparison, timestamp within
/// `tolerance` of `now`).
pub fn verify(secret: &str, header: &str, body: &[u8], now: u64, tolerance: u64) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for item in header.split(',') {
        match item.split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => v1.push(v.to_string()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if now.abs_diff(t) > tolerance {
        return false;
    }
    v1.iter().any(|candidate| {
        let Some(raw) = decode_hex(candidate) else {
            return false;
        };
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&raw).is_ok()
    })
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
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
    pub fn new(url: String, secret: Option<String>) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
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
                .body(body.to_vec());
            if let Some(secret) = &self.secret {
                req = req.header(SIGNATURE_HEADER, signature(secret, t, body));
            }
            let retry_after = match req.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => {
                    let status = resp.status();
                    last = format!("HTTP {status}");
                    if !(status.is_server_error() || status.as_u16() == 429) {
                        return Err(SinkError {
                            sink: NAME,
                            message: format!(
                                "{last}: the receiver refused the manifest (not retried)"
                            ),
                        });
                    }
                    resp.headers()
                        .get("Retry-After")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs)
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
            if Instant::now() + wait + ATTEMPT_TIMEOUT.min(Duration::from_secs(1)) > stop {
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
        // HMAC-SHA256("secret", "1700000000.{}") computed independently (Python hmac module).
        let sig = signature("secret", 1_700_000_000, b"{}");
        assert_eq!(
            sig,
            "t=1700000000,v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
        assert!(verify("secret", &sig, b"{}", 1_700_000_010, 300));
        assert!(!verify("other", &sig, b"{}", 1_700_000_010, 300));
        assert!(!verify("secret", &sig, b"{ }", 1_700_000_010, 300));
        assert!(!verify("secret", &sig, b"{}", 1_700_009_999, 300));
        assert!(!verify("secret", "garbage", b"{}", 1_700_000_000, 300));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let w =
            WebhookSink::new("http://127.0.0.1:1/x".into(), Some("s3cr3t-value".into())).unwrap();
        assert!(!format!("{w:?}").contains("s3cr3t-value"));
    }
}
