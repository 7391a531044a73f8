#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (Python standard library only, deterministic).

Usage: gen_corpus.py DIR     -> DIR/<target>/<seed>

Seeds are small, well-formed Braze-shaped files plus a few known-hostile ones, so that the
fuzzer starts inside every decoder and parser instead of having to discover magic numbers:
gzip, zip (stored, deflated, slip names, nested), zstd (raw-block frames), Avro containers with
each codec Currents uses (null, deflate, snappy, zstandard), CSV, JSON lines, Lambda envelopes.
"""
import gzip
import io
import json
import os
import struct
import sys
import zipfile
import zlib

ROOT = os.path.dirname(os.path.abspath(__file__))

USERS = [
    {"external_id": f"u{i}", "email": f"u{i}@example.com", "country": "FR",
     "custom_attributes": {"tier": "gold", "n": i}, "purchases": [{"name": "sku", "count": i}]}
    for i in range(6)
]
JSONL = "".join(json.dumps(u, separators=(",", ":")) + "\n" for u in USERS).encode()
JSONL_BAD = JSONL + b"{broken\n\n\xff\xfe\n" + b'{"x":' + b"1" * 200 + b"}\r\n[1,2]"
CSV = (b"external_id,email,first_name\n" + b"".join(
    f"u{i},u{i}@example.com,\"Ana, \"\"the\"\" {i}\"\n".encode() for i in range(5)))
CSV_SEMI = b"\xef\xbb\xbfcampaign;sent;opens\r\nSpring;10;3\r\n\"multi\nline\";1;0\r\nragged;1\r\n"
CSV_PIPE = b"a|b|c\n1|2|3\n'=cmd|x|y\n"
MESSAGE = json.dumps({"dispatch_id": "d_1", "to": "a@b.c", "subject": "Hi",
                      "body": "<p>hello</p>"}, indent=2).encode()


def gz(b):
    return gzip.compress(b, mtime=0)


def zip_of(members, method=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2024, 5, 1, 0, 0, 0))
            info.compress_type = method
            z.writestr(info, data)
    return buf.getvalue()


def zstd_raw(data):
    """A zstd frame made of raw blocks (no compression), with its content size."""
    out = bytearray(b"\x28\xb5\x2f\xfd")
    if len(data) < 256:
        out += bytes([0x20, len(data)])  # single segment, 1-byte content size
    else:
        out += bytes([0x60]) + struct.pack("<H", len(data) - 256)  # 2-byte content size
    blocks = [data[i:i + 1000] for i in range(0, len(data), 1000)] or [b""]
    for k, block in enumerate(blocks):
        last = 1 if k == len(blocks) - 1 else 0
        header = last | (0 << 1) | (len(block) << 3)
        out += struct.pack("<I", header)[:3] + block
    return bytes(out)


def varint(n):
    n = (n << 1) ^ (n >> 63)  # zigzag (Avro longs)
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def avro_str(s):
    b = s.encode() if isinstance(s, str) else s
    return varint(len(b)) + b


def snappy_literal(data):
    """Snappy raw format with one literal (valid, uncompressed)."""
    out = bytearray()
    n = len(data)
    while True:  # preamble: uncompressed length, unsigned varint
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            break
    if data:
        if len(data) <= 60:
            out.append((len(data) - 1) << 2)
        else:
            out += bytes([61 << 2]) + struct.pack("<H", len(data) - 1)
        out += data
    return bytes(out)


AVRO_SCHEMA = json.dumps({
    "type": "record", "name": "Send", "namespace": "com.braze.currents",
    "fields": [{"name": "id", "type": "string"}, {"name": "user_id", "type": "string"},
               {"name": "time", "type": "long"},
               {"name": "app_id", "type": ["null", "string"], "default": None}]})


def avro(codec, blocks=((0, 3), (3, 2))):
    sync = bytes(range(16))
    meta = varint(2) + avro_str("avro.schema") + avro_str(AVRO_SCHEMA) + \
        avro_str("avro.codec") + avro_str(codec) + varint(0)
    out = bytearray(b"Obj\x01" + meta + sync)
    for start, count in blocks:
        data = b"".join(avro_str(f"e{i}") + avro_str(f"u{i}") + varint(1714550400 + i) +
                        (varint(1) + avro_str("app") if i % 2 else varint(0))
                        for i in range(start, start + count))
        if codec == "deflate":
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            data = c.compress(data) + c.flush()
        elif codec == "snappy":
            data = snappy_literal(data) + struct.pack(">I", zlib.crc32(data))
        elif codec == "zstandard":
            data = zstd_raw(data)
        out += varint(count) + varint(len(data)) + data + sync
    return bytes(out)


KEYS = [
    "segment-export/seg/2024-05-01/0b6c1a6e-2f4c-4d7e-9f1a-3a5b7c9d1e2f-1714550400/114f0226319130e1a4770f2602b5639a.zip",
    "segment-export/5e1b3c0a9d2f4a0012345678/2024-05-01/users-x7Kp2QvL9m.zip",
    "currents/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5/event_type=users.messages.email.Send/date=2025-04-01-17/version=6/us-01/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5+0+123456.avro",
    "sent_messages/push/6b9f1f5e0c1d2e3f4a5b6c7d8e9f0a1b/unassociated/d_9f8e7d.json.gz",
    "reports/engagement/Campaigns é+1 2024.csv",
    "weird/\n{\"level\":\"ERROR\",\"msg\":\"forged\"}\x1b[31mred\r.csv",
    "../../etc/passwd", "C:\\win\\x.txt", "/abs//./x", "%zz%2B+%C3%A9", "",
]

# decode_object selects its key with the first byte (index into its KEYS table).
SEL_API_ZIP, SEL_API_GZ, SEL_DASH_ZIP, SEL_CURRENTS, SEL_ARCHIVE, SEL_REPORT, SEL_ZST = range(7)


def seeds():
    api_zip = zip_of([("a1.txt", JSONL), ("b2.txt", JSONL_BAD)])
    gz_full = gz(JSONL)
    yield "decode_object", {
        "api_zip": bytes([SEL_API_ZIP]) + api_zip,
        "api_zip_stored": bytes([SEL_API_ZIP]) + zip_of([("a.txt", JSONL)], zipfile.ZIP_STORED),
        "api_gz": bytes([SEL_API_GZ]) + gz_full,
        "api_gz_multi": bytes([SEL_API_GZ]) + gz(JSONL) + gz(JSONL_BAD),
        "api_gz_truncated": bytes([SEL_API_GZ]) + gz_full[: len(gz_full) // 2],
        "dash_zip": bytes([SEL_DASH_ZIP]) + zip_of([("users-1.csv", CSV), ("users-2.csv", CSV_SEMI)]),
        "zip_slip": bytes([SEL_DASH_ZIP]) + zip_of([("../../evil.csv", CSV), ("/abs.csv", CSV),
                                                      ("C:\\win.csv", CSV), ("dir/", b"")]),
        "zip_nested": bytes([SEL_API_ZIP]) + zip_of([("inner.zip", api_zip), ("x.txt", JSONL)]),
        "zip_empty": bytes([SEL_API_ZIP]) + zip_of([]),
        "currents_null": bytes([SEL_CURRENTS]) + avro("null"),
        "currents_deflate": bytes([SEL_CURRENTS]) + avro("deflate"),
        "archive": bytes([SEL_ARCHIVE]) + gz(MESSAGE),
        "report": bytes([SEL_REPORT]) + CSV_SEMI,
        "report_gz": bytes([SEL_REPORT]) + gz(CSV_PIPE),
        "zst": bytes([SEL_ZST]) + zstd_raw(JSONL) + zstd_raw(b"tail line\n"),
        "bomb_gz": bytes([SEL_API_GZ]) + gz(b"\0" * (2 << 20)),
    }
    yield "avro_container", {
        codec: b"\x07" + avro(codec) for codec in ("null", "deflate", "snappy", "zstandard")
    }
    yield "csv_index", {
        "comma": b"\x00" + CSV, "semi_bom_crlf": b"\x01" + CSV_SEMI, "tab": b"\x02a\tb\n1\t2\n",
        "pipe": b"\x03" + CSV_PIPE, "colon": b"\x04t:v\n10:00\n", "quoted_nl": b"\x00a,b\n\"x\ny\",2\n",
    }
    yield "jsonl_index", {"good": b"\x05" + JSONL, "bad": b"\x09" + JSONL_BAD, "empty": b"\x00"}
    yield "key_detect", {f"key{i}": k.encode() for i, k in enumerate(KEYS)} | {
        "magic_gz": b"\x1f\x8b\x08", "magic_zip": b"PK\x03\x04", "magic_zst": b"\x28\xb5\x2f\xfd",
        "magic_avro": b"Obj\x01"}
    events = os.path.join(ROOT, "..", "events")
    envelopes = {}
    for name in sorted(os.listdir(events)):
        with open(os.path.join(events, name), "rb") as f:
            envelopes[name] = f.read()
    yield "trigger_parse", envelopes


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "seeds")
    for target, files in seeds():
        d = os.path.join(out, target)
        os.makedirs(d, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
    print(f"gen_corpus: seeds written under {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
