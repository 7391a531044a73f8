//! The Batch Operations CSV manifest (`S3BatchOperations_CSV_20180820`): one line per object,
//! `bucket,key` or `bucket,key,version`, no header.
//!
//! Batch Operations wants keys URL-encoded. Every byte of the key's UTF-8 but the unreserved
//! ones (`A-Z a-z 0-9 - _ . ~`) and `/` is percent-encoded: a space is `%20`, never `+`, and a
//! `+` is `%2B`, so the key decodes to itself whether the reader treats `+` as a space (form
//! decoding, as for notifications) or not. A key can then hold no comma, quote or newline
//! that would break the CSV.
//!
//! When any object has a version id, every line carries one (Batch Operations requires the
//! column on all lines or none) and objects without one get `null`, the id S3 gives objects
//! written while versioning was off.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::select::Listed;

/// What stays as it is in a key: the unreserved characters of RFC 3986 and `/`.
const KEY_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// A key as a Batch Operations manifest holds it.
pub fn encode_key(key: &str) -> String {
    utf8_percent_encode(key, KEY_KEEP).to_string()
}

/// The CSV manifest of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvManifest {
    pub body: Vec<u8>,
    /// Whether the lines carry a version id (the job's manifest fields are then
    /// `Bucket, Key, VersionId`).
    pub with_versions: bool,
    pub lines: usize,
}

/// Builds the manifest of these objects, in their order.
pub fn build(objects: &[Listed]) -> CsvManifest {
    let with_versions = objects.iter().any(|o| o.version_id.is_some());
    let mut body = Vec::with_capacity(objects.len() * 128);
    for o in objects {
        body.extend_from_slice(o.bucket.as_bytes());
        body.push(b',');
        body.extend_from_slice(encode_key(&o.key).as_bytes());
        if with_versions {
            body.push(b',');
            body.extend_from_slice(o.version_id.as_deref().unwrap_or("null").as_bytes());
        }
        body.push(b'\n');
    }
    CsvManifest {
        body,
        with_versions,
        lines: objects.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::decode_s3_key;

    #[test]
    fn keys_are_percent_encoded_but_slashes() {
        let cases = [
            ("a/b/c.zip", "a/b/c.zip"),
            ("red flower.jpg", "red%20flower.jpg"),
            ("C++ export+1.csv", "C%2B%2B%20export%2B1.csv"),
            ("date=2025-04-01-17/x", "date%3D2025-04-01-17/x"),
            ("a,b\"c\nd", "a%2Cb%22c%0Ad"),
            (
                "Ünïcode/日本.csv",
                "%C3%9Cn%C3%AFcode/%E6%97%A5%E6%9C%AC.csv",
            ),
            ("100%~_.-", "100%25~_.-"),
            (
                "currents/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5/event_type=users.messages.email.Send/date=2025-04-01-17/version=6/us-01/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5+0+123456.avro",
                "currents/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5/event_type%3Dusers.messages.email.Send/date%3D2025-04-01-17/version%3D6/us-01/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5%2B0%2B123456.avro",
            ),
        ];
        for (key, want) in cases {
            let got = encode_key(key);
            assert_eq!(got, want, "encode_key({key:?})");
            // Decodes to itself with the notification decoder (`+` is a space there).
            assert_eq!(decode_s3_key(&got).unwrap(), key, "{key:?}");
        }
    }

    fn listed(key: &str, version: Option<&str>) -> Listed {
        Listed {
            bucket: "braze-exports".into(),
            key: key.into(),
            version_id: version.map(String::from),
            size: 1,
            etag: None,
            last_modified: None,
        }
    }

    #[test]
    fn lines_carry_versions_on_all_or_none() {
        let plain = build(&[listed("a b.zip", None), listed("c+d.gz", None)]);
        assert!(!plain.with_versions);
        assert_eq!(
            String::from_utf8(plain.body).unwrap(),
            "braze-exports,a%20b.zip\nbraze-exports,c%2Bd.gz\n"
        );
        let versioned = build(&[
            listed("a.zip", Some("3HL4kqtJlcpXroDTDmJ")),
            listed("b.zip", None),
        ]);
        assert!(versioned.with_versions);
        assert_eq!(versioned.lines, 2);
        assert_eq!(
            String::from_utf8(versioned.body).unwrap(),
            "braze-exports,a.zip,3HL4kqtJlcpXroDTDmJ\nbraze-exports,b.zip,null\n"
        );
        let empty = build(&[]);
        assert!(empty.body.is_empty() && empty.lines == 0);
    }
}
