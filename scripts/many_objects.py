#!/usr/bin/env python3
"""Inputs and the reference reader of the many-small-objects benchmark (scripts/bench-many.sh).

  many_objects.py upload ENDPOINT DIR BIG SMALL   generate BIG ~5 MB and SMALL ~2 KB gzip objects,
                                                  upload them to ENDPOINT (bucket `bench`), write
                                                  DIR/big.keys, DIR/small.keys and Batch Operations
                                                  events DIR/events/{big,small}-NNN.json
  many_objects.py read ENDPOINT KEYS THREADS      the reference: GET every key of KEYS and gunzip it
                                                  (THREADS at a time); prints objects and bytes

Needs boto3 (the project's .venv has it: moto depends on it). Objects (keys as Braze documents them):
- big: API user exports with `output_format: "gzip"`, JSON lines of Braze user records
  (scripts/gen_bench_data.py's generator), 5,600 users (~5 MB of JSON, one file per ~5,000 users
  as Braze splits them), keys `segment-export/SEGMENT/DATE/UUID-TIMESTAMP/HEX32.gz`, 100 files per
  export folder. Every big object has the same content (generating 1,000 distinct gzip files
  would take minutes); only the keys differ. Nothing in the fetcher depends on content being
  unique across keys.
- small: message archiving, one gzipped JSON object per message (~2 KB gzipped, all distinct),
  keys `sent_messages/email/MD5/CAMPAIGN/DISPATCH.json.gz`.
Events: S3 Batch Operations invocation schema 2.0, 100 tasks per file, keys percent-encoded.
"""
import concurrent.futures
import gzip
import hashlib
import json
import os
import random
import sys
import urllib.parse
import uuid

import boto3
from botocore.config import Config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_bench_data import user  # noqa: E402

BUCKET = "bench"
TASKS_PER_EVENT = 100
BIG_USERS = int(os.environ.get("MANY_BIG_USERS", "5600"))
WORDS = ("sale spring summer new arrivals shoes hats books games tea free shipping today only "
         "discount member exclusive offer limited your order cart reminder points reward tier "
         "gold silver bronze update account welcome back favorite picks").split()


def client(endpoint, threads):
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "local"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "local-secret"),
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=threads,
                      request_checksum_calculation="when_required",
                      response_checksum_validation="when_required",
                      retries={"max_attempts": 3, "mode": "standard"}))


def big_body():
    rng = random.Random(13)
    lines = "".join(user(rng, i) + "\n" for i in range(BIG_USERS)).encode()
    return gzip.compress(lines, 6, mtime=0), len(lines)


def big_keys(n, rng):
    keys = []
    for i in range(n):
        if i % 100 == 0:
            segment = str(uuid.UUID(int=rng.getrandbits(128)))
            folder = f"{uuid.UUID(int=rng.getrandbits(128))}-{1764547200 + i}"
        keys.append(f"segment-export/{segment}/2026-12-01/{folder}/{rng.getrandbits(128):032x}.gz")
    return keys


def small_object(rng, i):
    email = f"user{i}@example.com"
    campaign, dispatch = str(uuid.UUID(int=rng.getrandbits(128))), f"{rng.getrandbits(96):024x}"
    paragraphs = "".join(
        "<p>" + " ".join(rng.choice(WORDS) for _ in range(40)) + f" {rng.getrandbits(64):x}</p>"
        for _ in range(20))
    message = {
        "to": email, "subject": f"Your {rng.choice(WORDS)} {rng.choice(WORDS)} offer",
        "from": "Shop <news@example.com>",
        "html_body": f"<html><body><h1>Hi user {i}</h1>{paragraphs}"
                     f"<a href=\"https://example.com/u/{rng.getrandbits(128):032x}\">unsubscribe</a>"
                     "</body></html>",
        "sent_at": 1764547200 + i, "dispatch_id": dispatch, "campaign_id": campaign,
        "user_id": f"{rng.getrandbits(96):024x}", "external_id": f"user-{i:09d}",
    }
    key = (f"sent_messages/email/{hashlib.md5(email.encode()).hexdigest()}/{campaign}/"
           f"{dispatch}.json.gz")
    return key, gzip.compress(json.dumps(message).encode() + b"\n", 6, mtime=0)


def events(out, name, keys):
    os.makedirs(out, exist_ok=True)
    for n, start in enumerate(range(0, len(keys), TASKS_PER_EVENT)):
        event = {
            "invocationSchemaVersion": "2.0",
            "invocationId": f"bench-{name}-{n:03d}",
            "job": {"id": f"bench-many-{name}", "userArguments": {}},
            "tasks": [{"taskId": f"{name}-{start + j:06d}", "s3Bucket": BUCKET,
                       "s3Key": urllib.parse.quote(key, safe="/"), "s3VersionId": None}
                      for j, key in enumerate(keys[start:start + TASKS_PER_EVENT])],
        }
        with open(os.path.join(out, f"{name}-{n:03d}.json"), "w") as f:
            json.dump(event, f)


def upload(endpoint, out, n_big, n_small):
    threads = 16
    s3 = client(endpoint, threads)
    s3.create_bucket(Bucket=BUCKET)
    rng = random.Random(7)
    body, raw = big_body()
    big = big_keys(n_big, rng)
    small = [small_object(rng, i) for i in range(n_small)]
    jobs = [(k, body) for k in big] + small
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(s3.put_object, Bucket=BUCKET, Key=k, Body=b) for k, b in jobs]:
            f.result()
    for name, keys in (("big", big), ("small", [k for k, _ in small])):
        with open(os.path.join(out, f"{name}.keys"), "w") as f:
            f.write("".join(k + "\n" for k in keys))
        events(os.path.join(out, "events"), name, keys)
    small_sizes = [len(b) for _, b in small]
    print(f"big: {n_big} x {len(body)} bytes gzip ({raw} bytes of JSON lines, {BIG_USERS} users); "
          f"small: {n_small} x {min(small_sizes)}-{max(small_sizes)} bytes gzip "
          f"(mean {sum(small_sizes) / len(small_sizes):.0f})")


def read(endpoint, keys_file, threads):
    s3 = client(endpoint, threads)
    keys = open(keys_file).read().split()

    def one(key):
        return len(gzip.decompress(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(one, keys))
    print(f"{len(keys)} objects, {total} bytes decompressed")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "upload":
        upload(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif cmd == "read":
        read(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(__doc__)
