//! Throughput of each decoder and indexer on generated Braze-shaped data, in decompressed bytes
//! per second: `cargo bench --bench throughput`. Whole-pipeline numbers (against gzip, pigz,
//! unzip, and through S3) come from `scripts/bench.sh`.

use std::hint::black_box;
use std::io::{Read, Write};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use export_fetcher::config::Limits;
use export_fetcher::decode::{self, Budget};
use export_fetcher::index::{self, Options};
use export_fetcher::manifest::{Compression, Format};
use sha2::Digest;

fn opts() -> Options {
    Options {
        offset_interval: 10_000,
        max_record_bytes: 32 << 20,
        budget: Budget::default(),
    }
}

/// ~16 MiB of Braze user objects, one per line.
fn users_jsonl() -> Vec<u8> {
    let mut out = Vec::with_capacity(17 << 20);
    let mut i = 0u64;
    while out.len() < 16 << 20 {
        writeln!(
            out,
            r#"{{"external_id":"user-{i:09}","braze_id":"{:024x}","first_name":"Chloé","last_name":"Müller","email":"user{i}@example.com","country":"FR","created_at":"2020-07-10 15:00:00.000 UTC","random_bucket":{},"custom_attributes":{{"loyalty_tier":"gold","favorite_categories":["shoes","tea"],"score":{}}},"purchases":[{{"name":"sku-{}","first":"2022-01-01T00:00:00.000Z","last":"2024-03-04T05:06:07.000Z","count":{}}}],"devices":[{{"model":"Pixel 8","os":"Android 14","carrier":null}}]}}"#,
            i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            i % 10_000,
            (i % 997) as f64 / 997.0,
            i % 500,
            i % 20 + 1
        )
        .unwrap();
        i += 1;
    }
    out
}

/// The same users as a dashboard CSV export.
fn users_csv() -> Vec<u8> {
    let mut out = b"Appboy ID,user_id,first_name,last_name,email,country,created_at,phone_number,random_bucket\n".to_vec();
    let mut i = 0u64;
    while out.len() < 16 << 20 {
        writeln!(
            out,
            "{:024x},user-{i},\"Smith, Jr.\",Müller,user{i}@example.com,FR,2020-07-10 15:00:00,'+33 6 12 34 56 {:02},{}",
            i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            i % 100,
            i % 10_000
        )
        .unwrap();
        i += 1;
    }
    out
}

/// ~50,000 Currents email Send events, deflate codec, blocks of 1,000.
fn currents_avro() -> Vec<u8> {
    use apache_avro::types::{Record, Value};
    let schema = apache_avro::Schema::parse_str(
        r#"{"type":"record","name":"Send","namespace":"dataexport.S3.inner.users.messages.email","fields":[
            {"name":"id","type":"string"},{"name":"user_id","type":"string"},
            {"name":"external_user_id","type":["null","string"]},{"name":"time","type":"int"},
            {"name":"timezone","type":["null","string"]},{"name":"campaign_id","type":["null","string"]},
            {"name":"dispatch_id","type":"string"},{"name":"email_address","type":"string"}]}"#,
    )
    .unwrap();
    let mut w = apache_avro::Writer::builder()
        .schema(&schema)
        .writer(Vec::new())
        .codec(apache_avro::Codec::Deflate(
            apache_avro::DeflateSettings::default(),
        ))
        .build()
        .unwrap();
    for i in 0..50_000u64 {
        let mut r = Record::new(&schema).unwrap();
        r.put(
            "id",
            Value::String(format!("{:032x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15))),
        );
        r.put("user_id", Value::String(format!("{:024x}", i)));
        r.put(
            "external_user_id",
            Value::Union(1, Box::new(Value::String(format!("user-{i}")))),
        );
        r.put("time", Value::Int(1_743_526_800 + (i % 3600) as i32));
        r.put(
            "timezone",
            Value::Union(1, Box::new(Value::String("Europe/Paris".into()))),
        );
        r.put("campaign_id", Value::Union(0, Box::new(Value::Null)));
        r.put("dispatch_id", Value::String(format!("{:024x}", i / 100)));
        r.put(
            "email_address",
            Value::String(format!("user{i}@example.com")),
        );
        w.append_value(r).unwrap();
        if i % 1000 == 999 {
            w.flush().unwrap();
        }
    }
    w.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn benches(c: &mut Criterion) {
    let jsonl = users_jsonl();
    let csv = users_csv();
    let gz = gzip(&jsonl);
    let zst = zstd::encode_all(&jsonl[..], 3).unwrap();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(jsonl.len() as u64));
    g.sample_size(10);
    for (name, codec, data) in [
        ("gzip", Compression::Gzip, &gz),
        ("zstd", Compression::Zstd, &zst),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut r = decode::open_stream(
                    codec,
                    Box::new(&data[..]),
                    &Budget::new(data.len() as u64, &Limits::default()),
                )
                .unwrap();
                let mut buf = vec![0u8; 512 * 1024];
                let mut n = 0;
                loop {
                    let k = r.read(&mut buf).unwrap();
                    if k == 0 {
                        break;
                    }
                    n += k;
                }
                black_box(n)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("index");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(jsonl.len() as u64));
    g.bench_function("sha256", |b| {
        b.iter(|| black_box(sha2::Sha256::digest(&jsonl)))
    });
    g.bench_function("jsonl", |b| {
        b.iter(|| black_box(index::run(Format::Jsonl, None, &mut &jsonl[..], &opts()).records))
    });
    g.bench_function("lines", |b| {
        b.iter(|| black_box(index::run(Format::Lines, None, &mut &jsonl[..], &opts()).records))
    });
    g.throughput(Throughput::Bytes(csv.len() as u64));
    g.bench_function("csv", |b| {
        b.iter(|| black_box(index::run(Format::Csv, Some(b','), &mut &csv[..], &opts()).records))
    });
    let avro = currents_avro();
    g.throughput(Throughput::Bytes(avro.len() as u64));
    g.bench_function("avro_deflate", |b| {
        b.iter(|| black_box(index::run(Format::Avro, None, &mut &avro[..], &opts()).records))
    });
    g.finish();
}

criterion_group!(throughput, benches);
criterion_main!(throughput);
