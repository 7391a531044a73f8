//! The IAM policies Braze documents for connecting an S3 bucket, and the bucket-name check
//! that comes before them.
//!
//! Braze writes into the customer's bucket with one of two identities (its "AWS secret access
//! key" method: an IAM user of the customer; its "AWS role ARN" method: a role of the customer
//! that Braze's AWS account assumes with an external id). Either identity carries one of two
//! policies, depending on what the connection is for:
//!
//! - **Currents**: `s3:ListBucket` and `s3:GetBucketLocation` on the bucket, `s3:PutObject` and
//!   `s3:GetObject` on its objects.
//! - **Dashboard data export** (API user exports, CSV exports, engagement reports, message
//!   archives): the same plus `s3:DeleteObject` on its objects.
//!
//! Braze needs `s3:GetObject` for its own error handling and checks all of these permissions
//! when the connection is saved ("S3 credentials are invalid" otherwise). A bucket shared by
//! Currents and data exports needs both documents (or the data-export one, which is a
//! superset). The documents here are the ones `template.yaml` attaches to the optional Braze
//! role, so that the CLI (`export-fetcher braze-policy`) and the stack never disagree.

use serde_json::{Value, json};

/// What a Braze connection to the bucket is used for; each needs a different policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Braze Currents (Avro event files under the connector's folder path).
    Currents,
    /// Dashboard data export: API user exports, CSV exports, engagement reports, message
    /// archives.
    DataExport,
}

impl Purpose {
    /// The object-level actions Braze documents for this purpose, in the documented order.
    fn object_actions(self) -> &'static [&'static str] {
        match self {
            Purpose::Currents => &["s3:PutObject", "s3:GetObject"],
            Purpose::DataExport => &["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
        }
    }

    /// A short prefix for statement ids.
    fn sid_prefix(self) -> &'static str {
        match self {
            Purpose::Currents => "BrazeCurrents",
            Purpose::DataExport => "BrazeDataExport",
        }
    }
}

/// The IAM policy document Braze documents for connecting `bucket` (an identity-based policy,
/// for the IAM user or role Braze uses). `bucket` is taken as given: check it first with
/// [`check_bucket_name`].
pub fn policy(bucket: &str, purpose: Purpose) -> Value {
    let sid = purpose.sid_prefix();
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": format!("{sid}Bucket"),
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
                "Resource": [format!("arn:aws:s3:::{bucket}")]
            },
            {
                "Sid": format!("{sid}Objects"),
                "Effect": "Allow",
                "Action": purpose.object_actions(),
                "Resource": [format!("arn:aws:s3:::{bucket}/*")]
            }
        ]
    })
}

/// Validates an S3 general purpose bucket name: 3–63 characters of lowercase letters, digits,
/// dots and hyphens, starting and ending with a letter or digit, no two adjacent dots, not an
/// IP address, none of the prefixes and suffixes S3 reserves. `Err` says what is wrong.
pub fn check_bucket_name(bucket: &str) -> Result<(), String> {
    let shown = crate::sanitize_for_log(bucket);
    let n = bucket.len();
    if !(3..=63).contains(&n) {
        return Err(format!(
            "bucket name {shown:?} must be 3 to 63 characters long (it has {})",
            bucket.chars().count()
        ));
    }
    if let Some(c) = bucket
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        return Err(format!(
            "bucket name {shown:?} may only contain lowercase letters, digits, dots and hyphens (found {c:?})"
        ));
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = bucket.as_bytes();
    if !alnum(bytes[0]) || !alnum(bytes[n - 1]) {
        return Err(format!(
            "bucket name {shown:?} must start and end with a lowercase letter or a digit"
        ));
    }
    if bucket.contains("..") {
        return Err(format!(
            "bucket name {shown:?} must not contain two adjacent dots"
        ));
    }
    if bucket.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(format!(
            "bucket name {shown:?} must not be formatted as an IP address"
        ));
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if bucket.starts_with(prefix) {
            return Err(format!(
                "bucket name {shown:?} must not start with {prefix:?} (reserved by S3)"
            ));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if bucket.ends_with(suffix) {
            return Err(format!(
                "bucket name {shown:?} must not end with {suffix:?} (reserved by S3)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currents_policy_is_exactly_what_braze_documents() {
        assert_eq!(
            policy("braze-exports", Purpose::Currents),
            json!({
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "BrazeCurrentsBucket",
                        "Effect": "Allow",
                        "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
                        "Resource": ["arn:aws:s3:::braze-exports"]
                    },
                    {
                        "Sid": "BrazeCurrentsObjects",
                        "Effect": "Allow",
                        "Action": ["s3:PutObject", "s3:GetObject"],
                        "Resource": ["arn:aws:s3:::braze-exports/*"]
                    }
                ]
            })
        );
    }

    #[test]
    fn data_export_policy_adds_delete_object_and_nothing_else() {
        assert_eq!(
            policy("acme.braze-exports", Purpose::DataExport),
            json!({
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "BrazeDataExportBucket",
                        "Effect": "Allow",
                        "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
                        "Resource": ["arn:aws:s3:::acme.braze-exports"]
                    },
                    {
                        "Sid": "BrazeDataExportObjects",
                        "Effect": "Allow",
                        "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
                        "Resource": ["arn:aws:s3:::acme.braze-exports/*"]
                    }
                ]
            })
        );
    }

    #[test]
    fn policies_grant_nothing_outside_the_bucket() {
        for purpose in [Purpose::Currents, Purpose::DataExport] {
            let doc = policy("b-1", purpose);
            let statements = doc["Statement"].as_array().unwrap();
            assert_eq!(statements.len(), 2);
            let mut sids = Vec::new();
            for st in statements {
                assert_eq!(st["Effect"], "Allow");
                sids.push(st["Sid"].as_str().unwrap().to_string());
                for r in st["Resource"].as_array().unwrap() {
                    let r = r.as_str().unwrap();
                    assert!(r == "arn:aws:s3:::b-1" || r == "arn:aws:s3:::b-1/*", "{r}");
                }
                for a in st["Action"].as_array().unwrap() {
                    assert!(!a.as_str().unwrap().contains('*'), "{a}");
                }
            }
            sids.dedup();
            assert_eq!(sids.len(), 2, "statement ids are distinct");
        }
    }

    #[test]
    fn valid_bucket_names() {
        for name in [
            "abc",
            "braze-exports",
            "acme.braze.exports",
            "1bucket2",
            "a-b.c-d",
            "192.168.5.4x",
            &"a".repeat(63),
        ] {
            assert_eq!(check_bucket_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn invalid_bucket_names_say_why() {
        let cases: &[(&str, &str)] = &[
            ("", "3 to 63"),
            ("ab", "3 to 63"),
            (&"a".repeat(64), "3 to 63"),
            ("Braze-Exports", "lowercase"),
            ("braze_exports", "lowercase"),
            ("braze exports", "lowercase"),
            ("brazé-exports", "lowercase"),
            ("-braze", "start and end"),
            ("braze-", "start and end"),
            (".braze", "start and end"),
            ("braze.", "start and end"),
            ("braze..exports", "adjacent dots"),
            ("192.168.5.4", "IP address"),
            ("10.0.0.1", "IP address"),
            ("xn--braze", "reserved"),
            ("sthree-braze", "reserved"),
            ("amzn-s3-demo-braze", "reserved"),
            ("braze-s3alias", "reserved"),
            ("braze--ol-s3", "reserved"),
            ("braze.mrap", "reserved"),
            ("braze--x-s3", "reserved"),
        ];
        for (name, why) in cases {
            let err = check_bucket_name(name).expect_err(name);
            assert!(err.contains(why), "{name:?}: {err}");
        }
    }

    #[test]
    fn control_characters_are_not_echoed_raw() {
        let err = check_bucket_name("bad\nname").unwrap_err();
        assert!(!err.contains('\n'), "{err}");
    }
}
