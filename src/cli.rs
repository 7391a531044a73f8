//! The `export-fetcher` command line. `main.rs` only wires this up.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::backfill::{self, location::S3Url};
use crate::config::Config;
use crate::manifest::{Source, Status};
use crate::sanitize_for_log;
use crate::store::local::{LocalDir, LocalFile};
use crate::store::{ObjectSource, PartWriter};
use crate::{handler, pipeline};

#[derive(Debug, Parser)]
#[command(
    name = "export-fetcher",
    version,
    about = "Index, decompress and forward the files Braze writes to S3"
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
    /// Run the Lambda handler once on an event file against the configured AWS endpoints
    /// (`AWS_ENDPOINT_URL` works for a local S3); print the handler's response.
    Invoke {
        /// A Lambda event (see `events/`).
        event: PathBuf,
    },
    /// The main job end to end with no AWS account: an embedded S3 server on loopback, sample Braze
    /// exports, their notifications through the real handler, a summary.
    Demo,
    /// Run the function over objects already in a bucket: lists them (or reads an S3 Inventory
    /// report), leaves out outputs and objects that already have a current manifest, and creates
    /// an S3 Batch Operations job that invokes the function on each (or, with --local, processes
    /// them on this machine).
    Backfill(Box<BackfillArgs>),
    /// Print the IAM policy Braze documents for connecting BUCKET (for Braze's access-key method,
    /// or IAM set up by hand).
    BrazePolicy {
        /// The bucket connected to Braze.
        #[arg(long)]
        bucket: String,
        /// Currents: ListBucket, GetBucketLocation, PutObject, GetObject.
        #[arg(
            long,
            conflicts_with = "data_export",
            required_unless_present = "data_export"
        )]
        currents: bool,
        /// Dashboard data export: the same plus DeleteObject.
        #[arg(long)]
        data_export: bool,
    },
}

/// `export-fetcher backfill`.
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
    /// Objects processed at once with --local (default: 8 per CPU, from 8 to 128).
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

/// Exit status: 0 complete, 1 partial or failed, 2 usage error.
pub const EXIT_OK: i32 = 0;
pub const EXIT_NOT_COMPLETE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

/// Runs `invoke`; returns the exit status (0 when the handler succeeded, 1 when it failed).
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
    let env = match handler::build_env(cfg).await {
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
            EXIT_OK
        }
        Err(e) => {
            let diagnostic = lambda_runtime::Diagnostic::from(e);
            println!(
                "{}",
                serde_json::json!({"errorType": diagnostic.error_type, "errorMessage": diagnostic.error_message})
            );
            eprintln!("export-fetcher: {}", diagnostic.error_message);
            EXIT_NOT_COMPLETE
        }
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

/// Runs `index`; returns the exit status.
pub async fn index(file: PathBuf, key: Option<String>, out: Option<PathBuf>, cfg: Config) -> i32 {
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
    if key.as_deref().is_some_and(str::is_empty) {
        eprintln!("export-fetcher: --key must not be empty (it is the S3 key the file stands for)");
        return EXIT_USAGE;
    }
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
