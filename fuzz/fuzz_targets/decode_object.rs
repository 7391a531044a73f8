//! The whole pipeline on one in-memory object (gzip, zip, zstd, Avro or plain bytes), under a
//! Braze key chosen by the first byte. Whatever the bytes:
//! - nothing panics and nothing is retryable (an in-memory source never fails transiently);
//! - totals are the sums of the parts; `complete` carries no error; limits hold;
//! - every written part holds exactly the bytes its `sha256`/`bytes` describe, failed parts are
//!   never written;
//! - `complete`/`partial` means the stream decoded to its end: an independent decoder of the
//!   same codec yields exactly the part's bytes.
#![no_main]

use export_fetcher::manifest::{Compression, Source, Status};
use export_fetcher::pipeline::index_object;
use fuzz_support::{MemSource, MemWriter, check_manifest, fuzz_config, read_all, sha256_hex};
use libfuzzer_sys::fuzz_target;

const KEYS: &[&str] = &[
    "segment-export/seg/2024-05-01/0b6c1a6e-2f4c-4d7e-9f1a-3a5b7c9d1e2f-1714550400/114f0226319130e1a4770f2602b5639a.zip",
    "segment-export/seg/2024-05-01/0b6c1a6e-2f4c-4d7e-9f1a-3a5b7c9d1e2f-1714550400/9f86d081884c7d659a2feaa0c55ad015.gz",
    "segment-export/5e1b3c0a9d2f4a0012345678/2024-05-01/users-x7Kp2QvL9m.zip",
    "currents/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5/event_type=users.messages.email.Send/date=2025-04-01-17/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5+0+1.avro",
    "sent_messages/email/6b9f1f5e0c1d2e3f4a5b6c7d8e9f0a1b/c_1/d_9f8e7d.json.gz",
    "reports/engagement/report.csv",
    "misc/blob.zst",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let key = KEYS[selector as usize % KEYS.len()];
    let cfg = fuzz_config();
    let writer = MemWriter::default();
    let meta = Source {
        bucket: "fuzz".into(),
        key: key.into(),
        ..Source::default()
    };
    let out = index_object(&MemSource(body.to_vec()), meta, &cfg, Some(&writer), None);
    assert!(
        out.retryable.is_none(),
        "retryable on an in-memory object: {:?}",
        out.retryable
    );
    let m = out.manifest;
    check_manifest(&m, &writer.finished.lock().unwrap(), &cfg);
    if matches!(m.status, Status::Complete | Status::Partial) {
        let independent = match m.compression {
            Compression::Gzip => Some(read_all(flate2::read::MultiGzDecoder::new(body))),
            Compression::Zstd => Some(zstd::stream::decode_all(body)),
            Compression::None => Some(Ok(body.to_vec())),
            Compression::Zip => None,
        };
        if let Some(decoded) = independent {
            let decoded = decoded.unwrap_or_else(|e| {
                panic!(
                    "{:?} claims the stream was read to its end, but it does not decode: {e}",
                    m.status
                )
            });
            assert_eq!(m.parts.len(), 1);
            assert_eq!(m.parts[0].bytes, decoded.len() as u64, "part size");
            assert_eq!(m.parts[0].sha256, sha256_hex(&decoded), "part hash");
        }
    }
});
