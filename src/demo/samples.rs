//! Sample Braze files for the demo, generated in code (deterministic: a fixed seed).
//!
//! Each sample is what Braze writes into a connected bucket, at the key Braze uses, with the
//! outcome the pipeline must reach for it. The shapes follow Braze's documentation of its
//! exports, Currents and message archiving: JSON-lines user objects in zip or gzip, dashboard CSV
//! zips with `'`-prefixed cells, a `;`-delimited engagement report, a Currents Avro file (deflate
//! codec) and a message archive.

use std::io::{Cursor, Write};

use serde_json::{Map, Value, json};

use crate::manifest::{Kind, Status};

/// The label of the three objects of the API export the demo closes with Braze's callback.
pub const CALLBACK_EXPORT: &str = "API user export of 3 objects (gzip)";

/// One object to upload, and what the pipeline must make of it.
pub struct Sample {
    /// What it stands for, in a few words (shown when something goes wrong).
    pub label: &'static str,
    pub key: String,
    pub bytes: Vec<u8>,
    pub expect: Expect,
}

/// The manifest a sample must get.
pub struct Expect {
    pub kind: Kind,
    pub status: Status,
    /// Parts and records, checked for `complete` samples.
    pub parts: u64,
    pub records: u64,
}

/// A small deterministic generator (splitmix64): the same samples on every run.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn hex(&mut self, n: usize) -> String {
        const HEX: &[u8] = b"0123456789abcdef";
        (0..n)
            .map(|_| HEX[self.below(16) as usize] as char)
            .collect()
    }
    fn uuid(&mut self) -> String {
        format!(
            "{}-{}-4{}-{}{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(3),
            self.pick(&["8", "9", "a", "b"]),
            self.hex(3),
            self.hex(12)
        )
    }
}

const FIRST_NAMES: &[&str] = &[
    "Ana", "Bo", "Chloé", "Dmitri", "Emeka", "Farah", "Jürgen", "Keiko", "Luis", "Maëlle", "Noor",
    "Olu", "Priya", "Sven", "Yuki", "Zoë",
];
const LAST_NAMES: &[&str] = &[
    "García", "Nguyen", "O'Brien", "Smith", "Tanaka", "Kowalski", "Dubois", "Okafor", "Müller",
    "Rossi",
];
const COUNTRIES: &[&str] = &["US", "FR", "JP", "BR", "DE", "NG", "IN", "GB"];
const CITIES: &[&str] = &[
    "Paris",
    "São Paulo",
    "Tokyo",
    "Lagos",
    "Berlin",
    "New York",
    "Pune",
];
const TZS: &[&str] = &[
    "America/New_York",
    "Europe/Paris",
    "Asia/Tokyo",
    "America/Sao_Paulo",
    "Africa/Lagos",
];

/// Braze's timestamps are not uniform: both styles appear in one export.
fn timestamp(rng: &mut Rng) -> String {
    let (y, mo, d) = (rng.range(2018, 2024), rng.range(1, 12), rng.range(1, 28));
    let (h, mi, s, ms) = (
        rng.range(0, 23),
        rng.range(0, 59),
        rng.range(0, 59),
        rng.range(0, 999),
    );
    if rng.chance(50) {
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{ms:03} UTC")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
    }
}

/// One Braze user object (an API export line); missing fields are simply absent.
fn user_object(rng: &mut Rng, i: usize) -> Value {
    let mut u = Map::new();
    u.insert("external_id".into(), json!(format!("user-{i:06}")));
    u.insert("braze_id".into(), json!(rng.hex(24)));
    if rng.chance(25) {
        u.insert(
            "user_aliases".into(),
            json!([{"alias_name": format!("amp-{}", rng.hex(8)), "alias_label": "amplitude_id"}]),
        );
    }
    if rng.chance(90) {
        u.insert("first_name".into(), json!(rng.pick(FIRST_NAMES)));
    }
    if rng.chance(85) {
        u.insert("last_name".into(), json!(rng.pick(LAST_NAMES)));
    }
    if rng.chance(80) {
        u.insert(
            "email".into(),
            json!(format!("user{i}.{}@example.com", rng.hex(4))),
        );
    }
    if rng.chance(70) {
        u.insert("country".into(), json!(rng.pick(COUNTRIES)));
    }
    if rng.chance(50) {
        u.insert("home_city".into(), json!(rng.pick(CITIES)));
    }
    if rng.chance(60) {
        u.insert(
            "language".into(),
            json!(rng.pick(&["en", "fr", "ja", "pt", "de"])),
        );
    }
    u.insert("created_at".into(), json!(timestamp(rng)));
    u.insert("random_bucket".into(), json!(rng.range(0, 9999)));
    if rng.chance(60) {
        u.insert(
            "total_revenue".into(),
            json!(rng.range(0, 100_000) as f64 / 100.0),
        );
    }
    if rng.chance(70) {
        u.insert(
            "email_subscribe".into(),
            json!(rng.pick(&["opted_in", "subscribed", "unsubscribed"])),
        );
    }
    if rng.chance(80) {
        let mut ca = Map::new();
        ca.insert(
            "loyalty_tier".into(),
            json!(rng.pick(&["gold", "silver", "bronze"])),
        );
        if rng.chance(50) {
            ca.insert("favorite_colors".into(), json!(["red", "蓝色", "vert"]));
        }
        if rng.chance(50) {
            ca.insert("last_visit".into(), json!({"$time": timestamp(rng)}));
        }
        ca.insert("score".into(), json!(rng.range(-50, 50)));
        u.insert("custom_attributes".into(), Value::Object(ca));
    }
    if rng.chance(50) {
        let purchases: Vec<Value> = (0..rng.range(1, 3))
            .map(|_| {
                json!({"name": format!("sku-{}", rng.hex(5)), "first": timestamp(rng),
                       "last": timestamp(rng), "count": rng.range(1, 9)})
            })
            .collect();
        u.insert("purchases".into(), json!(purchases));
    }
    if rng.chance(40) {
        let events: Vec<Value> = (0..rng.range(1, 2))
            .map(|k| {
                json!({"name": format!("Viewed Product {k}"), "first": timestamp(rng),
                       "last": timestamp(rng), "count": rng.range(1, 40)})
            })
            .collect();
        u.insert("custom_events".into(), json!(events));
    }
    if rng.chance(60) {
        u.insert(
            "devices".into(),
            json!([{"model": rng.pick(&["iPhone 14", "Pixel 8", "SM-G991B"]),
                    "os": rng.pick(&["iOS 17.1", "Android 14"]), "idfv": rng.uuid(),
                    "ad_tracking_enabled": rng.chance(50)}]),
        );
    }
    if rng.chance(50) {
        u.insert("time_zone".into(), json!(rng.pick(TZS)));
    }
    if rng.chance(25) {
        u.insert(
            "campaigns_received".into(),
            json!([{"name": "Welcome", "api_campaign_id": rng.uuid(),
                    "last_received": timestamp(rng), "engaged": {"opened_email": true}}]),
        );
    }
    Value::Object(u)
}

/// `n` user objects as JSON lines, numbered from `first`.
fn users_jsonl(rng: &mut Rng, first: usize, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in first..first + n {
        out.extend_from_slice(user_object(rng, i).to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// A CSV field: quoted when it holds the delimiter, a quote or a line break.
fn csv_field(value: &str, delimiter: char) -> String {
    if value.contains([delimiter, '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn csv_row(cells: &[String], delimiter: char) -> String {
    let mut row = cells
        .iter()
        .map(|c| csv_field(c, delimiter))
        .collect::<Vec<_>>()
        .join(&delimiter.to_string());
    row.push('\n');
    row
}

/// Braze writes cells that start with `-`, `=`, `+` or `@` with a leading `'`.
fn braze_cell(v: &str) -> String {
    if v.starts_with(['-', '=', '+', '@']) {
        format!("'{v}")
    } else {
        v.to_string()
    }
}

const DASHBOARD_COLUMNS: &[&str] = &[
    "Appboy ID",
    "user_id",
    "first_name",
    "last_name",
    "email",
    "country",
    "created_at",
    "devices",
    "date_of_birth",
    "gender",
    "language",
    "phone_number",
    "random_bucket",
    "session_count",
    "timezone",
    "in_app_purchase_total",
    "user_aliases",
    "favorite_quote",
];

/// A dashboard "CSV Export User Data" file with `n` data rows.
fn dashboard_csv(rng: &mut Rng, first: usize, n: usize) -> Vec<u8> {
    let header: Vec<String> = DASHBOARD_COLUMNS.iter().map(|s| s.to_string()).collect();
    let mut out = csv_row(&header, ',');
    for i in first..first + n {
        let user_id = match i % 5 {
            0 => "-1943".to_string(),
            1 => format!("user-{i:06}"),
            _ => format!("{}", 100_000 + i),
        };
        let first_name = if i % 7 == 0 {
            "=HYPERLINK(\"x\")".to_string()
        } else {
            rng.pick(FIRST_NAMES).to_string()
        };
        let last_name = if i % 6 == 0 {
            "@handle".to_string()
        } else {
            rng.pick(LAST_NAMES).to_string()
        };
        let phone = if rng.chance(60) {
            format!(
                "+33 6 {:02} {:02} {:02} {:02}",
                rng.range(0, 99),
                rng.range(0, 99),
                rng.range(0, 99),
                rng.range(0, 99)
            )
        } else {
            String::new()
        };
        let devices = if rng.chance(60) {
            format!(
                "[{{\"model\":\"iPhone 14\",\"os\":\"iOS 17.1\",\"idfv\":\"{}\"}}]",
                rng.uuid()
            )
        } else {
            String::new()
        };
        let quote = match i % 4 {
            0 => "Stay hungry,\nstay foolish",
            1 => "He said \"hi\", then left",
            2 => "",
            _ => "plain",
        };
        let cells = vec![
            rng.hex(24),
            braze_cell(&user_id),
            braze_cell(&first_name),
            braze_cell(&last_name),
            format!("user{i}@example.com"),
            rng.pick(COUNTRIES).to_string(),
            timestamp(rng),
            devices,
            if rng.chance(50) {
                format!(
                    "19{}-0{}-1{}",
                    rng.range(50, 99),
                    rng.range(1, 9),
                    rng.range(0, 9)
                )
            } else {
                String::new()
            },
            rng.pick(&["M", "F", "O", ""]).to_string(),
            rng.pick(&["en", "fr", "ja"]).to_string(),
            braze_cell(&phone),
            rng.range(0, 9999).to_string(),
            rng.range(0, 500).to_string(),
            rng.pick(TZS).to_string(),
            format!("{}.{:02}", rng.range(0, 999), rng.range(0, 99)),
            if rng.chance(30) {
                "[{\"alias_name\":\"a1\",\"alias_label\":\"crm\"}]".into()
            } else {
                String::new()
            },
            quote.to_string(),
        ];
        out.push_str(&csv_row(&cells, ','));
    }
    out.into_bytes()
}

/// An engagement report (campaigns or Canvases) with the `;` delimiter.
fn engagement_report(rng: &mut Rng, what: &str, n: usize) -> Vec<u8> {
    let header: Vec<String> = [
        &format!("{what} Name") as &str,
        &format!("{what} ID"),
        "Channel",
        "Send Time",
        "Sends",
        "Deliveries",
        "Unique Opens",
        "Unique Clicks",
        "Conversions",
        "Revenue",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let names = [
        "Spring Sale, EU",
        "Welcome | Onboarding",
        "Re-engage; lapsed",
        "Prix d'été",
        "Black Friday, US; web | app",
        "Weekly digest",
    ];
    let mut out = csv_row(&header, ';');
    for i in 0..n {
        let sends = rng.range(1000, 90_000);
        let cells = vec![
            names[i % names.len()].to_string(),
            rng.uuid(),
            rng.pick(&["email", "ios_push", "android_push", "sms"])
                .to_string(),
            format!(
                "2024-04-{:02} {:02}:{:02}:00",
                1 + i % 28,
                rng.range(0, 23),
                rng.range(0, 59)
            ),
            sends.to_string(),
            (sends - rng.range(0, 999)).to_string(),
            rng.range(0, 999).to_string(),
            rng.range(0, 99).to_string(),
            rng.range(0, 20).to_string(),
            format!("{}.{:02}", rng.range(0, 9999), rng.range(0, 99)),
        ];
        out.push_str(&csv_row(&cells, ';'));
    }
    out.into_bytes()
}

/// A Currents `users.messages.email.Send` Avro file (deflate codec), `per_block` records a block.
fn currents_email_send(rng: &mut Rng, records: usize, per_block: usize) -> Result<Vec<u8>, String> {
    use apache_avro::types::{Record, Value as AV};
    let schema = json!({
        "type": "record",
        "name": "Send",
        "namespace": "dataexport.S3.inner.users.messages.email",
        "doc": "When an email is sent to a user",
        "fields": [
            {"name": "id", "type": "string", "doc": "globally unique ID of this event"},
            {"name": "user_id", "type": "string", "doc": "Braze user ID of the user who performed this event"},
            {"name": "external_user_id", "type": ["null", "string"], "default": null},
            {"name": "time", "type": "int", "doc": "UNIX timestamp at which the event happened"},
            {"name": "timezone", "type": ["null", "string"], "default": null},
            {"name": "app_group_id", "type": ["null", "string"], "default": null},
            {"name": "campaign_id", "type": ["null", "string"], "default": null},
            {"name": "campaign_name", "type": ["null", "string"], "default": null},
            {"name": "message_variation_id", "type": ["null", "string"], "default": null},
            {"name": "send_id", "type": ["null", "string"], "default": null},
            {"name": "dispatch_id", "type": ["null", "string"], "default": null},
            {"name": "email_address", "type": "string"},
            {"name": "ip_pool", "type": ["null", "string"], "default": null},
            {"name": "message_extras", "type": ["null", "string"], "default": null},
            {"name": "tags", "type": ["null", {"type": "array", "items": "string"}], "default": null}
        ]
    });
    let schema = apache_avro::Schema::parse_str(&schema.to_string()).map_err(|e| e.to_string())?;
    let mut marker = [0u8; 16];
    for b in marker.iter_mut() {
        *b = rng.below(256) as u8;
    }
    let mut w = apache_avro::Writer::builder()
        .schema(&schema)
        .writer(Vec::new())
        .codec(apache_avro::Codec::Deflate(
            apache_avro::DeflateSettings::default(),
        ))
        .marker(marker)
        .block_size(1 << 24)
        .build()
        .map_err(|e| e.to_string())?;
    let opt = |v: Option<String>| match v {
        None => AV::Union(0, Box::new(AV::Null)),
        Some(s) => AV::Union(1, Box::new(AV::String(s))),
    };
    let app_group = rng.hex(24);
    let campaigns: Vec<(String, &str)> = ["Spring Sale", "Welcome series", "Weekly digest"]
        .iter()
        .map(|name| (rng.uuid(), *name))
        .collect();
    for i in 0..records {
        let (campaign_id, campaign_name) = rng.pick(&campaigns).clone();
        let mut r = Record::new(&schema).ok_or("the Avro schema is not a record")?;
        r.put("id", AV::String(rng.uuid()));
        r.put("user_id", AV::String(rng.hex(24)));
        r.put(
            "external_user_id",
            opt(rng.chance(70).then(|| format!("user-{i:06}"))),
        );
        r.put("time", AV::Int(1_714_658_400 + rng.range(0, 3599) as i32));
        r.put(
            "timezone",
            opt(rng.chance(50).then(|| rng.pick(TZS).to_string())),
        );
        r.put("app_group_id", opt(Some(app_group.clone())));
        r.put("campaign_id", opt(Some(campaign_id)));
        r.put("campaign_name", opt(Some(campaign_name.to_string())));
        r.put("message_variation_id", opt(Some(rng.uuid())));
        r.put("send_id", opt(rng.chance(30).then(|| rng.hex(24))));
        r.put("dispatch_id", opt(Some(rng.hex(24))));
        r.put("email_address", AV::String(format!("user{i}@example.com")));
        r.put("ip_pool", opt(None));
        r.put(
            "message_extras",
            opt(rng
                .chance(20)
                .then(|| json!({"coupon": format!("SAVE{}", rng.range(5, 50))}).to_string())),
        );
        r.put(
            "tags",
            if rng.chance(50) {
                AV::Union(
                    1,
                    Box::new(AV::Array(vec![
                        AV::String("promo".into()),
                        AV::String("été".into()),
                    ])),
                )
            } else {
                AV::Union(0, Box::new(AV::Null))
            },
        );
        w.append_value(r).map_err(|e| e.to_string())?;
        if (i + 1) % per_block == 0 {
            w.flush().map_err(|e| e.to_string())?;
        }
    }
    w.into_inner().map_err(|e| e.to_string())
}

/// One archived email (message archiving add-on): a single JSON object.
fn archived_email(rng: &mut Rng, dispatch_id: &str, campaign_id: &str) -> Vec<u8> {
    json!({
        "to": "josé.garcía@example.com",
        "from": "Shop <news@example.com>",
        "subject": "Votre commande est en route 🚚",
        "html_body": "<html><body><p>Bonjour José,</p><p>Merci pour votre commande n°1234.</p>\
                      <a href=\"https://example.com/t?u=1&amp;c=2\">Suivre</a></body></html>",
        "sent_at": 1_714_658_400 + rng.range(0, 3599),
        "dispatch_id": dispatch_id,
        "campaign_id": campaign_id,
        "user_id": rng.hex(24),
        "external_id": "user-000042",
    })
    .to_string()
    .into_bytes()
}

fn gzip(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).map_err(|e| e.to_string())?;
    enc.finish().map_err(|e| e.to_string())
}

fn zip_of(members: &[(String, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(
            zip::DateTime::from_date_and_time(2024, 5, 2, 14, 5, 0).map_err(|e| e.to_string())?,
        );
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in members {
        w.start_file(name.as_str(), options)
            .map_err(|e| e.to_string())?;
        w.write_all(data).map_err(|e| e.to_string())?;
    }
    Ok(w.finish().map_err(|e| e.to_string())?.into_inner())
}

/// Every sample, in upload order.
pub fn all() -> Result<Vec<Sample>, String> {
    let mut rng = Rng(0x00B2_A2E0_DE40);
    let segment_id = rng.uuid();
    let date = "2024-05-02";
    let mut samples = Vec::new();

    // API user export, default output format: a zip of `.txt` JSON-lines members.
    let folder = format!("{}-1714658400", rng.uuid());
    let (a, b) = (1200, 800);
    let members = vec![
        (
            format!("{}-0.txt", rng.hex(32)),
            users_jsonl(&mut rng, 0, a),
        ),
        (
            format!("{}-1.txt", rng.hex(32)),
            users_jsonl(&mut rng, a, b),
        ),
    ];
    samples.push(Sample {
        label: "API user export (zip)",
        key: format!(
            "segment-export/{segment_id}/{date}/{folder}/{}.zip",
            rng.hex(32)
        ),
        bytes: zip_of(&members)?,
        expect: Expect {
            kind: Kind::ApiUserExport,
            status: Status::Complete,
            parts: 2,
            records: (a + b) as u64,
        },
    });

    // API user export with `output_format: "gzip"`, split into two objects under one folder;
    // the second one arrives truncated (the corrupt sample).
    let folder = format!("{}-1714661100", rng.uuid());
    let n = 1000;
    samples.push(Sample {
        label: "API user export (gzip)",
        key: format!(
            "segment-export/{segment_id}/{date}/{folder}/{}.gz",
            rng.hex(32)
        ),
        bytes: gzip(&users_jsonl(&mut rng, 0, n))?,
        expect: Expect {
            kind: Kind::ApiUserExport,
            status: Status::Complete,
            parts: 1,
            records: n as u64,
        },
    });
    let whole = gzip(&users_jsonl(&mut rng, n, 600))?;
    let truncated = whole[..whole.len() * 3 / 5].to_vec();
    let corrupt_key = format!(
        "segment-export/{segment_id}/{date}/{folder}/{}.gz",
        rng.hex(32)
    );

    // Dashboard "CSV Export User Data": a zip of several CSV files.
    let random = rng.hex(12);
    let (a, b) = (600, 400);
    let members = vec![
        (
            format!("users-{random}-0.csv"),
            dashboard_csv(&mut rng, 0, a),
        ),
        (
            format!("users-{random}-1.csv"),
            dashboard_csv(&mut rng, a, b),
        ),
    ];
    samples.push(Sample {
        label: "dashboard CSV export (zip)",
        key: format!("segment-export/{segment_id}/{date}/users-{random}.zip"),
        bytes: zip_of(&members)?,
        expect: Expect {
            kind: Kind::DashboardCsvExport,
            status: Status::Complete,
            parts: 2,
            records: (a + b) as u64,
        },
    });

    // Engagement report (campaigns and Canvases), `;` delimiter, zip (Braze's default).
    let (a, b) = (24, 12);
    let members = vec![
        (
            "campaign_engagement_report.csv".to_string(),
            engagement_report(&mut rng, "Campaign", a),
        ),
        (
            "canvas_engagement_report.csv".to_string(),
            engagement_report(&mut rng, "Canvas", b),
        ),
    ];
    samples.push(Sample {
        label: "engagement report (zip, ';')",
        key: format!(
            "reports/engagement/{date}/engagement-report-{}.zip",
            rng.hex(8)
        ),
        bytes: zip_of(&members)?,
        expect: Expect {
            kind: Kind::Report,
            status: Status::Complete,
            parts: 2,
            records: (a + b) as u64,
        },
    });

    // Currents: one event type per Avro file; the key holds `=` and `+`.
    let connector = format!("dataexport.prod-03.S3.integration.{}", rng.hex(24));
    let n = 1500;
    samples.push(Sample {
        label: "Currents Avro (deflate)",
        key: format!(
            "currents/{connector}/event_type=users.messages.email.Send/date=2024-05-02-14/\
             version=6/us-03/{connector}+0+0000012345.avro"
        ),
        bytes: currents_email_send(&mut rng, n, 500)?,
        expect: Expect {
            kind: Kind::Currents,
            status: Status::Complete,
            parts: 1,
            records: n as u64,
        },
    });

    // Message archiving: one gzipped JSON object per message sent.
    let (campaign_id, dispatch_id) = (rng.uuid(), rng.hex(24));
    samples.push(Sample {
        label: "message archive (json.gz)",
        key: format!(
            "sent_messages/email/{}/{campaign_id}/{dispatch_id}.json.gz",
            rng.hex(32)
        ),
        bytes: gzip(&archived_email(&mut rng, &dispatch_id, &campaign_id))?,
        expect: Expect {
            kind: Kind::MessageArchive,
            status: Status::Complete,
            parts: 1,
            records: 1,
        },
    });

    // An API user export split into three objects (one per ~5,000 users in Braze; fewer here)
    // under one folder of a segment of its own: the demo closes it with Braze's callback.
    let segment = rng.uuid();
    let folder = format!("{}-1714664700", rng.uuid());
    for (i, n) in [700usize, 650, 400].into_iter().enumerate() {
        samples.push(Sample {
            label: CALLBACK_EXPORT,
            key: format!(
                "segment-export/{segment}/{date}/{folder}/{}.gz",
                rng.hex(32)
            ),
            bytes: gzip(&users_jsonl(&mut rng, i * 1000, n))?,
            expect: Expect {
                kind: Kind::ApiUserExport,
                status: Status::Complete,
                parts: 1,
                records: n as u64,
            },
        });
    }

    samples.push(Sample {
        label: "a truncated .gz API user export",
        key: corrupt_key,
        bytes: truncated,
        expect: Expect {
            kind: Kind::ApiUserExport,
            status: Status::Failed,
            parts: 1,
            records: 0,
        },
    });
    Ok(samples)
}

#[cfg(test)]
mod tests {
    #[test]
    fn samples_are_deterministic() {
        let a = super::all().unwrap();
        let b = super::all().unwrap();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.key, y.key);
            assert_eq!(x.bytes.len(), y.bytes.len(), "{}", x.key);
            // apache-avro writes its header metadata in HashMap order: only the length is stable.
            if !x.key.ends_with(".avro") {
                assert_eq!(x.bytes, y.bytes, "{}", x.key);
            }
        }
    }
}
