//! Key detection and key handling: the Braze kind from a key, the codec from leading bytes,
//! notification key decoding, part names and log sanitising never panic, and keep their
//! promises on any input.
#![no_main]

use export_fetcher::detect::{codec_from_magic, kind_from_key, single_part_name};
use export_fetcher::manifest::{Compression, sanitize_part_name};
use export_fetcher::sanitize_for_log;
use export_fetcher::trigger::decode_s3_key;
use libfuzzer_sys::fuzz_target;

/// How S3 encodes a key in a notification: form-URL-encoding (space as `+`).
fn form_encode(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b' ' => "+".to_string(),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' | b'*' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let _ = codec_from_magic(data);
    let key = String::from_utf8_lossy(data);

    if let Some((kind, braze)) = kind_from_key(&key) {
        let _ = kind.as_str();
        serde_json::to_string(&braze).expect("Braze metadata serialises");
    }
    for c in [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Zip,
        Compression::None,
    ] {
        let name = single_part_name(&key, c);
        assert!(!name.is_empty(), "empty part name for {key:?}");
        assert!(!name.contains('/'), "part name {name:?} has a '/'");
    }

    // Log lines never carry a control character from a key (no forged lines, no escapes).
    let logged = sanitize_for_log(&key);
    assert!(
        !logged.chars().any(char::is_control),
        "control character in {logged:?}"
    );

    // Part names never escape their folder.
    if let Some(name) = sanitize_part_name(&key) {
        assert!(!name.starts_with('/') && !name.contains('\\'), "{name:?}");
        for c in name.split('/') {
            assert!(
                !c.is_empty() && c != "." && c != "..",
                "{key:?} sanitised to {name:?}"
            );
        }
    }

    // Strict decoding never panics; what S3 encodes always decodes back to the same key.
    let _ = decode_s3_key(&key);
    let encoded = form_encode(&key);
    assert_eq!(
        decode_s3_key(&encoded).expect("an S3-encoded key decodes"),
        key,
        "round trip through {encoded:?}"
    );
});
