#!/usr/bin/env python3
"""Generates the benchmark inputs: Braze user-export JSON lines (as Braze documents them),
as one gzip object and as an 8-member zip, at ~1 GiB and ~100 MB decompressed; with --more, also
a Currents Avro file of `users.messages.email.Send` events in the deflate and the snappy codec
(~256 MB of records each, written with fastavro) and a dashboard CSV export (a zip of CSVs of
5,000 users, ~256 MB).

Usage: gen_bench_data.py DIR [--more]   (files already present are kept)
"""
import gzip
import json
import os
import random
import subprocess
import sys
import zipfile

FIRST = ["Ana", "Björn", "Chloé", "Dmitri", "Eun-ji", "Fatima", "Gustavo", "Hiro", "Ines", "Jamal"]
LAST = ["Silva", "Müller", "Nguyen", "O'Brien", "Kowalski", "Tanaka", "Haddad", "García"]
COUNTRIES = ["US", "FR", "DE", "BR", "JP", "IN", "GB", "ES"]


def user(rng, i):
    u = {
        "external_id": f"user-{i:09d}",
        "braze_id": "%024x" % rng.getrandbits(96),
        "first_name": rng.choice(FIRST),
        "last_name": rng.choice(LAST),
        "email": f"user{i}@example.com",
        "country": rng.choice(COUNTRIES),
        "created_at": "2020-07-10 15:00:00.000 UTC" if i % 2 else "2021-09-05T03:45:50.540Z",
        "email_subscribe": rng.choice(["opted_in", "subscribed", "unsubscribed"]),
        "random_bucket": rng.randrange(10000),
        "total_revenue": round(rng.random() * 500, 2),
        "custom_attributes": {
            "loyalty_tier": rng.choice(["gold", "silver", "bronze"]),
            "favorite_categories": rng.sample(["shoes", "hats", "books", "games", "tea"], 2),
            "last_visit_score": rng.random(),
        },
        "purchases": [
            {"name": f"sku-{rng.randrange(500)}", "first": "2022-01-01T00:00:00.000Z",
             "last": "2024-03-04T05:06:07.000Z", "count": rng.randrange(1, 20)}
            for _ in range(rng.randrange(0, 4))
        ],
        "devices": [{"model": rng.choice(["iPhone 15", "Pixel 8", "Galaxy S24"]),
                     "os": rng.choice(["iOS 17.4", "Android 14"]),
                     "carrier": None, "idfv": "%032x" % rng.getrandbits(128)}],
        "custom_events": [{"name": "viewed_product", "first": "2023-01-01T00:00:00.000Z",
                           "last": "2024-01-01T00:00:00.000Z", "count": rng.randrange(1, 300)}],
        "campaigns_received": [{"name": "Spring Sale", "last_received": "2024-03-01T10:00:00.000Z",
                                "engaged": {"opened_email": bool(rng.getrandbits(1))}}],
    }
    if i % 5 == 0:
        u.pop("devices")
    return json.dumps(u, ensure_ascii=False, separators=(",", ":"))


def jsonl(path, target):
    if os.path.exists(path) and os.path.getsize(path) >= target:
        return
    rng = random.Random(42)
    lines = [user(rng, i) for i in range(4096)]
    with open(path, "w", encoding="utf-8") as f:
        written, i = 0, 0
        while written < target:
            line = lines[i % len(lines)].replace("user-", f"u{i // 4096}-", 1) + "\n"
            f.write(line)
            written += len(line.encode())
            i += 1


EMAIL_SEND = {
    "type": "record", "name": "Send", "namespace": "dataexport.S3.inner.users.messages.email",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "user_id", "type": "string"},
        {"name": "external_user_id", "type": ["null", "string"], "default": None},
        {"name": "time", "type": "int"},
        {"name": "timezone", "type": ["null", "string"], "default": None},
        {"name": "app_group_id", "type": "string"},
        {"name": "campaign_id", "type": ["null", "string"], "default": None},
        {"name": "campaign_name", "type": ["null", "string"], "default": None},
        {"name": "message_variation_id", "type": ["null", "string"], "default": None},
        {"name": "send_id", "type": ["null", "string"], "default": None},
        {"name": "dispatch_id", "type": ["null", "string"], "default": None},
        {"name": "email_address", "type": "string"},
        {"name": "ip_pool", "type": ["null", "string"], "default": None},
        {"name": "is_amp", "type": ["null", "boolean"], "default": None},
    ],
}


def avro(path, codec, target):
    """A Currents file of email Send events, ~`target` bytes of encoded records."""
    if os.path.exists(path):
        return
    import fastavro  # the benchmark's own venv (scripts/bench.sh)
    rng = random.Random(7)

    def events():
        written, i = 0, 0
        while written < target:
            e = {
                "id": "%032x" % rng.getrandbits(128), "user_id": "%024x" % rng.getrandbits(96),
                "external_user_id": f"user-{i:09d}" if i % 3 else None, "time": 1743526800 + i // 50,
                "timezone": rng.choice(["America/New_York", "Europe/Paris", None]),
                "app_group_id": "5e3c2a1b9f0d4e6a7b8c9d0e",
                "campaign_id": "%024x" % rng.getrandbits(96), "campaign_name": "Spring Sale 2025",
                "message_variation_id": "%024x" % rng.getrandbits(96),
                "send_id": None if i % 4 else "%024x" % rng.getrandbits(96),
                "dispatch_id": "%024x" % rng.getrandbits(96),
                "email_address": f"user{i}@example.com", "ip_pool": None, "is_amp": bool(i % 2),
            }
            written += 240
            i += 1
            yield e

    with open(path + ".tmp", "wb") as f:
        fastavro.writer(f, fastavro.parse_schema(EMAIL_SEND), events(), codec=codec,
                        sync_interval=64 * 1024)
    os.rename(path + ".tmp", path)


def csv_zip(path, target):
    """A dashboard 'CSV Export User Data' zip: CSV members of 5,000 users each."""
    if os.path.exists(path):
        return
    import csv
    import io
    rng = random.Random(11)
    header = ["Appboy ID", "user_id", "first_name", "last_name", "email", "country", "created_at",
              "devices", "date_of_birth", "gender", "language", "phone_number", "random_bucket",
              "session_count", "timezone", "in_app_purchase_total", "user_aliases"]
    with zipfile.ZipFile(path + ".tmp", "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        written, member, i = 0, 0, 0
        while written < target:
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(header)
            for _ in range(5000):
                w.writerow(["%024x" % rng.getrandbits(96), f"user-{i:09d}", rng.choice(FIRST),
                            rng.choice(LAST), f"user{i}@example.com", rng.choice(COUNTRIES),
                            "2021-09-05 03:45:50 UTC",
                            '[{"model":"iPhone 15","os":"iOS 17.4"}]' if i % 2 else "",
                            "'-1943" if i % 97 == 0 else "1990-02-03", rng.choice(["M", "F", ""]),
                            "en", "+33 6 12 34 56 78" if i % 3 else "", rng.randrange(10000),
                            rng.randrange(400), "Europe/Paris", round(rng.random() * 90, 2),
                            "[]"])
                i += 1
            data = buf.getvalue().encode()
            z.writestr(f"users-{member:04d}.csv", data)
            written += len(data)
            member += 1
    os.rename(path + ".tmp", path)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    if "--more" in sys.argv[2:]:
        avro(os.path.join(out, "email-send-deflate.avro"), "deflate", 256 << 20)
        avro(os.path.join(out, "email-send-snappy.avro"), "snappy", 256 << 20)
        csv_zip(os.path.join(out, "users-csv.zip"), 256 << 20)
    for name, size in [("1g", 1 << 30), ("100m", 100 * 1000 * 1000)]:
        raw = os.path.join(out, f"users-{name}.jsonl")
        jsonl(raw, size)
        gz = os.path.join(out, f"users-{name}.jsonl.gz")
        if not os.path.exists(gz):
            with open(gz, "wb") as f:
                subprocess.run(["gzip", "-6", "-c", raw], stdout=f, check=True)
        zp = os.path.join(out, f"users-{name}.zip")
        if not os.path.exists(zp):
            data = open(raw, "rb").read()
            step = len(data) // 8
            with zipfile.ZipFile(zp + ".tmp", "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
                start = 0
                for m in range(8):
                    end = len(data) if m == 7 else data.index(b"\n", start + step) + 1
                    z.writestr(f"{'%032x' % (m * 7919)}.txt", data[start:end])
                    start = end
            os.rename(zp + ".tmp", zp)
    print(out)


if __name__ == "__main__":
    main()
