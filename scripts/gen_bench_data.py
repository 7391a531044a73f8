#!/usr/bin/env python3
"""Generates the benchmark inputs: Braze user-export JSON lines (as Braze documents them),
as one gzip object and as an 8-member zip, at ~1 GiB and ~100 MB decompressed.

Usage: gen_bench_data.py DIR   (files already present are kept)
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


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
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
