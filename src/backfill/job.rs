//! The S3 Batch Operations job of a backfill: its id, its files, the CreateJob request and
//! sending it.
//!
//! The request is built once, with the SDK's own builders (`CreateJobInput::builder()` and the
//! builders of its parts, which refuse a part without its required fields), and checked for the
//! fields CreateJob requires ([`check_required`]; the input builder itself accepts any). The
//! same input is either sent or, with `--dry-run`, printed as JSON in the shape of the S3 Control
//! API (and of `aws s3control create-job --cli-input-json`); [`from_json`] reads that JSON back
//! into an input, so what is printed is exactly what would be sent.
//!
//! Job ids are `<UTC time as YYYYMMDDTHHMMSSZ>-<4 hex digits>` (`20250401T171500Z-3fa2`): they
//! sort by time, name the folder `<OUTPUT_PREFIX>backfill/<job>/` that holds the CSV manifest
//! (`manifest.csv`) and the completion report, and are the request's `ClientRequestToken`, so
//! a CreateJob the SDK retries never creates two jobs.

use std::collections::HashMap;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use aws_sdk_s3control::operation::create_job::CreateJobInput;
use aws_sdk_s3control::types::{
    JobManifest, JobManifestFieldName, JobManifestFormat, JobManifestLocation, JobManifestSpec,
    JobOperation, JobReport, JobReportFormat, JobReportScope, LambdaInvokeOperation,
};
use serde_json::{Map, Value, json};

use super::location::{self, bucket_arn, object_arn};
use super::plan::Plan;
use super::select::Mode;
use super::{BackfillError, EXIT_OK, stack};
use crate::config::{Config, Sse};
use crate::pipeline::Env;
use crate::store::s3::OUTPUT_METADATA;

/// Batch Operations' default priority is none; jobs run in priority order, higher first.
pub const DEFAULT_PRIORITY: i32 = 10;
/// The Lambda invocation schema the function reads `userArguments` from.
pub const INVOCATION_SCHEMA_VERSION: &str = "2.0";
/// The longest description CreateJob accepts.
const MAX_DESCRIPTION: usize = 256;

/// The job options of the command line.
#[derive(Debug, Clone, Default)]
pub struct JobArgs {
    pub function_arn: Option<String>,
    pub role_arn: Option<String>,
    /// Default: the function ARN's account.
    pub account_id: Option<String>,
    /// Fills the ARNs (and the output location) from this CloudFormation stack's outputs.
    pub stack: Option<String>,
    pub priority: i32,
    /// The job waits for a confirmation (console or `aws s3control update-job-status`).
    pub confirmation_required: bool,
    pub dry_run: bool,
}

/// The ARNs and where the job runs, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub function_arn: String,
    pub role_arn: String,
    pub account_id: String,
    /// The function's region: the job is created there.
    pub region: String,
    pub partition: String,
}

/// Checks the job's ARNs, taking missing ones from `--stack` (whose output location also
/// becomes the configuration's, see [`stack::apply_output_location`]).
pub async fn resolve(
    args: &JobArgs,
    shared: &aws_config::SdkConfig,
    cfg: &mut Config,
) -> Result<Resolved, BackfillError> {
    let mut function_arn = args.function_arn.clone();
    let mut role_arn = args.role_arn.clone();
    if let Some(name) = &args.stack {
        let outputs = stack::outputs(shared, name).await?;
        function_arn = function_arn.or_else(|| outputs.get(stack::FUNCTION_ARN).cloned());
        role_arn = role_arn.or_else(|| outputs.get(stack::ROLE_ARN).cloned());
        stack::apply_output_location(name, &outputs, cfg)?;
    }
    let from = |flag: &str, output: &str| match &args.stack {
        Some(name) => format!("{flag} is needed: stack {name:?} has no {output} output"),
        None => format!("{flag} is needed (or --stack NAME), unless --local"),
    };
    let function_arn = function_arn
        .ok_or_else(|| BackfillError::Usage(from("--function-arn", stack::FUNCTION_ARN)))?;
    let role_arn =
        role_arn.ok_or_else(|| BackfillError::Usage(from("--role-arn", stack::ROLE_ARN)))?;
    resolved(&function_arn, &role_arn, args.account_id.as_deref()).map_err(BackfillError::Usage)
}

/// Checks the ARNs and the account id (default: the function's).
pub fn resolved(
    function_arn: &str,
    role_arn: &str,
    account_id: Option<&str>,
) -> Result<Resolved, String> {
    let function = location::function_arn(function_arn)?;
    location::role_arn(role_arn)?;
    let account_id = account_id.unwrap_or(function.account);
    if !location::is_account_id(account_id) {
        return Err(format!(
            "--account-id {:?} is not a 12-digit AWS account id",
            crate::sanitize_for_log(account_id)
        ));
    }
    Ok(Resolved {
        function_arn: function_arn.to_string(),
        role_arn: role_arn.to_string(),
        account_id: account_id.to_string(),
        region: function.region.to_string(),
        partition: function.partition.to_string(),
    })
}

/// A new job id from the time and a few bits that differ between two runs in one second.
pub fn new_job_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    let salt = (now.nanosecond() ^ std::process::id().rotate_left(16)) & 0xffff;
    job_id(now, salt as u16)
}

/// `YYYYMMDDTHHMMSSZ-xxxx`.
pub fn job_id(at: time::OffsetDateTime, salt: u16) -> String {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let stamp = at
        .format(&format)
        .unwrap_or_else(|_| at.unix_timestamp().to_string());
    format!("{stamp}-{salt:04x}")
}

/// Where a job's files go, in the output bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFiles {
    pub bucket: String,
    /// `<OUTPUT_PREFIX>backfill/<job>/manifest.csv`
    pub manifest_key: String,
    /// `<OUTPUT_PREFIX>backfill/<job>`: Batch Operations writes the completion report under
    /// `<report_prefix>/job-<job id>/` (`manifest.json` and `results/*.csv`).
    pub report_prefix: String,
}

impl JobFiles {
    pub fn new(out_bucket: &str, output_prefix: &str, job: &str) -> JobFiles {
        JobFiles {
            bucket: out_bucket.to_string(),
            manifest_key: format!("{output_prefix}backfill/{job}/manifest.csv"),
            report_prefix: format!("{output_prefix}backfill/{job}"),
        }
    }
}

/// Everything the CreateJob request says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub job_id: String,
    pub resolved: Resolved,
    pub files: JobFiles,
    /// The ETag of the uploaded CSV manifest, as S3 returned it.
    pub manifest_etag: String,
    pub with_versions: bool,
    pub reprocess: bool,
    pub priority: i32,
    pub confirmation_required: bool,
    pub description: String,
}

/// The CreateJob input for `r`, built with the SDK's builders and checked.
pub fn input(r: &Request) -> Result<CreateJobInput, String> {
    let built = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
    let mut lambda = LambdaInvokeOperation::builder()
        .function_arn(&r.resolved.function_arn)
        .invocation_schema_version(INVOCATION_SCHEMA_VERSION);
    if r.reprocess {
        lambda = lambda.user_arguments("reprocess", "true");
    }
    let mut fields = vec![JobManifestFieldName::Bucket, JobManifestFieldName::Key];
    if r.with_versions {
        fields.push(JobManifestFieldName::VersionId);
    }
    let partition = &r.resolved.partition;
    let manifest = JobManifest::builder()
        .spec(
            JobManifestSpec::builder()
                .format(JobManifestFormat::S3BatchOperationsCsv20180820)
                .set_fields(Some(fields))
                .build()
                .map_err(|e| built("Manifest.Spec", &e))?,
        )
        .location(
            JobManifestLocation::builder()
                .object_arn(object_arn(
                    partition,
                    &r.files.bucket,
                    &r.files.manifest_key,
                ))
                .e_tag(&r.manifest_etag)
                .build()
                .map_err(|e| built("Manifest.Location", &e))?,
        )
        .build();
    let report = JobReport::builder()
        .bucket(bucket_arn(partition, &r.files.bucket))
        .format(JobReportFormat::ReportCsv20180820)
        .enabled(true)
        .prefix(&r.files.report_prefix)
        .report_scope(JobReportScope::AllTasks)
        .build();
    let input = CreateJobInput::builder()
        .account_id(&r.resolved.account_id)
        .confirmation_required(r.confirmation_required)
        .operation(
            JobOperation::builder()
                .lambda_invoke(lambda.build())
                .build(),
        )
        .report(report)
        .client_request_token(&r.job_id)
        .manifest(manifest)
        .description(truncate(&r.description, MAX_DESCRIPTION))
        .priority(r.priority)
        .role_arn(&r.resolved.role_arn)
        .build()
        .map_err(|e| built("CreateJob", &e))?;
    check_required(&input)?;
    Ok(input)
}

/// The members CreateJob requires (the S3 Control API reference): the input builder accepts
/// an input without them, the service would not.
pub fn check_required(input: &CreateJobInput) -> Result<(), String> {
    let missing: Vec<&str> = [
        ("AccountId", input.account_id().is_none_or(str::is_empty)),
        ("Operation", input.operation().is_none()),
        ("Report", input.report().is_none()),
        (
            "ClientRequestToken",
            input.client_request_token().is_none_or(str::is_empty),
        ),
        ("Priority", input.priority().is_none()),
        ("RoleArn", input.role_arn().is_none_or(str::is_empty)),
        (
            "Manifest or ManifestGenerator",
            input.manifest().is_none() && input.manifest_generator().is_none(),
        ),
    ]
    .into_iter()
    .filter_map(|(name, absent)| absent.then_some(name))
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("CreateJob needs {}", missing.join(", ")))
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

/// The input as the S3 Control API's JSON (the members this command sets: a `LambdaInvoke`
/// operation, a CSV manifest, a report).
pub fn to_json(input: &CreateJobInput) -> Value {
    let mut out = Map::new();
    let mut put = |name: &str, v: Option<Value>| {
        if let Some(v) = v {
            out.insert(name.to_string(), v);
        }
    };
    put("AccountId", input.account_id().map(|s| json!(s)));
    put(
        "ConfirmationRequired",
        input.confirmation_required().map(|b| json!(b)),
    );
    put(
        "Operation",
        input.operation().and_then(|o| o.lambda_invoke()).map(|l| {
            let mut lambda = Map::new();
            if let Some(arn) = l.function_arn() {
                lambda.insert("FunctionArn".into(), json!(arn));
            }
            if let Some(v) = l.invocation_schema_version() {
                lambda.insert("InvocationSchemaVersion".into(), json!(v));
            }
            if let Some(args) = l.user_arguments() {
                let sorted: std::collections::BTreeMap<_, _> = args.iter().collect();
                lambda.insert("UserArguments".into(), json!(sorted));
            }
            json!({ "LambdaInvoke": lambda })
        }),
    );
    put(
        "Report",
        input.report().map(|r| {
            let mut report = Map::new();
            if let Some(b) = r.bucket() {
                report.insert("Bucket".into(), json!(b));
            }
            if let Some(f) = r.format() {
                report.insert("Format".into(), json!(f.as_str()));
            }
            report.insert("Enabled".into(), json!(r.enabled()));
            if let Some(p) = r.prefix() {
                report.insert("Prefix".into(), json!(p));
            }
            if let Some(s) = r.report_scope() {
                report.insert("ReportScope".into(), json!(s.as_str()));
            }
            Value::Object(report)
        }),
    );
    put(
        "ClientRequestToken",
        input.client_request_token().map(|s| json!(s)),
    );
    put(
        "Manifest",
        input.manifest().map(|m| {
            let mut manifest = Map::new();
            if let Some(spec) = m.spec() {
                let fields: Vec<&str> = spec.fields().iter().map(|f| f.as_str()).collect();
                manifest.insert(
                    "Spec".into(),
                    json!({"Format": spec.format().as_str(), "Fields": fields}),
                );
            }
            if let Some(loc) = m.location() {
                let mut location = Map::new();
                location.insert("ObjectArn".into(), json!(loc.object_arn()));
                if let Some(v) = loc.object_version_id() {
                    location.insert("ObjectVersionId".into(), json!(v));
                }
                location.insert("ETag".into(), json!(loc.e_tag()));
                manifest.insert("Location".into(), Value::Object(location));
            }
            Value::Object(manifest)
        }),
    );
    put("Description", input.description().map(|s| json!(s)));
    put("Priority", input.priority().map(|p| json!(p)));
    put("RoleArn", input.role_arn().map(|s| json!(s)));
    Value::Object(out)
}

/// Reads [`to_json`]'s JSON back into an input, through the same builders; `Err` names what
/// is missing or malformed.
pub fn from_json(v: &Value) -> Result<CreateJobInput, String> {
    let s = |v: &Value, name: &str| -> Option<String> { v.get(name)?.as_str().map(String::from) };
    let mut b = CreateJobInput::builder()
        .set_account_id(s(v, "AccountId"))
        .set_confirmation_required(v.get("ConfirmationRequired").and_then(Value::as_bool))
        .set_client_request_token(s(v, "ClientRequestToken"))
        .set_description(s(v, "Description"))
        .set_priority(
            v.get("Priority")
                .and_then(Value::as_i64)
                .and_then(|p| i32::try_from(p).ok()),
        )
        .set_role_arn(s(v, "RoleArn"));
    if let Some(l) = v.get("Operation") {
        let l = l
            .get("LambdaInvoke")
            .ok_or("Operation: only LambdaInvoke is read")?;
        let args = l.get("UserArguments").map(|a| {
            a.as_object()
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect::<HashMap<_, _>>()
                })
                .unwrap_or_default()
        });
        b = b.operation(
            JobOperation::builder()
                .lambda_invoke(
                    LambdaInvokeOperation::builder()
                        .set_function_arn(s(l, "FunctionArn"))
                        .set_invocation_schema_version(s(l, "InvocationSchemaVersion"))
                        .set_user_arguments(args)
                        .build(),
                )
                .build(),
        );
    }
    if let Some(r) = v.get("Report") {
        b = b.report(
            JobReport::builder()
                .set_bucket(s(r, "Bucket"))
                .set_format(s(r, "Format").map(|f| JobReportFormat::from(f.as_str())))
                .set_enabled(r.get("Enabled").and_then(Value::as_bool))
                .set_prefix(s(r, "Prefix"))
                .set_report_scope(s(r, "ReportScope").map(|f| JobReportScope::from(f.as_str())))
                .build(),
        );
    }
    if let Some(m) = v.get("Manifest") {
        let mut manifest = JobManifest::builder();
        if let Some(spec) = m.get("Spec") {
            let fields = spec.get("Fields").and_then(Value::as_array).map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(JobManifestFieldName::from)
                    .collect::<Vec<_>>()
            });
            manifest = manifest.spec(
                JobManifestSpec::builder()
                    .set_format(s(spec, "Format").map(|f| JobManifestFormat::from(f.as_str())))
                    .set_fields(fields)
                    .build()
                    .map_err(|e| format!("Manifest.Spec: {e}"))?,
            );
        }
        if let Some(loc) = m.get("Location") {
            manifest = manifest.location(
                JobManifestLocation::builder()
                    .set_object_arn(s(loc, "ObjectArn"))
                    .set_object_version_id(s(loc, "ObjectVersionId"))
                    .set_e_tag(s(loc, "ETag"))
                    .build()
                    .map_err(|e| format!("Manifest.Location: {e}"))?,
            );
        }
        b = b.manifest(manifest.build());
    }
    let input = b.build().map_err(|e| format!("CreateJob: {e}"))?;
    check_required(&input)?;
    Ok(input)
}

/// Sends CreateJob; returns the new job's id.
pub async fn submit(
    client: &aws_sdk_s3control::Client,
    input: CreateJobInput,
) -> Result<String, String> {
    let out = client
        .create_job()
        .set_account_id(input.account_id)
        .set_confirmation_required(input.confirmation_required)
        .set_operation(input.operation)
        .set_report(input.report)
        .set_client_request_token(input.client_request_token)
        .set_manifest(input.manifest)
        .set_description(input.description)
        .set_priority(input.priority)
        .set_role_arn(input.role_arn)
        .set_tags(input.tags)
        .set_manifest_generator(input.manifest_generator)
        .send()
        .await
        .map_err(|e| {
            use aws_sdk_s3control::error::ProvideErrorMetadata;
            match e.as_service_error().and_then(|s| s.code()) {
                Some(code) => format!(
                    "{code}: {}",
                    e.as_service_error().and_then(|s| s.message()).unwrap_or("")
                ),
                None => aws_sdk_s3control::error::DisplayErrorContext(&e).to_string(),
            }
        })?;
    out.job_id()
        .map(String::from)
        .ok_or_else(|| "CreateJob answered without a job id".to_string())
}

/// Uploads the CSV manifest; returns its ETag (with its quotes, as S3 gives it and as the job
/// names it).
async fn upload_manifest(
    env: &Env,
    cfg: &Config,
    files: &JobFiles,
    body: Vec<u8>,
) -> Result<String, BackfillError> {
    let mut put = env
        .s3
        .client()
        .put_object()
        .bucket(&files.bucket)
        .key(&files.manifest_key)
        .content_type("text/csv")
        .metadata(OUTPUT_METADATA, "backfill")
        .body(ByteStream::from(body));
    put = match &cfg.sse {
        Sse::None => put,
        Sse::Aes256 => put.server_side_encryption(ServerSideEncryption::Aes256),
        Sse::Kms { key_id } => put
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .set_ssekms_key_id(key_id.clone()),
    };
    let out = put
        .send()
        .await
        .map_err(|e| BackfillError::s3_sdk("PutObject", &files.bucket, &files.manifest_key, e))?;
    out.e_tag()
        .map(String::from)
        .ok_or_else(|| BackfillError::S3 {
            op: "PutObject",
            bucket: files.bucket.clone(),
            key: files.manifest_key.clone(),
            message: "no ETag in the answer".into(),
        })
}

/// Writes the CSV manifest, builds the request and creates the job (or prints it); returns the
/// exit status.
#[allow(clippy::too_many_arguments)]
pub async fn create(
    env: &Env,
    cfg: &Config,
    plan: &Plan,
    shown: &str,
    mode: Mode,
    args: &JobArgs,
    resolved: &Resolved,
    shared: &aws_config::SdkConfig,
) -> Result<i32, BackfillError> {
    let job_id = new_job_id();
    let out_bucket = cfg.output_bucket.as_deref().unwrap_or(&plan.bucket);
    let files = JobFiles::new(out_bucket, &cfg.output_prefix, &job_id);
    let csv = super::csv_manifest::build(&plan.objects);
    let lines = csv.lines;
    let manifest_etag = upload_manifest(env, cfg, &files, csv.body).await?;
    let mut description = format!("export-fetcher backfill {job_id}: {shown}, {lines} objects");
    if mode.failed_only {
        description.push_str(", failed only");
    }
    if mode.reprocess {
        description.push_str(", reprocess");
    }
    let request = Request {
        job_id: job_id.clone(),
        resolved: resolved.clone(),
        files: files.clone(),
        manifest_etag,
        with_versions: csv.with_versions,
        reprocess: mode.reprocess,
        priority: args.priority,
        confirmation_required: args.confirmation_required,
        description,
    };
    let input = input(&request).map_err(BackfillError::Job)?;
    eprintln!(
        "export-fetcher: backfill: wrote s3://{}/{} ({lines} objects)",
        files.bucket, files.manifest_key
    );
    if args.dry_run {
        let json = serde_json::to_string_pretty(&to_json(&input)).expect("JSON values serialise");
        println!("{json}");
        eprintln!(
            "export-fetcher: backfill: dry run, no job created; to create it: \
             aws s3control create-job --region {} --cli-input-json file://job.json \
             (this output saved as job.json)",
            resolved.region
        );
        return Ok(EXIT_OK);
    }
    let client = aws_sdk_s3control::Client::from_conf(
        aws_sdk_s3control::config::Builder::from(shared)
            .region(aws_sdk_s3control::config::Region::new(
                resolved.region.clone(),
            ))
            .build(),
    );
    let id = submit(&client, input)
        .await
        .map_err(|e| BackfillError::Job(format!("CreateJob: {e}")))?;
    println!("job {id}");
    println!("manifest s3://{}/{}", files.bucket, files.manifest_key);
    println!(
        "report s3://{}/{}/job-{id}/",
        files.bucket, files.report_prefix
    );
    eprintln!(
        "export-fetcher: backfill: created job {id} ({lines} objects, priority {}{}); follow it \
         with: aws s3control describe-job --region {} --account-id {} --job-id {id}",
        args.priority,
        if args.confirmation_required {
            ", waiting for confirmation"
        } else {
            ""
        },
        resolved.region,
        resolved.account_id,
    );
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(reprocess: bool, with_versions: bool) -> Request {
        Request {
            job_id: "20250401T171500Z-3fa2".into(),
            resolved: resolved(
                "arn:aws:lambda:eu-west-1:123456789012:function:export-fetcher",
                "arn:aws:iam::123456789012:role/export-fetcher-batch",
                None,
            )
            .unwrap(),
            files: JobFiles::new(
                "braze-exports-out",
                "export-fetcher/",
                "20250401T171500Z-3fa2",
            ),
            manifest_etag: "\"9b2cf535f27731c974343645a3985328\"".into(),
            with_versions,
            reprocess,
            priority: DEFAULT_PRIORITY,
            confirmation_required: false,
            description: "export-fetcher backfill".into(),
        }
    }

    #[test]
    fn job_ids_sort_by_time() {
        let at = time::macros::datetime!(2025-04-01 17:15:00 UTC);
        assert_eq!(job_id(at, 0x3fa2), "20250401T171500Z-3fa2");
        assert_eq!(job_id(at, 7), "20250401T171500Z-0007");
        let id = new_job_id();
        assert_eq!(id.len(), "20250401T171500Z-3fa2".len(), "{id}");
    }

    #[test]
    fn the_account_is_the_functions_unless_given() {
        let r = request(false, false).resolved;
        assert_eq!(
            (
                r.account_id.as_str(),
                r.region.as_str(),
                r.partition.as_str()
            ),
            ("123456789012", "eu-west-1", "aws")
        );
        let other = resolved(
            "arn:aws:lambda:eu-west-1:123456789012:function:f",
            "arn:aws:iam::123456789012:role/r",
            Some("210987654321"),
        )
        .unwrap();
        assert_eq!(other.account_id, "210987654321");
        assert!(
            resolved(
                "arn:aws:lambda:eu-west-1:123456789012:function:f",
                "arn:aws:iam::123456789012:role/r",
                Some("me"),
            )
            .is_err()
        );
    }

    #[test]
    fn request_says_what_batch_operations_needs() {
        let input = input(&request(true, false)).unwrap();
        let lambda = input.operation().unwrap().lambda_invoke().unwrap();
        assert_eq!(lambda.invocation_schema_version(), Some("2.0"));
        assert_eq!(
            lambda
                .user_arguments()
                .unwrap()
                .get("reprocess")
                .map(String::as_str),
            Some("true")
        );
        let spec = input.manifest().unwrap().spec().unwrap();
        assert_eq!(
            spec.format(),
            &JobManifestFormat::S3BatchOperationsCsv20180820
        );
        assert_eq!(
            spec.fields(),
            [JobManifestFieldName::Bucket, JobManifestFieldName::Key]
        );
        let report = input.report().unwrap();
        assert_eq!(report.bucket(), Some("arn:aws:s3:::braze-exports-out"));
        assert_eq!(
            report.prefix(),
            Some("export-fetcher/backfill/20250401T171500Z-3fa2")
        );
        assert_eq!(report.report_scope(), Some(&JobReportScope::AllTasks));
        assert!(report.enabled());
        assert_eq!(input.client_request_token(), Some("20250401T171500Z-3fa2"));

        let plain = super::input(&request(false, true)).unwrap();
        let lambda = plain.operation().unwrap().lambda_invoke().unwrap();
        assert_eq!(
            lambda.user_arguments(),
            None,
            "no UserArguments without --reprocess"
        );
        assert_eq!(
            plain.manifest().unwrap().spec().unwrap().fields().last(),
            Some(&JobManifestFieldName::VersionId)
        );
    }

    #[test]
    fn json_reads_back_into_the_same_input() {
        for (reprocess, versions) in [(false, false), (true, true)] {
            let input = input(&request(reprocess, versions)).unwrap();
            let json = to_json(&input);
            let text = serde_json::to_string_pretty(&json).unwrap();
            let back = from_json(&serde_json::from_str(&text).unwrap()).unwrap();
            assert_eq!(back, input, "{text}");
        }
    }

    #[test]
    fn an_input_without_required_members_is_refused() {
        let full = to_json(&input(&request(false, false)).unwrap());
        for member in [
            "AccountId",
            "Operation",
            "Report",
            "ClientRequestToken",
            "Priority",
            "RoleArn",
            "Manifest",
        ] {
            let mut v = full.clone();
            v.as_object_mut().unwrap().remove(member);
            let err = from_json(&v).unwrap_err();
            assert!(err.contains(member), "without {member}: {err}");
        }
        let mut v = full.clone();
        v["Manifest"]["Location"]
            .as_object_mut()
            .unwrap()
            .remove("ETag");
        assert!(from_json(&v).unwrap_err().contains("Manifest.Location"));
    }

    #[test]
    fn long_descriptions_are_cut_at_a_character() {
        let long = "é".repeat(300);
        let cut = truncate(&long, MAX_DESCRIPTION);
        assert!(
            cut.len() <= MAX_DESCRIPTION && cut.ends_with('…'),
            "{}",
            cut.len()
        );
        assert_eq!(truncate("short", MAX_DESCRIPTION), "short");
    }
}
