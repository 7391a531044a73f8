//! The `export-fetcher` command line. `main.rs` only wires this up.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[cfg(feature = "backfill")]
use crate::backfill::{self, location::S3Url};
use crate::config::Config;
use crate::manifest::{Source, Status};
use crate::sanitize_for_log;
use crate::store::local::{LocalDir, LocalFile};
use crate::store::{ObjectSource, PartWriter};
use crate::{handler, pipeline};

/// Shown after `--help`: what configures the commands, and what they exit with.
const AFTER_HELP: &str = "\
Configuration (environment variables; a bad value stops `index`, `invoke`, `demo`, `backfill`,
`close-export` and the Lambda with exit status 2, naming the variable; the README's Configuration table has the details):
  OUTPUT_BUCKET                 where parts and manifests go (default: the source bucket)
  OUTPUT_PREFIX                 prefix of every output key (default: export-fetcher/)
  WRITE_PARTS                   write the decompressed parts (default: true)
  OUTPUT_SSE                    none, AES256 or aws:kms on everything written (default: none)
  OUTPUT_SSE_KMS_KEY_ID         the KMS key for OUTPUT_SSE=aws:kms
  INCLUDE_KEYS, EXCLUDE_KEYS    comma-separated globs on the source key (* also matches /)
  MAX_OBJECT_BYTES              larger objects are not read (default: 16G)
  MAX_EXPANDED_BYTES            decompressed bytes of one object (default: 64G)
  MAX_EXPANSION_RATIO           decompressed / compressed bytes (default: 250)
  MAX_ARCHIVE_ENTRIES           entries a zip may hold (default: 10000)
  MAX_RECORD_BYTES              the longest record held in memory (default: 32M)
  OFFSET_INTERVAL               records between two index offsets (default: 10000)
  SNS_TOPIC_ARN, SQS_QUEUE_URL, EVENT_BUS_NAME, WEBHOOK_URL, WEBHOOK_SECRET
                                where `invoke`, `close-export` and the Lambda forward manifests
  SOURCE_BUCKET                 the bucket Braze writes to (the export callback lists it)
  CALLBACK_TOKEN                the secret path segment of Braze's export callback URL
  EXPORT_QUIET_MINUTES          the sweep closes an export this long quiet (default: 30)
  CURRENTS_GRACE_MINUTES        the sweep closes a Currents hour this long after it ends
                                (default: 60)
  GLUE_DATABASE                 a Glue table per Currents integration and event type, a partition
                                per hour
  AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3
                                another S3 endpoint for `invoke` and `close-export` (path-style;
                                without AWS_REGION and credentials it uses us-east-1 and local
                                dummy credentials)
  RUST_LOG (or AWS_LAMBDA_LOG_LEVEL), AWS_LAMBDA_LOG_FORMAT=JSON
                                log level (default: warn; error for `index`) and format, on stderr
  AWS_LAMBDA_RUNTIME_API        set by Lambda: the binary serves the Lambda runtime instead

Exit status:
  0  done: `index` wrote a complete manifest; `invoke`: no message or object is to be retried;
     `demo`: every sample got the status it should; `close-export`: the export is complete
  1  not done: `index`: the manifest is partial or failed; `invoke`: the response lists
     batchItemFailures, a Batch Operations task that did not succeed, a sweep error or an
     HTTP status of 400 or more, or the invocation failed (retryable); `demo`: a check failed;
     `close-export`: the export is partial or failed, or not closed or not forwarded yet
  2  usage error: bad flags, an unreadable file or event, an unusable --out, bad configuration,
     a `close-export` path that is not an API export folder";

#[derive(Debug, Parser)]
#[command(
    name = "export-fetcher",
    version,
    about = "Index, decompress and forward the files Braze writes to S3",
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline on a local file as if it were the S3 object KEY; print the manifest.
    Index {
        /// The file to index.
        file: PathBuf,
        /// The S3 key the file stands for (decides the Braze kind); default: the file's name.
        #[arg(long)]
        key: Option<String>,
        /// Write the decompressed parts and the manifest under DIR, laid out as in the output bucket.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Run the Lambda handler once on an event file; print the handler's response.
    ///
    /// Runs against the configured AWS endpoints; `AWS_ENDPOINT_URL` works for a local S3 (such
    /// as `s3-server`). Exit status 1 when the response lists batchItemFailures or the
    /// invocation failed.
    Invoke {
        /// A Lambda event (see `events/`).
        event: PathBuf,
    },
    /// The main job end to end with no AWS account: an embedded S3 server on loopback, sample Braze
    /// exports, their notifications through the real handler, a summary.
    Demo,
    /// Serve a folder as a local S3 endpoint on 127.0.0.1, for `invoke` without AWS.
    ///
    /// The demo's server (s3s-fs): uploads the given files, prints
    /// `ready <endpoint>` and serves until stopped. Requests must be signed with
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY when set, else with the pair `invoke` uses
    /// against a local endpoint when no credentials are configured.
    S3Server {
        /// The folder that holds the buckets.
        #[arg(long)]
        root: PathBuf,
        /// The port to listen on (0: a free one, printed in the `ready` line).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Upload FILE as BUCKET/KEY first (the bucket is created; FILE follows the last `=`);
        /// repeatable.
        #[arg(long = "put", value_name = "BUCKET/KEY=FILE")]
        puts: Vec<String>,
    },
    /// Run the function over objects already in a bucket: lists them (or reads an S3 Inventory
    /// report), leaves out outputs and objects that already have a current manifest, and creates
    /// an S3 Batch Operations job that invokes the function on each (or, with --local, processes
    /// them on this machine).
    #[cfg(feature = "backfill")]
    Backfill(Box<BackfillArgs>),
    /// Close an API export now: list its folder, index any file still without its manifest,
    /// write the export manifest (the next generation when the folder changed since the last)
    /// and forward it; print it. Exit 0 when it is complete, 1 when partial or failed.
    CloseExport {
        /// The export's folder: s3://BUCKET/segment-export/SEGMENT_ID/DATE/OBJECT_PREFIX/
        #[arg(value_name = "s3://BUCKET/segment-export/SEGMENT_ID/DATE/OBJECT_PREFIX/")]
        folder: String,
    },
    /// Print the IAM policy Braze documents for connecting BUCKET (for Braze's access-key method,
    /// or IAM set up by hand). One of --currents or --data-export is required.
    #[command(group(
        clap::ArgGroup::new("purpose")
            .args(["currents", "data_export"])
            .required(true)
    ))]
    BrazePolicy {
        /// The bucket connected to Braze.
        #[arg(long)]
        bucket: String,
        /// Currents: ListBucket, GetBucketLocation, PutObject, GetObject.
        #[arg(long)]
        currents: bool,
        /// Dashboard data export: the same plus DeleteObject.
        #[arg(long)]
        data_export: bool,
    },
}

/// `export-fetcher backfill`.
#[cfg(feature = "backfill")]
#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    /// The objects to backfill: s3://BUCKET or s3://BUCKET/PREFIX. With --from-inventory it is
    /// optional and narrows the report to PREFIX.
    #[arg(
        value_name = "s3://BUCKET[/PREFIX]",
        value_parser = backfill::parse_s3_url,
        required_unless_present = "from_inventory"
    )]
    pub target: Option<S3Url>,
    /// Read the objects from an S3 Inventory report (CSV or CSV.gz) instead of listing them.
    #[arg(long, value_name = "s3://BUCKET/KEY/manifest.json", value_parser = backfill::parse_s3_url)]
    pub from_inventory: Option<S3Url>,
    /// Only keys that match GLOB (repeatable; `*` also matches `/`).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Leave out keys that match GLOB (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Only objects last modified at or after DATE: 2025-04-01 (UTC) or 2025-04-01T17:00:00Z.
    #[arg(long, value_name = "DATE", value_parser = backfill::select::parse_since)]
    pub since: Option<aws_sdk_s3::primitives::DateTime>,
    /// Index again objects that already have a current manifest (the job passes
    /// reprocess=true to the function; the new manifest is the next generation).
    #[arg(long)]
    pub reprocess: bool,
    /// Only objects whose manifest is `failed` (failures caused by the object itself only with
    /// --reprocess).
    #[arg(long)]
    pub failed_only: bool,
    /// Process the objects on this machine, through the same pipeline, instead of a Batch
    /// Operations job.
    #[arg(long, conflicts_with_all = [
        "function_arn", "role_arn", "account_id", "stack", "confirmation_required", "dry_run"
    ])]
    pub local: bool,
    /// Objects processed at once with --local (default: 32 per CPU, from 16 to 128).
    #[arg(long, requires = "local", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: Option<u16>,
    /// The function the job invokes (default with --stack: its FunctionArn output).
    #[arg(long, value_name = "ARN")]
    pub function_arn: Option<String>,
    /// The role Batch Operations assumes (default with --stack: its BatchOperationsRoleArn
    /// output).
    #[arg(long, value_name = "ARN")]
    pub role_arn: Option<String>,
    /// The account that creates the job (default: the function ARN's).
    #[arg(long, value_name = "ID")]
    pub account_id: Option<String>,
    /// Take the ARNs and the output location from this CloudFormation stack's outputs.
    #[arg(long, value_name = "NAME")]
    pub stack: Option<String>,
    /// The job's priority (higher runs first).
    #[arg(long, default_value_t = backfill::job::DEFAULT_PRIORITY)]
    pub priority: i32,
    /// Create the job suspended, waiting for a confirmation (S3 console, or
    /// `aws s3control update-job-status --requested-job-status Ready`).
    #[arg(long)]
    pub confirmation_required: bool,
    /// Write the CSV manifest, create no job, print the CreateJob request as JSON.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `backfill`; returns the exit status.
#[cfg(feature = "backfill")]
pub async fn backfill(args: BackfillArgs, cfg: Config) -> i32 {
    use crate::backfill::plan::Origin;
    use crate::backfill::{Options, Run, job::JobArgs, select::Mode};
    let origin = match (args.from_inventory, args.target) {
        (Some(manifest), within) => Origin::Inventory { manifest, within },
        (None, Some(url)) => Origin::Listing(url),
        (None, None) => {
            eprintln!("export-fetcher: backfill needs s3://BUCKET[/PREFIX] or --from-inventory");
            return EXIT_USAGE;
        }
    };
    let run = if args.local {
        Run::Local {
            concurrency: args
                .concurrency
                .map_or_else(backfill::local::default_concurrency, usize::from),
        }
    } else {
        Run::Job(JobArgs {
            function_arn: args.function_arn,
            role_arn: args.role_arn,
            account_id: args.account_id,
            stack: args.stack,
            priority: args.priority,
            confirmation_required: args.confirmation_required,
            dry_run: args.dry_run,
        })
    };
    let opts = Options {
        origin,
        include: args.include,
        exclude: args.exclude,
        since: args.since,
        mode: Mode {
            reprocess: args.reprocess,
            failed_only: args.failed_only,
        },
        run,
    };
    backfill::run(opts, cfg).await
}

/// Runs `s3-server`: serves until the process is stopped; returns only on an error.
#[cfg(feature = "demo")]
pub async fn s3_server(root: PathBuf, port: u16, puts: Vec<String>) -> i32 {
    use crate::demo::server::{Server, local_client, parse_puts, put_files};
    let key = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| LOCAL_ACCESS_KEY.into());
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| LOCAL_SECRET_KEY.into());
    let puts = match parse_puts(&puts) {
        Ok(puts) => puts,
        Err(e) => {
            eprintln!("export-fetcher: {e}");
            return EXIT_USAGE;
        }
    };
    if let Err(e) = std::fs::create_dir_all(&root) {
        eprintln!("export-fetcher: cannot create {}: {e}", root.display());
        return EXIT_USAGE;
    }
    let server = match Server::start_at(&root, &key, &secret, port).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("export-fetcher: {e}");
            return EXIT_NOT_COMPLETE;
        }
    };
    if let Err(e) = put_files(&local_client(&server.endpoint(), &key, &secret), &puts).await {
        eprintln!("export-fetcher: {e}");
        return e.exit_code();
    }
    println!("ready {}", server.endpoint());
    std::future::pending::<()>().await;
    server.stop().await;
    EXIT_OK
}

/// `s3-server` in a build without the `demo` feature (the Lambda build): says so.
#[cfg(not(feature = "demo"))]
pub async fn s3_server(_root: PathBuf, _port: u16, _puts: Vec<String>) -> i32 {
    eprintln!(
        "export-fetcher: this build has no local S3 server (built without the `demo` feature, \
         as for Lambda); run it from the source tree with `cargo run --release -- s3-server`"
    );
    EXIT_USAGE
}

/// Runs `demo`; returns the exit status.
#[cfg(feature = "demo")]
pub async fn demo(cfg: Config) -> i32 {
    crate::demo::run(cfg).await
}

/// `demo` in a build without the `demo` feature (the Lambda build): says so.
#[cfg(not(feature = "demo"))]
pub async fn demo(_cfg: Config) -> i32 {
    eprintln!(
        "export-fetcher: this build has no demo (built without the `demo` feature, as for Lambda); \
         run `cargo run --release -- demo` from the source tree"
    );
    EXIT_USAGE
}

/// Runs `braze-policy`; returns the exit status.
pub fn braze_policy(bucket: &str, currents: bool) -> i32 {
    use crate::braze_policy::{Purpose, check_bucket_name, policy};
    if let Err(message) = check_bucket_name(bucket) {
        eprintln!("export-fetcher: {message}");
        return EXIT_USAGE;
    }
    let purpose = if currents {
        Purpose::Currents
    } else {
        Purpose::DataExport
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&policy(bucket, purpose)).unwrap_or_default()
    );
    EXIT_OK
}

/// Exit status: done (`index`: complete; `invoke`: nothing to retry).
pub const EXIT_OK: i32 = 0;
/// Exit status: not done (`index`: partial or failed; `invoke`: something is to be retried).
pub const EXIT_NOT_COMPLETE: i32 = 1;
/// Exit status: bad flags, an unreadable input, an unusable `--out`, bad configuration.
pub const EXIT_USAGE: i32 = 2;

/// The variables that point the SDK at another endpoint than AWS's (a local S3, usually).
const ENDPOINT_URL_VARS: [&str; 2] = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"];
/// The region `invoke` uses against a custom endpoint when none is configured.
pub const LOCAL_REGION: &str = "us-east-1";
/// The credentials `invoke` signs with against a custom endpoint when none are configured, and
/// that `s3-server` accepts when AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not set.
pub const LOCAL_ACCESS_KEY: &str = "local";
pub const LOCAL_SECRET_KEY: &str = "local-secret";

/// Whether an endpoint URL variable is set (and not empty).
fn endpoint_url_set(var: impl Fn(&str) -> Option<String>) -> bool {
    ENDPOINT_URL_VARS
        .iter()
        .any(|v| var(v).is_some_and(|s| !s.trim().is_empty()))
}

/// The AWS configuration `invoke` runs with against a custom endpoint: the region and the
/// credentials from the environment or the profile files (`AWS_PROFILE`, SSO, web identity and
/// ECS included), else [`LOCAL_REGION`] and the dummy pair [`LOCAL_ACCESS_KEY`] (said on
/// stderr). The EC2 instance metadata service is never asked: off EC2 it only times out, and a
/// local endpoint wants neither.
async fn local_sdk_config() -> aws_config::SdkConfig {
    use aws_config::meta::credentials::CredentialsProviderChain;
    use aws_config::meta::region::RegionProviderChain;
    use aws_sdk_s3::config::{Credentials, ProvideCredentials, SharedCredentialsProvider};
    let region = RegionProviderChain::first_try(
        aws_config::environment::region::EnvironmentVariableRegionProvider::new(),
    )
    .or_else(aws_config::profile::ProfileFileRegionProvider::builder().build())
    .or_else(aws_config::Region::new(LOCAL_REGION));
    let configured = CredentialsProviderChain::first_try(
        "Environment",
        aws_config::environment::credentials::EnvironmentVariableCredentialsProvider::new(),
    )
    .or_else(
        "Profile",
        aws_config::profile::ProfileFileCredentialsProvider::builder().build(),
    )
    .or_else(
        "WebIdentityToken",
        aws_config::web_identity_token::WebIdentityTokenCredentialsProvider::builder().build(),
    )
    .or_else(
        "EcsContainer",
        aws_config::ecs::EcsCredentialsProvider::builder().build(),
    );
    let credentials = if configured.provide_credentials().await.is_ok() {
        SharedCredentialsProvider::new(configured)
    } else {
        // A log line, so that `AWS_LAMBDA_LOG_FORMAT=JSON` keeps stderr all JSON.
        tracing::warn!(
            "no AWS credentials configured: signing with the dummy pair \
             {LOCAL_ACCESS_KEY}/{LOCAL_SECRET_KEY} for the endpoint URL (what `s3-server` \
             accepts by default)"
        );
        SharedCredentialsProvider::new(Credentials::new(
            LOCAL_ACCESS_KEY,
            LOCAL_SECRET_KEY,
            None,
            None,
            "export-fetcher-local",
        ))
    };
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(region)
        .credentials_provider(credentials)
        .load()
        .await
}

/// The handler's environment for `invoke`: against AWS (no endpoint URL set) exactly as in
/// Lambda ([`handler::build_env`], the SDK's default chains); against a custom endpoint with
/// [`local_sdk_config`] and path-style S3 addressing.
async fn invoke_env(cfg: Config) -> Result<pipeline::Env, crate::config::ConfigError> {
    if !endpoint_url_set(|v| std::env::var(v).ok()) {
        return handler::build_env(cfg).await;
    }
    handler::env_from_sdk_config(cfg, &local_sdk_config().await, true)
}

/// Runs `invoke`; returns the exit status: 0 when nothing is to be retried, 1 when the SQS
/// response lists `batchItemFailures` or the invocation failed, 2 for an unusable event file
/// or configuration. The reason for each retry is logged (a `WARN` line per object) and not
/// repeated.
pub async fn invoke(event: PathBuf, cfg: Config) -> i32 {
    let text = match std::fs::read_to_string(&event) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("export-fetcher: cannot read {}: {e}", event.display());
            return EXIT_USAGE;
        }
    };
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("export-fetcher: {} is not JSON: {e}", event.display());
            return EXIT_USAGE;
        }
    };
    let env = match invoke_env(cfg).await {
        Ok(env) => Arc::new(env),
        Err(e) => {
            eprintln!("export-fetcher: {e}");
            return EXIT_USAGE;
        }
    };
    match handler::handle(env, value, None).await {
        Ok(response) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&response).unwrap_or_default()
            );
            // A Function URL answer (the export callback) fails with its HTTP status.
            if let Some(status) = response["statusCode"].as_u64() {
                return if status < 400 {
                    EXIT_OK
                } else {
                    EXIT_NOT_COMPLETE
                };
            }
            // A Batch Operations answer fails with any task that did not succeed.
            if response["invocationSchemaVersion"].is_string() {
                let failed = response["results"].as_array().map_or(0, |results| {
                    results
                        .iter()
                        .filter(|r| r["resultCode"] != "Succeeded")
                        .count()
                });
                if failed == 0 {
                    return EXIT_OK;
                }
                tracing::warn!(failed, "{failed} Batch Operations task(s) did not succeed");
                return EXIT_NOT_COMPLETE;
            }
            // The sweep's report fails with any export or partition it could not sweep.
            if let Some(errors) = response["errors"].as_array()
                && response["oldest_open_seconds"].is_number()
            {
                return if errors.is_empty() {
                    EXIT_OK
                } else {
                    EXIT_NOT_COMPLETE
                };
            }
            let failures = response["batchItemFailures"].as_array().map_or(0, Vec::len);
            if failures == 0 {
                return EXIT_OK;
            }
            tracing::warn!(
                failures,
                "{failures} message(s) to be retried (batchItemFailures; the reasons are logged \
                 above)"
            );
            EXIT_NOT_COMPLETE
        }
        Err(e) => {
            // An event that is no trigger at all is a bad input file; a retryable failure was
            // logged object by object (`object will be retried`): say only that it failed.
            let code = match &e {
                handler::HandlerError::Unrecognised(_) => EXIT_USAGE,
                handler::HandlerError::Retryable { .. } | handler::HandlerError::Sweep(_) => {
                    EXIT_NOT_COMPLETE
                }
            };
            let summary = match &e {
                handler::HandlerError::Unrecognised(_) | handler::HandlerError::Sweep(_) => {
                    e.to_string()
                }
                handler::HandlerError::Retryable { .. } => {
                    "the invocation failed: retryable (the reasons are logged above)".to_string()
                }
            };
            let diagnostic = lambda_runtime::Diagnostic::from(e);
            println!(
                "{}",
                serde_json::json!({"errorType": diagnostic.error_type, "errorMessage": diagnostic.error_message})
            );
            eprintln!("export-fetcher: {summary}");
            code
        }
    }
}

/// Runs `close-export`; returns the exit status.
pub async fn close_export(folder: &str, cfg: Config) -> i32 {
    use crate::rollup::export::{self, Closed, ClosedBy, Folder, Mode};
    let parsed = folder
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(bucket, _)| !bucket.is_empty())
        .and_then(|(bucket, prefix)| Folder::parse(bucket, prefix));
    let Some(folder) = parsed else {
        eprintln!(
            "export-fetcher: {folder:?} is not an API export folder: expected \
             s3://BUCKET/segment-export/SEGMENT_ID/YYYY-MM-DD/<uuid>-<unix seconds>/"
        );
        return EXIT_USAGE;
    };
    let env = match invoke_env(cfg).await {
        Ok(env) => env,
        Err(e) => {
            eprintln!("export-fetcher: {e}");
            return EXIT_USAGE;
        }
    };
    let closed = export::close(&env, &folder, ClosedBy::Command, Mode::Index, false, None).await;
    let manifest = match closed {
        Ok(Closed::Written {
            manifest,
            forward_error,
        }) => {
            if let Some(e) = forward_error {
                eprintln!(
                    "export-fetcher: the export manifest is written but not forwarded ({e}); \
                     the scheduled sweep or a second close-export forwards it"
                );
                println!("{}", manifest.to_json_pretty());
                return EXIT_NOT_COMPLETE;
            }
            manifest
        }
        Ok(Closed::Unchanged(manifest)) => {
            eprintln!(
                "export-fetcher: the export was already closed with these files (generation {})",
                manifest.generation
            );
            // Forwarded where it was not yet (a sink that was down): the delivery records make
            // this a no-op for the sinks that have it.
            let out_bucket = env.output_bucket(&folder.bucket).to_string();
            if let Err(e) = export::forward_export(&env, &out_bucket, &manifest, None, false).await
            {
                eprintln!("export-fetcher: the export manifest is not forwarded: {e}");
                println!("{}", manifest.to_json_pretty());
                return EXIT_NOT_COMPLETE;
            }
            manifest
        }
        Ok(Closed::Waiting { missing }) => {
            eprintln!(
                "export-fetcher: {} file(s) could not be indexed yet",
                missing.len()
            );
            return EXIT_NOT_COMPLETE;
        }
        Ok(Closed::Empty) => {
            eprintln!(
                "export-fetcher: s3://{}/{} holds no object",
                folder.bucket, folder.prefix
            );
            return EXIT_NOT_COMPLETE;
        }
        Err(e) => {
            eprintln!("export-fetcher: the export was not closed: {e}");
            return EXIT_NOT_COMPLETE;
        }
    };
    println!("{}", manifest.to_json_pretty());
    if manifest.status == Status::Complete {
        EXIT_OK
    } else {
        EXIT_NOT_COMPLETE
    }
}

/// Serves the Lambda Runtime API until the runtime stops.
pub async fn serve_lambda(cfg: Config) -> Result<(), lambda_runtime::Error> {
    let env = Arc::new(handler::build_env(cfg).await?);
    crate::metrics::enable();
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let env = env.clone();
            async move {
                let deadline = handler::work_deadline(event.context.deadline);
                handler::handle(env, event.payload, deadline).await
            }
        },
    ))
    .await
}

/// An [`ObjectSource`] that counts the bytes read from it, for a progress bar.
struct Counted<S> {
    inner: S,
    read: Arc<AtomicU64>,
}

struct CountedReader<'a> {
    inner: Box<dyn Read + Send + 'a>,
    read: Arc<AtomicU64>,
}

impl Read for CountedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<S: ObjectSource> ObjectSource for Counted<S> {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_range(&self, start: u64, end: u64) -> std::io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(CountedReader {
            inner: self.inner.read_range(start, end)?,
            read: self.read.clone(),
        }))
    }
}

/// Draws bytes read and throughput on stderr while `read` grows, when stderr is a terminal.
fn progress_bar(
    total: u64,
    read: Arc<AtomicU64>,
) -> Option<(ProgressBar, tokio::task::JoinHandle<()>)> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {bar:30} {binary_bytes}/{binary_total_bytes} read, {binary_bytes_per_sec}, {elapsed}",
        )
        .expect("valid template"),
    );
    let ticker = bar.clone();
    let task = tokio::spawn(async move {
        loop {
            ticker.set_position(read.load(Ordering::Relaxed).min(total));
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    Some((bar, task))
}

/// Makes sure `--out DIR` can take the outputs before any work: created if missing, and a
/// directory that a file can be created in (a path to a file, under a file or in a read-only
/// place is refused).
fn check_out_dir(dir: &std::path::Path) -> Result<(), String> {
    if dir.exists() && !dir.is_dir() {
        return Err("exists and is not a directory".into());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create it: {e}"))?;
    let probe = dir.join(format!(
        ".export-fetcher-write-check-{}",
        std::process::id()
    ));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| format!("cannot write in it: {e}"))?;
    std::fs::remove_file(&probe).map_err(|e| format!("cannot write in it: {e}"))
}

/// Runs `index`; returns the exit status.
pub async fn index(file: PathBuf, key: Option<String>, out: Option<PathBuf>, cfg: Config) -> i32 {
    if key.as_deref().is_some_and(str::is_empty) {
        eprintln!("export-fetcher: --key must not be empty (it is the S3 key the file stands for)");
        return EXIT_USAGE;
    }
    if let Some(dir) = &out
        && let Err(e) = check_out_dir(dir)
    {
        eprintln!("export-fetcher: --out {}: {e}", dir.display());
        return EXIT_USAGE;
    }
    let source = match LocalFile::open(&file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("export-fetcher: cannot read {}: {e}", file.display());
            return EXIT_USAGE;
        }
    };
    let read = Arc::new(AtomicU64::new(0));
    let progress = progress_bar(source.size(), read.clone());
    let source = Counted {
        inner: source,
        read,
    };
    let key = key.unwrap_or_else(|| {
        file.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let writer: Option<Arc<dyn PartWriter>> =
        out.as_deref().map(|dir| Arc::new(LocalDir::new(dir)) as _);
    let meta = Source {
        bucket: String::new(),
        key,
        ..Source::default()
    };
    let cfg = Arc::new(cfg);
    let outcome = pipeline::run(Arc::new(source), meta, cfg, writer.clone(), None).await;
    if let Some((bar, task)) = progress {
        task.abort();
        bar.finish_and_clear();
    }
    let manifest = outcome.manifest;
    let json = manifest.to_json_pretty();
    if let Some(writer) = &writer
        && let Err(e) = writer.put(&manifest.manifest_key, json.as_bytes())
    {
        eprintln!("export-fetcher: cannot write the manifest: {e}");
        println!("{json}");
        return EXIT_NOT_COMPLETE;
    }
    println!("{json}");
    if manifest.status == Status::Complete {
        EXIT_OK
    } else {
        eprintln!(
            "export-fetcher: {}: {}",
            manifest.status.as_str(),
            manifest
                .errors
                .iter()
                .map(|e| match &e.part {
                    Some(p) => format!("{}: {}", sanitize_for_log(p), sanitize_for_log(&e.message)),
                    None => sanitize_for_log(&e.message),
                })
                .collect::<Vec<_>>()
                .join("; ")
        );
        EXIT_NOT_COMPLETE
    }
}
