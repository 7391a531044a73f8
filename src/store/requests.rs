//! Counts the S3 requests a client sends, by operation: every attempt, retries included, as S3
//! bills them. Each [`super::s3::S3Store`] carries its own count ([`Requests`]), which
//! `backfill --local`, the benchmarks and the tests read to report requests per object.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

/// The requests sent so far, by operation name (`GetObject`, `PutObject`, …). Clones share the
/// count.
#[derive(Debug, Clone, Default)]
pub struct Requests(Arc<Mutex<BTreeMap<String, u64>>>);

impl Requests {
    /// The counts now.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// All requests sent so far.
    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    fn record(&self, operation: &str) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(operation.to_string()).or_default() += 1;
        }
    }
}

/// The counts from `before` to `after`, operations with none left out.
pub fn since(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or(0).min(*n)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The interceptor that feeds a [`Requests`]: called once per attempt, just before it is sent.
#[derive(Debug, Clone)]
pub struct CountRequests(pub Requests);

impl Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "CountRequests"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let name = cfg.load::<Metadata>().map_or("unknown", |m| m.name());
        self.0.record(name);
        Ok(())
    }
}
