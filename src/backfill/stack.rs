//! `--stack NAME`: the job's ARNs and the output location from the outputs of the stack that
//! `template.yaml` deployed (CloudFormation DescribeStacks).

use std::collections::HashMap;

use super::BackfillError;
use super::location::S3Url;
use crate::config::Config;

/// The function the job invokes.
pub const FUNCTION_ARN: &str = "FunctionArn";
/// The role Batch Operations assumes.
pub const ROLE_ARN: &str = "BatchOperationsRoleArn";
/// `s3://OUTPUT_BUCKET/OUTPUT_PREFIXmanifests/`.
pub const MANIFESTS_LOCATION: &str = "ManifestsLocation";

/// The stack's outputs, by key.
pub async fn outputs(
    shared: &aws_config::SdkConfig,
    stack: &str,
) -> Result<HashMap<String, String>, BackfillError> {
    let client = aws_sdk_cloudformation::Client::new(shared);
    let out = client
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| {
            use aws_sdk_cloudformation::error::ProvideErrorMetadata;
            BackfillError::Usage(format!(
                "--stack {stack:?}: DescribeStacks failed: {}",
                e.as_service_error()
                    .and_then(|s| s.message().or(s.code()))
                    .map(String::from)
                    .unwrap_or_else(
                        || aws_sdk_cloudformation::error::DisplayErrorContext(&e).to_string()
                    )
            ))
        })?;
    let found = out
        .stacks()
        .first()
        .ok_or_else(|| BackfillError::Usage(format!("--stack {stack:?}: no such stack")))?;
    Ok(found
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect())
}

/// Where the stack's function writes: the bucket and `OUTPUT_PREFIX` of its `ManifestsLocation`
/// output (`s3://BUCKET/PREFIXmanifests/`).
pub fn output_location(manifests_location: &str) -> Option<(String, String)> {
    let url: S3Url = manifests_location.parse().ok()?;
    let prefix = url.key.strip_suffix("manifests/")?;
    Some((url.bucket, prefix.to_string()))
}

/// Makes the configuration's output location the stack's: the backfill must look for manifests
/// and write the job's files where the function writes. `OUTPUT_BUCKET` / `OUTPUT_PREFIX` set to
/// something else is a usage error (an unset `OUTPUT_PREFIX`, the default, takes the stack's).
pub fn apply_output_location(
    stack: &str,
    outputs: &HashMap<String, String>,
    cfg: &mut Config,
) -> Result<(), BackfillError> {
    let Some(location) = outputs.get(MANIFESTS_LOCATION) else {
        return Ok(());
    };
    let (bucket, prefix) = output_location(location).ok_or_else(|| {
        BackfillError::Usage(format!(
            "--stack {stack:?}: output {MANIFESTS_LOCATION} {location:?} is not s3://BUCKET/PREFIXmanifests/"
        ))
    })?;
    let default_prefix = Config::default().output_prefix;
    let conflict = |what: &str, ours: &str| {
        BackfillError::Usage(format!(
            "--stack {stack:?} writes to s3://{bucket}/{prefix}, but {what} is {ours:?}: unset it \
             or make it match"
        ))
    };
    if let Some(ours) = &cfg.output_bucket
        && *ours != bucket
    {
        return Err(conflict("OUTPUT_BUCKET", ours));
    }
    if cfg.output_prefix != prefix && cfg.output_prefix != default_prefix {
        return Err(conflict("OUTPUT_PREFIX", &cfg.output_prefix));
    }
    cfg.output_bucket = Some(bucket);
    cfg.output_prefix = prefix;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(location: &str) -> HashMap<String, String> {
        HashMap::from([(MANIFESTS_LOCATION.to_string(), location.to_string())])
    }

    #[test]
    fn the_stack_decides_where_outputs_are() {
        assert_eq!(
            output_location("s3://braze-exports-out/export-fetcher/manifests/"),
            Some(("braze-exports-out".into(), "export-fetcher/".into()))
        );
        assert_eq!(
            output_location("s3://b/manifests/"),
            Some(("b".into(), "".into()))
        );
        assert_eq!(output_location("s3://b/elsewhere/"), None);

        let mut cfg = Config::default();
        apply_output_location("s", &outputs("s3://out/fetched/manifests/"), &mut cfg).unwrap();
        assert_eq!(
            (cfg.output_bucket.as_deref(), cfg.output_prefix.as_str()),
            (Some("out"), "fetched/")
        );
        // Set to something else: refused, not overridden.
        let mut cfg = Config {
            output_prefix: "mine/".into(),
            ..Config::default()
        };
        let err = apply_output_location("s", &outputs("s3://out/fetched/manifests/"), &mut cfg)
            .unwrap_err();
        assert!(err.to_string().contains("OUTPUT_PREFIX"), "{err}");
        let mut cfg = Config {
            output_bucket: Some("other".into()),
            ..Config::default()
        };
        assert!(
            apply_output_location(
                "s",
                &outputs("s3://out/export-fetcher/manifests/"),
                &mut cfg
            )
            .is_err()
        );
        // No such output: the configuration stands.
        let mut cfg = Config::default();
        apply_output_location("s", &HashMap::new(), &mut cfg).unwrap();
        assert_eq!(cfg, Config::default());
    }
}
