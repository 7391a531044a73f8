//! Deterministic generators of realistic Braze data (the layouts and formats `src/detect.rs`
//! recognises, as Braze documents them) and of hostile variants of it. Everything here is seeded; no `rand` crate.
//!
//! Every text generator returns the bytes it produced together with the byte offset of the start of
//! every record, so the tests can check counts, checksums and index offsets independently of the
//! product.

#![allow(dead_code)]

use std::io::{Cursor, Write};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// PRNG
// ---------------------------------------------------------------------------------------------

/// SplitMix64: tiny, seeded, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    pub fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from_digit(self.below(16) as u32, 16).unwrap())
            .collect()
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
    pub fn uuid(&mut self) -> String {
        format!(
            "{}-{}-4{}-a{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(3),
            self.hex(3),
            self.hex(12)
        )
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Text parts with known record starts
// ---------------------------------------------------------------------------------------------

/// A decompressed part as generated: its bytes, the byte offset at which each record starts
/// (every record, good or bad, in order), and the expected columns.
#[derive(Clone, Debug)]
pub struct TextPart {
    pub bytes: Vec<u8>,
    /// Start offset of every record (for CSV: data rows only, the header is not a record).
    pub starts: Vec<usize>,
    /// 1-based line number (in the part) at which every record starts.
    pub lines: Vec<usize>,
    pub columns: Vec<String>,
    /// Ordinals (indexes into `starts`) of the records that are deliberately invalid.
    pub bad: Vec<usize>,
    /// Number of `\n` in `bytes` so far (kept incrementally: generation stays linear).
    newlines: usize,
}

impl TextPart {
    fn new() -> Self {
        TextPart {
            bytes: Vec::new(),
            starts: Vec::new(),
            lines: Vec::new(),
            columns: Vec::new(),
            bad: Vec::new(),
            newlines: 0,
        }
    }
    pub fn good_records(&self) -> usize {
        self.starts.len() - self.bad.len()
    }
    fn current_line(&self) -> usize {
        1 + self.newlines
    }
    /// Appends bytes that are not a record (header, BOM, blank line).
    fn push_raw(&mut self, bytes: &[u8]) {
        self.newlines += bytes.iter().filter(|&&b| b == b'\n').count();
        self.bytes.extend_from_slice(bytes);
    }
    /// Appends one record (already terminated by its newline).
    fn push_record(&mut self, record: &[u8], bad: bool) {
        if bad {
            self.bad.push(self.starts.len());
        }
        self.lines.push(self.current_line());
        self.starts.push(self.bytes.len());
        self.push_raw(record);
    }
    /// Expected `offsets` for a given interval: `[[0,0],[I, start(I)],[2I, start(2I)],...]`.
    /// For CSV the first entry is `[0,0]` (start of the part, i.e. the header).
    pub fn expected_offsets(&self, interval: usize) -> Vec<(u64, u64)> {
        let mut out = vec![(0u64, 0u64)];
        let mut i = interval;
        while i < self.starts.len() {
            out.push((i as u64, self.starts[i] as u64));
            i += interval;
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Braze user objects (API user export, JSON lines)
// ---------------------------------------------------------------------------------------------

const FIRST_NAMES: &[&str] = &[
    "José",
    "Zoë",
    "李雷",
    "Ørjan",
    "Amélie",
    "Mohammed",
    "Ana-María",
    "Łukasz",
    "Siobhán",
    "Ngọc",
    "Émile 🚀",
    "Björk",
];
const LAST_NAMES: &[&str] = &[
    "García",
    "Müller",
    "O'Brien",
    "Nguyễn",
    "Smith",
    "Dvořák",
    "王",
    "Kowalski",
    "Nørgaard",
];
const COUNTRIES: &[&str] = &["US", "FR", "JP", "BR", "DE", "VN", "IE"];
const CITIES: &[&str] = &[
    "New York",
    "Paris",
    "東京",
    "São Paulo",
    "Berlin",
    "Hà Nội",
    "Dublin",
];
const TZS: &[&str] = &[
    "America/New_York",
    "Europe/Paris",
    "Asia/Tokyo",
    "America/Sao_Paulo",
    "Europe/Berlin",
];

fn timestamp(rng: &mut Rng) -> String {
    let y = rng.range(2016, 2024);
    let mo = rng.range(1, 12);
    let d = rng.range(1, 28);
    let h = rng.range(0, 23);
    let mi = rng.range(0, 59);
    let s = rng.range(0, 59);
    let ms = rng.range(0, 999);
    match rng.below(3) {
        0 => format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{ms:03} UTC"),
        1 => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z"),
        _ => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
    }
}

/// One Braze user object as a JSON text on one line, and its top-level keys in order.
/// Keys are written in a fixed order with random omissions (missing fields are simply absent).
pub fn user_object(rng: &mut Rng, i: usize) -> (String, Vec<String>) {
    let mut fields: Vec<(&str, Value)> = Vec::new();
    fields.push(("external_id", json!(format!("user-{i:06}"))));
    fields.push(("braze_id", json!(rng.hex(24))));
    if rng.chance(30) {
        fields.push((
            "user_aliases",
            json!([{"alias_name": format!("amp-{}", rng.hex(8)), "alias_label": "amplitude_id"}]),
        ));
    }
    if rng.chance(90) {
        fields.push(("first_name", json!(rng.pick(FIRST_NAMES))));
    }
    if rng.chance(85) {
        fields.push(("last_name", json!(rng.pick(LAST_NAMES))));
    }
    if rng.chance(80) {
        fields.push(("email", json!(format!("u{i}.{}@example.com", rng.hex(4)))));
    }
    if rng.chance(40) {
        fields.push((
            "dob",
            json!(format!(
                "19{}-0{}-1{}",
                rng.range(50, 99),
                rng.range(1, 9),
                rng.range(0, 9)
            )),
        ));
    }
    if rng.chance(70) {
        fields.push(("country", json!(rng.pick(COUNTRIES))));
    }
    if rng.chance(50) {
        fields.push(("home_city", json!(rng.pick(CITIES))));
    }
    if rng.chance(60) {
        fields.push(("language", json!(rng.pick(&["en", "fr", "ja", "pt", "de"]))));
    }
    if rng.chance(50) {
        fields.push((
            "gender",
            if rng.chance(20) {
                Value::Null
            } else {
                json!(rng.pick(&["M", "F", "O", "N", "P"]))
            },
        ));
    }
    fields.push(("created_at", json!(timestamp(rng))));
    fields.push(("random_bucket", json!(rng.range(0, 9999))));
    if rng.chance(60) {
        fields.push(("total_revenue", json!(rng.range(0, 100000) as f64 / 100.0)));
    }
    if rng.chance(70) {
        fields.push((
            "email_subscribe",
            json!(rng.pick(&["opted_in", "subscribed", "unsubscribed"])),
        ));
    }
    if rng.chance(70) {
        fields.push((
            "push_subscribe",
            json!(rng.pick(&["opted_in", "subscribed", "unsubscribed"])),
        ));
    }
    if rng.chance(30) {
        fields.push(("push_opted_in_at", json!(timestamp(rng))));
    }
    if rng.chance(80) {
        let mut ca = serde_json::Map::new();
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
        if rng.chance(40) {
            ca.insert("profile".into(), json!({"pets": [{"name": "Rex", "age": 3}], "bio": "line one\nline two \u{2028} \"quoted\" \\ back"}));
        }
        ca.insert("score".into(), json!(rng.range(-50, 50)));
        fields.push(("custom_attributes", Value::Object(ca)));
    }
    if rng.chance(40) {
        let n = rng.range(1, 3);
        let events: Vec<Value> = (0..n)
            .map(|k| json!({"name": format!("Viewed Product {k}"), "first": timestamp(rng), "last": timestamp(rng), "count": rng.range(1, 40)}))
            .collect();
        fields.push(("custom_events", json!(events)));
    }
    if rng.chance(50) {
        let n = rng.range(1, 3);
        let purchases: Vec<Value> = (0..n)
            .map(|k| json!({"name": format!("sku-{k}-{}", rng.hex(4)), "first": timestamp(rng), "last": timestamp(rng), "count": rng.range(1, 9)}))
            .collect();
        fields.push(("purchases", json!(purchases)));
    }
    if rng.chance(70) {
        fields.push((
            "devices",
            json!([{"model": rng.pick(&["iPhone 14", "Pixel 8", "SM-G991B"]), "os": rng.pick(&["iOS 17.1", "Android 14"]),
                    "carrier": rng.pick(&["Verizon", "Orange F", "NTT DOCOMO"]), "idfv": rng.uuid(), "ad_tracking_enabled": rng.chance(50)}]),
        ));
    }
    if rng.chance(50) {
        fields.push(("apps", json!([{"name": "My App", "platform": "iOS", "version": "5.1.2", "sessions": rng.range(1, 300), "first_used": timestamp(rng), "last_used": timestamp(rng)}])));
    }
    if rng.chance(20) {
        fields.push((
            "push_tokens",
            json!([{"app": "My App", "platform": "Android", "token": rng.hex(64)}]),
        ));
    }
    if rng.chance(50) {
        fields.push(("time_zone", json!(rng.pick(TZS))));
    }
    if rng.chance(30) {
        fields.push((
            "last_coordinates",
            json!([
                rng.range(-180, 180) as f64 + 0.25,
                rng.range(-90, 90) as f64 - 0.5
            ]),
        ));
    }
    if rng.chance(40) {
        fields.push((
            "phone",
            json!(format!(
                "+33 6 {:02} {:02} {:02} {:02}",
                rng.range(0, 99),
                rng.range(0, 99),
                rng.range(0, 99),
                rng.range(0, 99)
            )),
        ));
    }
    if rng.chance(10) {
        fields.push(("uninstalled_at", json!(timestamp(rng))));
    }
    if rng.chance(30) {
        fields.push(("campaigns_received", json!([{"name": "Welcome", "api_campaign_id": rng.uuid(), "last_received": timestamp(rng), "engaged": {"opened_email": true}}])));
    }
    let mut out = String::from("{");
    for (k, (key, value)) in fields.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(key).unwrap());
        out.push(':');
        out.push_str(&serde_json::to_string(value).unwrap());
    }
    out.push('}');
    (out, fields.iter().map(|(k, _)| k.to_string()).collect())
}

fn merge_columns(columns: &mut Vec<String>, keys: Vec<String>) {
    for k in keys {
        if !columns.contains(&k) {
            columns.push(k);
        }
    }
}

/// `n` user objects as JSON lines (each line terminated by `\n`).
pub fn users_jsonl(seed: u64, n: usize) -> TextPart {
    let mut rng = Rng::new(seed);
    let mut part = TextPart::new();
    for i in 0..n {
        let (line, keys) = user_object(&mut rng, i);
        merge_columns(&mut part.columns, keys);
        part.push_record(format!("{line}\n").as_bytes(), false);
    }
    part
}

/// JSON lines with a blank line, a malformed line and an invalid-UTF-8 line in the middle.
/// Bad records are ordinals 7 (malformed) and 11 (invalid UTF-8); a blank line precedes record 5
/// so that line numbers and record ordinals diverge.
pub fn users_jsonl_with_bad_lines(seed: u64) -> TextPart {
    let mut rng = Rng::new(seed);
    let mut part = TextPart::new();
    for i in 0..16 {
        if i == 5 {
            part.push_raw(b"\n"); // blank line: not a record, not an error
        }
        if i == 7 {
            part.push_record(b"{\"external_id\":\"user-broken\",\"first_name\":\"Jos\xc3\xa9\",\"custom_attributes\":{\"a\":\n", true);
            continue;
        }
        if i == 11 {
            part.push_record(
                b"{\"external_id\":\"user-latin1\",\"first_name\":\"Jos\xe9\"}\n",
                true,
            );
            continue;
        }
        let (line, keys) = user_object(&mut rng, i);
        merge_columns(&mut part.columns, keys);
        part.push_record(format!("{line}\n").as_bytes(), false);
    }
    part
}

// ---------------------------------------------------------------------------------------------
// CSV (dashboard exports and engagement reports)
// ---------------------------------------------------------------------------------------------

pub const DASHBOARD_COLUMNS: &[&str] = &[
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

pub fn csv_field(value: &str, delimiter: u8) -> String {
    let needs = value
        .bytes()
        .any(|b| b == delimiter || b == b'"' || b == b'\n' || b == b'\r');
    if needs {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn csv_row(cells: &[String], delimiter: u8, eol: &str) -> String {
    let d = (delimiter as char).to_string();
    let mut s = cells
        .iter()
        .map(|c| csv_field(c, delimiter))
        .collect::<Vec<_>>()
        .join(&d);
    s.push_str(eol);
    s
}

/// Braze's dashboard escaping: cells starting with `-`, `=`, `+` or `@` get a leading `'`.
fn braze_cell(v: &str) -> String {
    if v.starts_with(['-', '=', '+', '@']) {
        format!("'{v}")
    } else {
        v.to_string()
    }
}

pub struct CsvOptions {
    pub bom: bool,
    pub crlf: bool,
}

/// A dashboard "CSV Export User Data" file with `n` data rows.
pub fn dashboard_csv(seed: u64, n: usize, opts: CsvOptions) -> TextPart {
    let mut rng = Rng::new(seed);
    let eol = if opts.crlf { "\r\n" } else { "\n" };
    let mut part = TextPart::new();
    if opts.bom {
        part.push_raw(b"\xEF\xBB\xBF");
    }
    let header: Vec<String> = DASHBOARD_COLUMNS.iter().map(|s| s.to_string()).collect();
    part.push_raw(csv_row(&header, b',', eol).as_bytes());
    part.columns = header;
    for i in 0..n {
        let user_id = match i % 5 {
            0 => "-1943".to_string(),
            1 => format!("user-{i}"),
            _ => format!("{}", 100000 + i),
        };
        let first = match i % 7 {
            0 => "=SUM(1)".to_string(),
            _ => rng.pick(FIRST_NAMES).to_string(),
        };
        let last = if i % 6 == 0 {
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
            0 => "Stay hungry,\nstay foolish".to_string(),
            1 => "He said \"hi\", then left".to_string(),
            2 => String::new(),
            _ => "multi\nline\nquote".to_string(),
        };
        let cells: Vec<String> = vec![
            rng.hex(24),
            braze_cell(&user_id),
            braze_cell(&first),
            braze_cell(&last),
            format!("u{i}@example.com"),
            rng.pick(COUNTRIES).to_string(),
            timestamp(&mut rng),
            devices,
            if rng.chance(50) {
                "1984-02-29".into()
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
            quote,
        ];
        part.push_record(csv_row(&cells, b',', eol).as_bytes(), false);
    }
    part
}

/// Dashboard CSV whose rows 30 and 41 have the wrong number of fields (one too few, two too many).
pub fn dashboard_csv_with_bad_rows(seed: u64) -> TextPart {
    let good = dashboard_csv(
        seed,
        50,
        CsvOptions {
            bom: false,
            crlf: false,
        },
    );
    // Rebuild, replacing two rows.
    let mut part = TextPart::new();
    let header_end = good.starts[0];
    part.push_raw(&good.bytes[..header_end]);
    part.columns = good.columns.clone();
    for i in 0..good.starts.len() {
        let end = if i + 1 < good.starts.len() {
            good.starts[i + 1]
        } else {
            good.bytes.len()
        };
        match i {
            30 => part.push_record(b"abc,def,ghi\n", true),
            41 => {
                let mut row = good.bytes[good.starts[i]..end].to_vec();
                row.pop(); // '\n'
                row.extend_from_slice(b",extra1,extra2\n");
                part.push_record(&row, true)
            }
            _ => part.push_record(&good.bytes[good.starts[i]..end], false),
        }
    }
    part
}

pub const REPORT_COLUMNS: &[&str] = &[
    "Campaign Name",
    "Campaign ID",
    "Channel",
    "Send Time",
    "Sends",
    "Deliveries",
    "Unique Opens",
    "Unique Clicks",
    "Conversions",
    "Revenue",
];

/// An engagement report with the given delimiter. Campaign names sometimes contain `,`, `;`, `|`;
/// send times always contain `:` (quoted when `:` is the delimiter).
pub fn engagement_report(seed: u64, n: usize, delimiter: u8) -> TextPart {
    let mut rng = Rng::new(seed);
    let mut part = TextPart::new();
    let header: Vec<String> = REPORT_COLUMNS.iter().map(|s| s.to_string()).collect();
    part.push_raw(csv_row(&header, delimiter, "\n").as_bytes());
    part.columns = header;
    let names = [
        "Spring Sale, EU",
        "Welcome | Onboarding",
        "Re-engage; lapsed",
        "Plain Name",
        "Prix d'été",
        "Black Friday, US; web | app",
    ];
    for i in 0..n {
        let sends = rng.range(1000, 90000);
        let cells: Vec<String> = vec![
            names[i % names.len()].to_string(),
            rng.uuid(),
            rng.pick(&["email", "ios_push", "android_push", "sms"])
                .to_string(),
            format!(
                "2024-01-{:02} {:02}:{:02}:00",
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
        part.push_record(csv_row(&cells, delimiter, "\n").as_bytes(), false);
    }
    part
}

/// Plain UTF-8 text that is not CSV (inconsistent delimiters) and not JSON.
pub fn prose_lines(n: usize) -> TextPart {
    let mut part = TextPart::new();
    let texts = [
        "Braze export log started",
        "user count: 5000, segment: VIP; status ok",
        "naïve café — résumé",
        "nothing to see here",
        "a|b|c|d, e; f",
    ];
    for i in 0..n {
        part.push_record(
            format!("{} #{i}\n", texts[i % texts.len()]).as_bytes(),
            false,
        );
    }
    part
}

// ---------------------------------------------------------------------------------------------
// Message archive
// ---------------------------------------------------------------------------------------------

pub fn message_archive_json(
    seed: u64,
    channel: &str,
    dispatch_id: &str,
    campaign_id: Option<&str>,
    pretty: bool,
) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let v = match channel {
        "email" => json!({
            "to": "josé.garcía@example.com",
            "subject": "Votre commande est en route 🚚",
            "from": "Shop <news@example.com>",
            "html_body": "<html><body><p>Bonjour José,</p><p>Merci pour votre commande n°1234.</p><a href=\"https://example.com/t?u=1&amp;c=2\">Suivre</a></body></html>",
            "sent_at": 1_712_000_000 + rng.range(0, 99999),
            "dispatch_id": dispatch_id,
            "campaign_id": campaign_id,
            "user_id": rng.hex(24),
            "external_id": "user-000042",
        }),
        "push" => json!({
            "to": rng.hex(64),
            "payload": {"aps": {"alert": {"title": "Hi", "body": "Flash sale ⚡"}, "badge": 1}, "ab": {"c": "x"}},
            "sent_at": 1_712_000_000 + rng.range(0, 99999),
            "dispatch_id": dispatch_id,
            "campaign_id": campaign_id,
            "user_id": rng.hex(24),
            "external_id": "user-000043",
        }),
        _ => json!({
            "to": "+33612345678",
            "body": "Your code is 123456",
            "sent_at": 1_712_000_000 + rng.range(0, 99999),
            "dispatch_id": dispatch_id,
            "campaign_id": campaign_id,
            "user_id": rng.hex(24),
            "external_id": null,
        }),
    };
    if pretty {
        serde_json::to_vec_pretty(&v).unwrap()
    } else {
        serde_json::to_vec(&v).unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// Compression wrappers
// ---------------------------------------------------------------------------------------------

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Two complete gzip members concatenated (what `cat a.gz b.gz` produces).
pub fn gzip_multi(first: &[u8], second: &[u8]) -> Vec<u8> {
    let mut out = gzip(first);
    out.extend_from_slice(&gzip(second));
    out
}

pub fn zstd_frame(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

pub fn zstd_multi(frames: &[&[u8]]) -> Vec<u8> {
    frames.iter().flat_map(|f| zstd_frame(f)).collect()
}

fn zip_time() -> zip::DateTime {
    zip::DateTime::from_date_and_time(2024, 1, 2, 10, 0, 0).unwrap()
}

pub fn zip_options(method: zip::CompressionMethod, large: bool) -> zip::write::SimpleFileOptions {
    zip::write::SimpleFileOptions::default()
        .compression_method(method)
        .last_modified_time(zip_time())
        .large_file(large)
}

pub const STORED: zip::CompressionMethod = zip::CompressionMethod::Stored;
pub const DEFLATED: zip::CompressionMethod = zip::CompressionMethod::Deflated;

/// A regular (seekable-writer) zip: sizes in the local headers, no data descriptors.
pub fn zip_of(members: &[(&str, &[u8])], method: zip::CompressionMethod, large: bool) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in members {
        w.start_file(*name, zip_options(method, large)).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A zip written in streaming mode: every member is followed by a data descriptor
/// (general purpose flag bit 3), local headers carry zero sizes.
pub fn zip_streaming(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new_stream(Vec::new());
    for (name, data) in members {
        w.start_file(*name, zip_options(DEFLATED, false)).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A zip with directory entries (`exports/`, `exports/2024/`) before and between the files.
pub fn zip_with_dirs(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.add_directory("exports/", zip_options(STORED, false))
        .unwrap();
    w.add_directory("exports/2024/", zip_options(STORED, false))
        .unwrap();
    for (k, (name, data)) in members.iter().enumerate() {
        if k == 1 {
            w.add_directory("exports/empty/", zip_options(STORED, false))
                .unwrap();
        }
        w.start_file(*name, zip_options(DEFLATED, false)).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// The 22-byte end-of-central-directory record of an empty archive.
pub fn empty_zip() -> Vec<u8> {
    let mut v = vec![0x50, 0x4b, 0x05, 0x06];
    v.extend_from_slice(&[0u8; 18]);
    v
}

/// Compressed size of every member, read back from the archive's central directory.
pub fn zip_compressed_sizes(bytes: &[u8]) -> Vec<(String, u64, bool)> {
    let mut a = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    (0..a.len())
        .map(|i| {
            let f = a.by_index_raw(i).unwrap();
            (
                f.name().unwrap().to_string(),
                f.compressed_size(),
                f.is_dir(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A tiny independent zip layout parser (for patching hostile archives; no zip64)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct ZipEntry {
    pub name: Vec<u8>,
    pub cd_offset: usize,
    pub local_offset: usize,
    pub data_offset: usize,
    pub compressed_size: usize,
    pub uncompressed_size: usize,
    pub method: u16,
}

fn le16(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}
fn le32(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

pub fn zip_layout(b: &[u8]) -> Vec<ZipEntry> {
    let eocd = (0..=b.len() - 22)
        .rev()
        .find(|&i| b[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .expect("no EOCD");
    let count = le16(b, eocd + 10);
    let mut at = le32(b, eocd + 16);
    let mut out = Vec::new();
    for _ in 0..count {
        assert_eq!(
            &b[at..at + 4],
            &[0x50, 0x4b, 0x01, 0x02],
            "central directory header"
        );
        let method = le16(b, at + 10) as u16;
        let csize = le32(b, at + 20);
        let usize_ = le32(b, at + 24);
        let nlen = le16(b, at + 28);
        let xlen = le16(b, at + 30);
        let clen = le16(b, at + 32);
        let local = le32(b, at + 42);
        let name = b[at + 46..at + 46 + nlen].to_vec();
        assert_eq!(
            &b[local..local + 4],
            &[0x50, 0x4b, 0x03, 0x04],
            "local header"
        );
        let lnlen = le16(b, local + 26);
        let lxlen = le16(b, local + 28);
        out.push(ZipEntry {
            name,
            cd_offset: at,
            local_offset: local,
            data_offset: local + 30 + lnlen + lxlen,
            compressed_size: csize,
            uncompressed_size: usize_,
            method,
        });
        at += 46 + nlen + xlen + clen;
    }
    out
}

fn entry<'a>(layout: &'a [ZipEntry], name: &str) -> &'a ZipEntry {
    layout
        .iter()
        .find(|e| e.name == name.as_bytes())
        .unwrap_or_else(|| panic!("no member {name}"))
}

/// Flips one byte in the middle of a STORED member's data: its CRC-32 no longer matches.
pub fn zip_corrupt_member_data(mut zip: Vec<u8>, member: &str) -> Vec<u8> {
    let e = entry(&zip_layout(&zip), member).clone();
    assert_eq!(e.method, 0, "member must be stored");
    zip[e.data_offset + e.compressed_size / 2] ^= 0x01;
    zip
}

/// Makes both the local header and the central directory declare `delta` more (or fewer)
/// uncompressed bytes than the member's data really holds (CRC still matches the data).
pub fn zip_declare_uncompressed_size(mut zip: Vec<u8>, member: &str, delta: i64) -> Vec<u8> {
    let e = entry(&zip_layout(&zip), member).clone();
    let declared = (e.uncompressed_size as i64 + delta) as u32;
    zip[e.cd_offset + 24..e.cd_offset + 28].copy_from_slice(&declared.to_le_bytes());
    zip[e.local_offset + 22..e.local_offset + 26].copy_from_slice(&declared.to_le_bytes());
    zip
}

/// Sets general-purpose flag bit 0 (encrypted) on a member in both headers.
pub fn zip_mark_encrypted(mut zip: Vec<u8>, member: &str) -> Vec<u8> {
    let e = entry(&zip_layout(&zip), member).clone();
    zip[e.local_offset + 6] |= 0x01;
    zip[e.cd_offset + 8] |= 0x01;
    zip
}

/// A zip whose member names are written raw (zip-slip names): members are first written under
/// same-length placeholder names, then the names are patched in both headers.
pub fn zip_with_raw_names(members: &[(&str, &[u8])]) -> Vec<u8> {
    let placeholders: Vec<String> = members
        .iter()
        .enumerate()
        .map(|(k, (name, _))| {
            let c = (b'k' + k as u8) as char;
            std::iter::repeat_n(c, name.len()).collect()
        })
        .collect();
    let pairs: Vec<(&str, &[u8])> = placeholders
        .iter()
        .zip(members)
        .map(|(p, (_, d))| (p.as_str(), *d))
        .collect();
    let mut zip = zip_of(&pairs, STORED, false);
    let layout = zip_layout(&zip);
    for (e, (name, _)) in layout.iter().zip(members) {
        let lnlen = le16(&zip, e.local_offset + 26);
        assert_eq!(lnlen, name.len());
        zip[e.local_offset + 30..e.local_offset + 30 + lnlen].copy_from_slice(name.as_bytes());
        zip[e.cd_offset + 46..e.cd_offset + 46 + lnlen].copy_from_slice(name.as_bytes());
    }
    zip
}

/// `n` tiny text members.
pub fn zip_many_entries(n: usize) -> Vec<u8> {
    let bodies: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            (
                format!("part-{i:04}.txt"),
                format!("line {i}\n").into_bytes(),
            )
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = bodies
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    zip_of(&refs, STORED, false)
}

/// A zip bomb by ratio: one member of `mb` MiB of zeros, deflated (~1000:1), plus a small member.
pub fn zip_bomb(mb: usize) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file("readme.txt", zip_options(DEFLATED, false))
        .unwrap();
    w.write_all(b"hello\n").unwrap();
    w.start_file(
        "zeros.txt",
        zip_options(DEFLATED, false).compression_level(Some(BOMB_LEVEL)),
    )
    .unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..mb {
        w.write_all(&chunk).unwrap();
    }
    w.finish().unwrap().into_inner()
}

pub const BOMB_LEVEL: i64 = 9;

/// `PK\x03\x04` followed by garbage.
pub fn not_an_archive() -> Vec<u8> {
    let mut v = b"PK\x03\x04".to_vec();
    v.extend_from_slice(&Rng::new(99).bytes(300));
    v
}

// ---------------------------------------------------------------------------------------------
// Currents Avro
// ---------------------------------------------------------------------------------------------

pub const AVRO_FIELDS: &[&str] = &[
    "id",
    "user_id",
    "external_user_id",
    "time",
    "timezone",
    "campaign_id",
    "send_id",
    "dispatch_id",
    "email_address",
    "properties",
    "ip_pool",
    "tags",
];

pub fn currents_schema(name: &str, namespace: &str) -> apache_avro::Schema {
    let s = json!({
        "type": "record",
        "name": name,
        "namespace": namespace,
        "doc": "Braze Currents event (test fixture)",
        "fields": [
            {"name": "id", "type": "string", "doc": "globally unique ID of this event"},
            {"name": "user_id", "type": "string"},
            {"name": "external_user_id", "type": ["null", "string"], "default": null},
            {"name": "time", "type": "int"},
            {"name": "timezone", "type": ["null", "string"], "default": null},
            {"name": "campaign_id", "type": ["null", "string"], "default": null},
            {"name": "send_id", "type": ["null", "string"], "default": null},
            {"name": "dispatch_id", "type": ["null", "string"], "default": null},
            {"name": "email_address", "type": "string"},
            {"name": "properties", "type": "string"},
            {"name": "ip_pool", "type": ["null", "string"], "default": null},
            {"name": "tags", "type": ["null", {"type": "array", "items": "string"}], "default": null}
        ]
    });
    apache_avro::Schema::parse_str(&s.to_string()).unwrap()
}

/// A Currents Avro object container file, with `per_block` records per block.
pub struct AvroFile {
    pub bytes: Vec<u8>,
    pub records: usize,
    pub blocks: Vec<AvroBlock>,
}

#[derive(Debug, Clone, Copy)]
pub struct AvroBlock {
    /// Byte offset of the block (its record-count varint).
    pub start: usize,
    /// Index of the first record of the block.
    pub first_record: usize,
    pub count: usize,
    /// Offset of the block's (compressed) data.
    pub data_start: usize,
    pub data_len: usize,
    /// Offset of the 16-byte sync marker ending the block.
    pub sync_start: usize,
}

pub fn avro_codec(name: &str) -> apache_avro::Codec {
    match name {
        "null" => apache_avro::Codec::Null,
        "deflate" => apache_avro::Codec::Deflate(apache_avro::DeflateSettings::default()),
        "snappy" => apache_avro::Codec::Snappy,
        "zstandard" => apache_avro::Codec::Zstandard(apache_avro::ZstandardSettings::default()),
        other => panic!("codec {other}"),
    }
}

pub fn currents_avro(seed: u64, codec: &str, records: usize, per_block: usize) -> AvroFile {
    use apache_avro::types::{Record, Value as AV};
    let schema = currents_schema("Send", "dataexport.S3.inner.users.messages.email");
    let mut rng = Rng::new(seed);
    let mut marker = [0u8; 16];
    marker.copy_from_slice(&rng.bytes(16));
    let mut w = apache_avro::Writer::builder()
        .schema(&schema)
        .writer(Vec::new())
        .codec(avro_codec(codec))
        .marker(marker)
        .block_size(1 << 24)
        .build()
        .unwrap();
    let opt = |v: Option<String>| match v {
        None => AV::Union(0, Box::new(AV::Null)),
        Some(s) => AV::Union(1, Box::new(AV::String(s))),
    };
    for i in 0..records {
        let mut r = Record::new(&schema).unwrap();
        r.put("id", AV::String(rng.uuid()));
        r.put("user_id", AV::String(rng.hex(24)));
        r.put(
            "external_user_id",
            opt(if rng.chance(70) {
                Some(format!("user-{i:06}"))
            } else {
                None
            }),
        );
        r.put("time", AV::Int(1_743_526_800 + rng.range(0, 3599) as i32));
        r.put(
            "timezone",
            opt(if rng.chance(50) {
                Some(rng.pick(TZS).to_string())
            } else {
                None
            }),
        );
        r.put("campaign_id", opt(Some(rng.uuid())));
        r.put(
            "send_id",
            opt(if rng.chance(30) {
                Some(rng.hex(24))
            } else {
                None
            }),
        );
        r.put("dispatch_id", opt(Some(rng.hex(24))));
        r.put("email_address", AV::String(format!("u{i}@example.com")));
        r.put(
            "properties",
            AV::String(
                json!({"source": "api", "amount": rng.range(1, 99), "name": rng.pick(FIRST_NAMES)})
                    .to_string(),
            ),
        );
        r.put("ip_pool", opt(None));
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
        w.append_value(r).unwrap();
        if (i + 1) % per_block == 0 {
            w.flush().unwrap();
        }
    }
    let bytes = w.into_inner().unwrap();
    let blocks = avro_blocks(&bytes);
    assert_eq!(
        blocks.iter().map(|b| b.count).sum::<usize>(),
        records,
        "fixture self-check"
    );
    AvroFile {
        bytes,
        records,
        blocks,
    }
}

fn read_varint(b: &[u8], at: &mut usize) -> i64 {
    let mut n: u64 = 0;
    let mut shift = 0;
    loop {
        let byte = b[*at];
        *at += 1;
        n |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

/// Independent parse of an Avro object container's block layout.
pub fn avro_blocks(b: &[u8]) -> Vec<AvroBlock> {
    assert_eq!(&b[..4], b"Obj\x01");
    let mut at = 4;
    // metadata map: blocks of (count, [size], entries)
    loop {
        let mut count = read_varint(b, &mut at);
        if count == 0 {
            break;
        }
        if count < 0 {
            count = -count;
            let _size = read_varint(b, &mut at);
        }
        for _ in 0..count {
            let klen = read_varint(b, &mut at) as usize;
            at += klen;
            let vlen = read_varint(b, &mut at) as usize;
            at += vlen;
        }
    }
    let sync = b[at..at + 16].to_vec();
    at += 16;
    let mut blocks = Vec::new();
    let mut first = 0;
    while at < b.len() {
        let start = at;
        let count = read_varint(b, &mut at) as usize;
        let len = read_varint(b, &mut at) as usize;
        let data_start = at;
        at += len;
        assert_eq!(&b[at..at + 16], &sync[..], "sync marker");
        blocks.push(AvroBlock {
            start,
            first_record: first,
            count,
            data_start,
            data_len: len,
            sync_start: at,
        });
        at += 16;
        first += count;
    }
    blocks
}

impl AvroFile {
    /// `[[0,0]]` then, for each multiple of `interval`, the first block starting at or after it.
    pub fn expected_offsets(&self, interval: usize) -> Vec<(u64, u64)> {
        let mut out = vec![(0u64, 0u64)];
        let mut m = interval;
        while m < self.records {
            if let Some(b) = self.blocks.iter().find(|b| b.first_record >= m) {
                let entry = (b.first_record as u64, b.start as u64);
                if out.last() != Some(&entry) {
                    out.push(entry);
                }
            }
            m += interval;
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Self-checks of the fixtures (independent of the product)
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod selfcheck {
    use super::*;
    use std::io::Read;

    #[test]
    fn fixture_generators_are_deterministic() {
        assert_eq!(users_jsonl(1, 30).bytes, users_jsonl(1, 30).bytes);
        // (Avro header metadata order comes from a HashMap in apache-avro; compare the blocks.)
        let (a, b) = (
            currents_avro(1, "deflate", 30, 10),
            currents_avro(1, "deflate", 30, 10),
        );
        assert_eq!(a.bytes[a.blocks[0].start..], b.bytes[b.blocks[0].start..]);
        assert_ne!(users_jsonl(1, 30).bytes, users_jsonl(2, 30).bytes);
    }

    #[test]
    fn fixture_jsonl_starts_and_columns_are_consistent() {
        let p = users_jsonl(3, 200);
        let mut cols: Vec<String> = Vec::new();
        for (i, &s) in p.starts.iter().enumerate() {
            let end = s + p.bytes[s..].iter().position(|&b| b == b'\n').unwrap();
            let v: Value = serde_json::from_slice(&p.bytes[s..end]).unwrap();
            assert_eq!(v["external_id"], format!("user-{i:06}"));
            for k in v.as_object().unwrap().keys() {
                assert!(p.columns.contains(k), "{k}");
                if !cols.contains(k) {
                    cols.push(k.clone());
                }
            }
        }
        assert_eq!(cols.len(), p.columns.len());
        assert_eq!(
            &p.columns[..2],
            &["external_id".to_string(), "braze_id".to_string()]
        );
    }

    fn csv_positions(bytes: &[u8], delimiter: u8) -> Vec<(usize, usize, usize)> {
        let mut r = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .has_headers(false)
            .from_reader(bytes);
        r.byte_records()
            .map(|rec| {
                let rec = rec.unwrap();
                let pos = rec.position().unwrap();
                (pos.byte() as usize, pos.line() as usize, rec.len())
            })
            .collect()
    }

    #[test]
    fn fixture_csv_starts_match_the_csv_crate() {
        for crlf in [false, true] {
            let p = dashboard_csv(5, 120, CsvOptions { bom: false, crlf });
            let pos = csv_positions(&p.bytes, b',');
            assert_eq!(pos.len(), 121);
            assert!(pos.iter().all(|r| r.2 == DASHBOARD_COLUMNS.len()));
            if crlf {
                // csv-core reports the position of the '\n' of a CRLF; the row starts after it.
                let starts: Vec<usize> = pos[1..].iter().map(|r| r.0 + 1).collect();
                assert_eq!(starts, p.starts);
                continue;
            }
            let starts: Vec<usize> = pos[1..].iter().map(|r| r.0).collect();
            assert_eq!(starts, p.starts);
            let lines: Vec<usize> = pos[1..].iter().map(|r| r.1).collect();
            assert_eq!(lines, p.lines);
        }
        let bad = dashboard_csv_with_bad_rows(6);
        let pos = csv_positions(&bad.bytes, b',');
        let wrong: Vec<usize> = pos[1..]
            .iter()
            .enumerate()
            .filter(|(_, r)| r.2 != DASHBOARD_COLUMNS.len())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(wrong, bad.bad);
        assert_eq!(pos[1..].iter().map(|r| r.0).collect::<Vec<_>>(), bad.starts);
        assert_eq!(pos[1..].iter().map(|r| r.1).collect::<Vec<_>>(), bad.lines);
    }

    #[test]
    fn fixture_reports_are_consistent_only_for_their_delimiter() {
        let delims = [b',', b';', b':', b'|', b'\t'];
        for &d in &delims {
            let p = engagement_report(7, 25, d);
            for &other in &delims {
                let counts: Vec<usize> =
                    csv_positions(&p.bytes, other).iter().map(|r| r.2).collect();
                let consistent = counts.iter().all(|&c| c == counts[0]) && counts[0] >= 2;
                assert_eq!(
                    consistent,
                    other == d,
                    "file delimited by {:?}, tried {:?}: {counts:?}",
                    d as char,
                    other as char
                );
            }
        }
    }

    #[test]
    fn fixture_compression_wrappers_round_trip() {
        let p = users_jsonl(8, 40);
        let split = p.starts[25];
        let gz = gzip_multi(&p.bytes[..split], &p.bytes[split..]);
        let mut all = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(all, p.bytes);
        let mut first = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut first)
            .unwrap();
        assert_eq!(first, &p.bytes[..split], "really two members");
        let zst = zstd_multi(&[&p.bytes[..split], &p.bytes[split..]]);
        assert_eq!(zstd::stream::decode_all(&zst[..]).unwrap(), p.bytes);
        let cut = &zst[..zst.len() - 5];
        assert!(zstd::stream::decode_all(cut).is_err());
    }

    fn read_zip_members(zip: &[u8]) -> Vec<Result<(String, Vec<u8>), String>> {
        let mut a = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
        (0..a.len())
            .map(|i| {
                let mut f = a.by_index(i).map_err(|e| e.to_string())?;
                let mut v = Vec::new();
                f.read_to_end(&mut v).map_err(|e| e.to_string())?;
                Ok((f.name().unwrap().to_string(), v))
            })
            .collect()
    }

    #[test]
    fn fixture_zips_read_back_and_hostile_ones_are_broken() {
        let a = users_jsonl(9, 10).bytes;
        let b = users_jsonl(10, 12).bytes;
        let members: Vec<(&str, &[u8])> = vec![("a.txt", &a), ("b.txt", &b)];
        for zip in [
            zip_of(&members, DEFLATED, false),
            zip_of(&members, STORED, false),
            zip_of(&members, DEFLATED, true),
            zip_streaming(&members),
        ] {
            let got: Vec<_> = read_zip_members(&zip)
                .into_iter()
                .map(|r| r.unwrap())
                .collect();
            assert_eq!(
                got,
                vec![
                    ("a.txt".to_string(), a.clone()),
                    ("b.txt".to_string(), b.clone())
                ]
            );
        }
        let crc = zip_corrupt_member_data(zip_of(&members, STORED, false), "b.txt");
        let r = read_zip_members(&crc);
        assert!(r[0].is_ok() && r[1].is_err(), "{r:?}");
        let slip = zip_with_raw_names(&[("../../evil.txt", b"x\n"), ("C:\\win\\x.txt", b"y\n")]);
        let names: Vec<String> = zip_layout(&slip)
            .iter()
            .map(|e| String::from_utf8(e.name.clone()).unwrap())
            .collect();
        assert_eq!(names, vec!["../../evil.txt", "C:\\win\\x.txt"]);
        assert_eq!(zip_layout(&zip_many_entries(60)).len(), 60);
        let enc = zip_mark_encrypted(zip_of(&members, STORED, false), "a.txt");
        assert!(read_zip_members(&enc)[0].is_err());
    }

    #[test]
    fn fixture_avro_reads_back_and_hostile_ones_are_broken() {
        for codec in ["null", "deflate", "snappy", "zstandard"] {
            let f = currents_avro(11, codec, 95, 30);
            assert_eq!(f.blocks.len(), 4);
            let r = apache_avro::Reader::new(&f.bytes[..]).unwrap();
            let read: Vec<_> = r.map(|v| v.unwrap()).collect();
            assert_eq!(read.len(), 95, "{codec}");
            let last = *f.blocks.last().unwrap();
            let cut = &f.bytes[..last.data_start + last.data_len / 2];
            let r = apache_avro::Reader::new(cut).unwrap();
            assert!(
                r.into_iter().any(|v| v.is_err()),
                "{codec} truncated must error"
            );
        }
    }
}
