//! Decoding of object keys as S3 notifications carry them.
//!
//! S3 form-URL-encodes keys in notifications: a space arrives as `+`, a literal `+` as `%2B`,
//! `=` as `%3D` and non-ASCII as percent-encoded UTF-8. Keys are decoded once, here, at the
//! boundary; everything downstream sees the real key.

use super::{TriggerError, truncate};

/// Decodes a key from an S3 notification: `+` means a space, then `%XX` sequences are decoded
/// as UTF-8 bytes.
///
/// Strict, because a wrongly decoded key names a different (or no) object: a `%` not followed
/// by two hex digits, or bytes that are not UTF-8 once decoded, are errors.
///
/// ```
/// use export_fetcher::trigger::decode_s3_key;
/// assert_eq!(decode_s3_key("red+flower%2B1.jpg").unwrap(), "red flower+1.jpg");
/// ```
pub fn decode_s3_key(raw: &str) -> Result<String, TriggerError> {
    let bytes = raw.as_bytes();
    if let Some(at) = invalid_escape_at(bytes) {
        return Err(invalid_key(
            raw,
            format!("`%` at byte {at} is not followed by two hex digits"),
        ));
    }
    // '+' first: a literal '+' arrives as "%2B", which the percent-decoding below restores.
    let spaced: Vec<u8> = bytes
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_encoding::percent_decode(&spaced)
        .decode_utf8()
        .map(|key| key.into_owned())
        .map_err(|_| invalid_key(raw, "the decoded bytes are not UTF-8".to_string()))
}

/// The position of the first `%` that does not start a `%XX` escape (the `percent-encoding`
/// crate would pass such a `%` through unchanged).
fn invalid_escape_at(bytes: &[u8]) -> Option<usize> {
    bytes.iter().enumerate().find_map(|(i, &b)| {
        let valid = b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit));
        (!valid).then_some(i)
    })
}

fn invalid_key(raw: &str, reason: String) -> TriggerError {
    TriggerError::InvalidKey {
        bucket: None,
        raw: truncate(raw),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::decode_s3_key;

    #[test]
    fn decodes_form_url_encoded_keys() {
        let cases = [
            ("red+flower.jpg", "red flower.jpg"),
            ("%2B", "+"),
            ("a%2Fb", "a/b"),
            ("a/b", "a/b"),
            ("plain.txt", "plain.txt"),
            ("", ""),
            (
                "event_type%3Dusers.messages.email.Send",
                "event_type=users.messages.email.Send",
            ),
            ("%E2%82%AC", "€"),
            ("caf%C3%A9", "café"),
            ("CAF%c3%a9", "CAFé"),
            // A literal '+' arrives as %2B, a space as '+': both in one key.
            ("a+%2B+b", "a + b"),
            ("1%2B1+%3D+2", "1+1 = 2"),
            ("%2B%2B++", "++  "),
            // Decoding happens once: "%252B" is the key "%2B", not "+".
            ("100%25", "100%"),
            ("%252B", "%2B"),
            ("%20", " "),
            (
                "engagement-reports/2025-04-01/Campagne+%C3%A9t%C3%A9+2025+%E2%80%93+relance.zip",
                "engagement-reports/2025-04-01/Campagne été 2025 – relance.zip",
            ),
            (
                "segment-export/legacy+segment+42/2025-04-01/d9696570-dfb7-45ae-baa2-25e302r2da27-1743526800/114f0226319130e1a4770f2602b5639a.zip",
                "segment-export/legacy segment 42/2025-04-01/d9696570-dfb7-45ae-baa2-25e302r2da27-1743526800/114f0226319130e1a4770f2602b5639a.zip",
            ),
            (
                "currents/dataexport.prod-01.S3.integration.abc/event_type%3Dusers.messages.email.Send/date%3D2025-04-01-17/version%3D6/us-01/dataexport.prod-01.S3.integration.abc%2B0%2B123456.avro",
                "currents/dataexport.prod-01.S3.integration.abc/event_type=users.messages.email.Send/date=2025-04-01-17/version=6/us-01/dataexport.prod-01.S3.integration.abc+0+123456.avro",
            ),
            // moto encodes '/' as %2F.
            (
                "segment-export%2Fseg%2F2025-04-01%2Fusers-x.zip",
                "segment-export/seg/2025-04-01/users-x.zip",
            ),
        ];
        for (raw, want) in cases {
            match decode_s3_key(raw) {
                Ok(got) => assert_eq!(got, want, "decode_s3_key({raw:?})"),
                Err(e) => panic!("decode_s3_key({raw:?}) failed: {e}"),
            }
        }
    }

    #[test]
    fn rejects_invalid_escapes_and_utf8() {
        let cases = [
            ("%ZZ", "not followed by two hex digits"),
            ("abc%", "not followed by two hex digits"),
            ("abc%4", "not followed by two hex digits"),
            ("a%G1b", "not followed by two hex digits"),
            ("100%+", "not followed by two hex digits"),
            ("%FF", "not UTF-8"),
            ("caf%C3", "not UTF-8"),
            ("%C3%28", "not UTF-8"),
            ("%ED%A0%80", "not UTF-8"), // an encoded UTF-16 surrogate
        ];
        for (raw, want) in cases {
            match decode_s3_key(raw) {
                Ok(got) => panic!("decode_s3_key({raw:?}) = {got:?}, want an error"),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.contains(want), "decode_s3_key({raw:?}): {msg}");
                    assert!(
                        msg.contains(&format!("{raw:?}")),
                        "decode_s3_key({raw:?}): {msg}"
                    );
                }
            }
        }
    }

    #[test]
    fn error_truncates_huge_keys() {
        let raw = format!("{}%ZZ", "k".repeat(5000));
        let msg = decode_s3_key(&raw).unwrap_err().to_string();
        assert!(msg.len() < 400, "{} chars: {msg}", msg.len());
        assert!(msg.contains("byte 5000"), "{msg}");
    }
}
