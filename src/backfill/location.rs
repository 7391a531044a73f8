//! `s3://BUCKET[/PREFIX]` arguments, and the ARNs a Batch Operations job is built from.

use std::fmt;
use std::str::FromStr;

/// An `s3://BUCKET[/KEY-OR-PREFIX]` argument. The key part is taken as written (no
/// percent-decoding), as the AWS CLI does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// A key, or a key prefix; empty for the whole bucket.
    pub key: String,
}

impl FromStr for S3Url {
    type Err = String;

    fn from_str(s: &str) -> Result<S3Url, String> {
        let shown = crate::sanitize_for_log(s);
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{shown:?} is not an s3://BUCKET[/PREFIX] URL"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        // Legacy bucket names may hold capitals and underscores: only what can never be in
        // one is refused here; S3 answers for the rest.
        if bucket.is_empty() || bucket.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(format!("{shown:?} names no bucket (s3://BUCKET[/PREFIX])"));
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// The parts of an ARN (`arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn<'a> {
    pub partition: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub resource: &'a str,
}

/// Splits an ARN; `None` when it is not one.
pub fn parse_arn(arn: &str) -> Option<Arn<'_>> {
    let mut it = arn.splitn(6, ':');
    if it.next()? != "arn" {
        return None;
    }
    let parsed = Arn {
        partition: it.next()?,
        service: it.next()?,
        region: it.next()?,
        account: it.next()?,
        resource: it.next()?,
    };
    (!parsed.partition.is_empty() && !parsed.service.is_empty()).then_some(parsed)
}

/// A Lambda function ARN, checked: `arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`.
pub fn function_arn(arn: &str) -> Result<Arn<'_>, String> {
    let shown = crate::sanitize_for_log(arn);
    let parsed = parse_arn(arn)
        .filter(|a| a.service == "lambda" && a.resource.starts_with("function:"))
        .ok_or_else(|| {
            format!("{shown:?} is not a Lambda function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME)")
        })?;
    if parsed.region.is_empty() || !is_account_id(parsed.account) {
        return Err(format!(
            "{shown:?} is not a Lambda function ARN: it names no region or no 12-digit account"
        ));
    }
    Ok(parsed)
}

/// An IAM role ARN, checked: `arn:PARTITION:iam::ACCOUNT:role/NAME`.
pub fn role_arn(arn: &str) -> Result<Arn<'_>, String> {
    parse_arn(arn)
        .filter(|a| a.service == "iam" && a.resource.starts_with("role/"))
        .ok_or_else(|| {
            format!(
                "{:?} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)",
                crate::sanitize_for_log(arn)
            )
        })
}

/// Whether `s` is a 12-digit AWS account id.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `arn:PARTITION:s3:::BUCKET`, the form Batch Operations takes for the report bucket.
pub fn bucket_arn(partition: &str, bucket: &str) -> String {
    format!("arn:{partition}:s3:::{bucket}")
}

/// `arn:PARTITION:s3:::BUCKET/KEY`, the form Batch Operations takes for the manifest object.
pub fn object_arn(partition: &str, bucket: &str, key: &str) -> String {
    format!("arn:{partition}:s3:::{bucket}/{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("s3://braze-exports", Some(("braze-exports", ""))),
            ("s3://braze-exports/", Some(("braze-exports", ""))),
            (
                "s3://braze-exports/segment-export/",
                Some(("braze-exports", "segment-export/")),
            ),
            // Taken as written: a key with a space or `+` is not decoded.
            ("s3://b/a b+c%2B", Some(("b", "a b+c%2B"))),
            ("s3:///key", None),
            ("https://b/key", None),
            ("braze-exports/x", None),
            ("s3://bad bucket/x", None),
        ];
        for (input, want) in cases {
            let got = input.parse::<S3Url>();
            match want {
                Some((bucket, key)) => {
                    let got = got.unwrap_or_else(|e| panic!("{input}: {e}"));
                    assert_eq!(
                        (got.bucket.as_str(), got.key.as_str()),
                        (*bucket, *key),
                        "{input}"
                    );
                }
                None => assert!(got.is_err(), "{input} should be refused: {got:?}"),
            }
        }
    }

    #[test]
    fn arns() {
        let f =
            function_arn("arn:aws:lambda:eu-west-1:123456789012:function:export-fetcher").unwrap();
        assert_eq!(
            (f.partition, f.region, f.account),
            ("aws", "eu-west-1", "123456789012")
        );
        let q = function_arn("arn:aws-cn:lambda:cn-north-1:123456789012:function:f:live").unwrap();
        assert_eq!((q.partition, q.resource), ("aws-cn", "function:f:live"));
        for bad in [
            "arn:aws:iam::123456789012:role/r",
            "arn:aws:lambda:eu-west-1:12345:function:f",
            "arn:aws:lambda::123456789012:function:f",
            "export-fetcher",
        ] {
            assert!(function_arn(bad).is_err(), "{bad}");
        }
        assert!(role_arn("arn:aws:iam::123456789012:role/batch").is_ok());
        assert!(role_arn("arn:aws:iam::123456789012:user/u").is_err());
        assert_eq!(
            object_arn("aws", "out", "export-fetcher/backfill/j/manifest.csv"),
            "arn:aws:s3:::out/export-fetcher/backfill/j/manifest.csv"
        );
        assert_eq!(bucket_arn("aws", "out"), "arn:aws:s3:::out");
    }
}
