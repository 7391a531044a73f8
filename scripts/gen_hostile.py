#!/usr/bin/env python3
"""Writes hostile inputs for `export-fetcher index` (see scripts/hostile.sh).

    python3 scripts/gen_hostile.py OUTDIR

Every file is at most MAX_FILE bytes (the "≤ 2 MB compressed" of the resource goal) and the
output is deterministic (fixed timestamps, fixed sync markers, no randomness). OUTDIR/cases.tsv
lists one case a line:

    file <TAB> key <TAB> expected <TAB> what

`expected` is `failed`, `partial`, `complete`, `any-not-complete` (anything but `complete`) or
`any` (valid data where only the resource bounds are under test). Keys follow Braze's layouts
(the case table in src/detect.rs) so that detection takes the path a real object would.

Standard library only. Huge repetitive streams are built without compressing all of their bytes:
a chunk is deflated once and ended with a full flush, which resets the compressor, so the next
identical chunk deflates to identical bytes and can be repeated. zstd cases need the `zstd` CLI
or the `zstandard` module; without either they are skipped with a note on stderr.
"""

import base64
import io
import os
import random
import shutil
import struct
import subprocess
import sys
import threading
import zlib

MAX_FILE = 2_000_000
MIB = 1 << 20
DOS_TIME, DOS_DATE = 0x6000, 0x5B82  # 2025-12-02 12:00:00, fixed for determinism

# Braze-shaped keys.
SEG = "5f3c2a9e-0b1d-4e7a-9c3f-2d8e6b1a7c40"
EXPORT_DIR = f"segment-export/{SEG}/2026-11-30/d9696570-dfb7-45ae-baa2-25e302a2da27-1764460800"
API_GZ = EXPORT_DIR + "/114f0226319130e1a4770f2602b5639a.gz"
API_ZIP = EXPORT_DIR + "/9e107d9d372bb6826bd81d3542a419d6.zip"
DASH_ZIP = f"segment-export/{SEG}/2026-11-30/users-k3j9x2.zip"
INTEGRATION = "dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5"
CURRENTS = (
    f"currents-export/{INTEGRATION}/event_type=users.messages.pushnotification.Send/"
    f"date=2026-11-30-17/version=6/us-01/{INTEGRATION}+0+123456.avro"
)


# ---------------------------------------------------------------- deflate of repeated chunks


def repeated_deflate(chunk, count, level=9):
    """Raw deflate of `chunk` repeated `count` times (the final block included), its CRC-32."""
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    first = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    second = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    assert first == second, "a full flush did not reset the compressor"
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(chunk, crc)
    return first * count + c.flush(), crc


def fitting_count(chunk, budget, level=9):
    """How many copies of `chunk` deflate into `budget` bytes."""
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    per = len(c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH))
    return max(1, budget // per)


def gzip_member(raw_deflate, crc, size):
    header = b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x02\x03"
    return header + raw_deflate + struct.pack("<II", crc, size & 0xFFFFFFFF)


def gzip_bytes(data, level=9):
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return gzip_member(c.compress(data) + c.flush(), zlib.crc32(data), len(data))


def gzip_parts(parts, level=9):
    """One gzip member of the concatenation of `parts`: (bytes, count) pairs or bytes; a pair
    with a large count is deflated once and repeated (see repeated_deflate)."""
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    out, crc, size = [], 0, 0
    for part in parts:
        chunk, count = part if isinstance(part, tuple) else (part, 1)
        a = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
        out.append(a)
        if count > 1:
            # The first copy may lean on what came before; from the second on, each copy starts
            # from a reset compressor and deflates to the same bytes.
            b = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
            assert b == c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH), "no reset on full flush"
            out.append(b * (count - 1))
        for _ in range(count):
            crc = zlib.crc32(chunk, crc)
        size += len(chunk) * count
    out.append(c.flush())
    return gzip_member(b"".join(out), crc, size)


# ---------------------------------------------------------------- zip, by hand


def local_header(name, method, crc, csize, usize, flags=0x0800):
    n = name.encode()
    return (
        struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50, 20, flags, method, DOS_TIME, DOS_DATE, crc, csize, usize, len(n), 0,
        )
        + n
    )


def central_header(name, method, crc, csize, usize, offset, flags=0x0800):
    n = name.encode()
    return (
        struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50, 0x031E, 20, flags, method, DOS_TIME, DOS_DATE, crc, csize, usize,
            len(n), 0, 0, 0, 0, 0o100644 << 16, offset,
        )
        + n
    )


def eocd(entries, cd_size, cd_offset, total=None):
    total = entries if total is None else total
    return struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, total, total, cd_size, cd_offset, 0)


def zip_archive(members):
    """members: (name, method, raw_data, crc, usize). Returns the archive bytes."""
    body, central = io.BytesIO(), io.BytesIO()
    for name, method, data, crc, usize in members:
        offset = body.tell()
        body.write(local_header(name, method, crc, len(data), usize))
        body.write(data)
        central.write(central_header(name, method, crc, len(data), usize, offset))
    cd = central.getvalue()
    return body.getvalue() + cd + eocd(len(members), len(cd), body.tell())


def deflated(data, level=9):
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


# ---------------------------------------------------------------- Avro, by hand


def zigzag(n):
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def avro_string(s):
    b = s.encode() if isinstance(s, str) else s
    return zigzag(len(b)) + b


SYNC = bytes.fromhex("8f3a1c55e2d047b69a0b7e4d21c6f3a8")


def avro_header(schema_json, codec):
    meta = [(b"avro.schema", schema_json.encode()), (b"avro.codec", codec.encode())]
    out = b"Obj\x01" + zigzag(len(meta))
    for k, v in meta:
        out += avro_string(k) + avro_string(v)
    return out + zigzag(0) + SYNC


def avro_block(count, data):
    return zigzag(count) + zigzag(len(data)) + data + SYNC


def huge_bytes_record(n):
    """Raw deflate of one record of BYTES_SCHEMA whose value is `n` zeros (n: MiB multiple)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    prefix = c.compress(zigzag(n)) + c.flush(zlib.Z_FULL_FLUSH)
    chunk = 16 * MIB if n % (16 * MIB) == 0 else MIB
    assert n % chunk == 0
    raw, _ = repeated_deflate(bytes(chunk), n // chunk)
    return prefix + raw


BYTES_SCHEMA = '{"type":"record","name":"r","fields":[{"name":"b","type":"bytes"}]}'
EMPTY_SCHEMA = '{"type":"record","name":"e","fields":[]}'
SEND_SCHEMA = (
    '{"type":"record","name":"Send","namespace":"dataexport.S3.inner.users.messages.'
    'pushnotification","fields":[{"name":"id","type":"string"},{"name":"user_id","type":'
    '"string"},{"name":"external_user_id","type":["null","string"],"default":null},{"name":'
    '"time","type":"int"},{"name":"app_group_id","type":"string"},{"name":"platform","type":'
    '["null","string"],"default":null}]}'
)


# ---------------------------------------------------------------- the cases


def user_line(i):
    return (
        '{"external_id":"user-%06d","braze_id":"5e1f%020x","email":"u%d@example.com",'
        '"first_name":"Ada","country":"FR","created_at":"2020-07-10 15:00:00.000 UTC",'
        '"custom_attributes":{"plan":"pro","visits":%d},"purchases":[{"name":"tee","first":'
        '"2021-09-05T03:45:50.540Z","last":"2021-09-05T03:45:50.540Z","count":1}]}\n' % (i, i, i, i)
    ).encode()


def cases(out, note):
    """Yields (file, key, expected, what) after writing each file under `out`."""

    def write(name, data):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        return name

    zeros16 = bytes(16 * MIB)

    # 1. gzip bomb: one member of zeros, as large as fits.
    n = fitting_count(zeros16, MAX_FILE - 64)
    raw, crc = repeated_deflate(zeros16, n)
    yield (write("01-gzip-bomb.gz", gzip_member(raw, crc, n * len(zeros16))), API_GZ, "failed",
           f"gzip of {n * 16} MiB of zeros (MAX_EXPANSION_RATIO)")

    # 2. multi-member gzip bomb: many members of 4 MiB of zeros each.
    member = gzip_bytes(bytes(4 * MIB))
    n = (MAX_FILE - 64) // len(member)
    yield (write("02-gzip-multimember-bomb.gz", member * n), API_GZ, "failed",
           f"{n} gzip members of 4 MiB of zeros ({n * 4} MiB)")

    # 3. zip bomb: one deflated member of 1 GiB of zeros.
    raw, crc = repeated_deflate(zeros16, 64)
    yield (write("03-zip-bomb.zip", zip_archive([("users-0.txt", 8, raw, crc, 1 << 30)])),
           API_ZIP, "failed", "one deflated member of 1 GiB of zeros")

    # 4. overlapping-file zip bomb: 1,000 central entries, all pointing at one local header
    # whose member expands to 256 MiB (with honest sizes: 250 GiB declared).
    raw, crc = repeated_deflate(zeros16, 16)
    usize = 256 * MIB
    body = local_header("k.txt", 8, crc, len(raw), usize) + raw
    cd = b"".join(
        central_header("users-%04d.txt" % i, 8, crc, len(raw), usize, 0) for i in range(1000)
    )
    yield (write("04-zip-overlap-bomb.zip", body + cd + eocd(1000, len(cd), len(body))),
           API_ZIP, "failed", "1,000 central entries share one 256 MiB local file (Fifield)")

    # 4b. the same, but the central directory lies: each entry declares 1 KiB.
    cd = b"".join(
        central_header("users-%04d.txt" % i, 8, crc, len(raw), 1024, 0) for i in range(1000)
    )
    yield (write("04b-zip-overlap-lying.zip", body + cd + eocd(1000, len(cd), len(body))),
           API_ZIP, "failed", "overlapping entries that declare 1 KiB each but expand to 256 MiB")

    # 5. 10,000 members of 64 KiB of zeros (655 MB in all: the sum is the bomb).
    d = deflated(bytes(64 * 1024))
    crc = zlib.crc32(bytes(64 * 1024))
    data = zip_archive([("p%04d.txt" % i, 8, d, crc, 64 * 1024) for i in range(10_000)])
    yield (write("05-zip-10000-members.zip", data), DASH_ZIP, "failed",
           "10,000 members of 64 KiB of zeros each (625 MiB in all)")

    # 5b. the same members declaring 64 bytes each (the sizes lie; streaming must stop them).
    body, central = io.BytesIO(), io.BytesIO()
    for i in range(10_000):
        off = body.tell()
        body.write(local_header("p%04d.txt" % i, 8, crc, len(d), 64) + d)
        central.write(central_header("p%04d.txt" % i, 8, crc, len(d), 64, off))
    cdb = central.getvalue()
    data = body.getvalue() + cdb + eocd(10_000, len(cdb), body.tell())
    yield (write("05b-zip-10000-members-lying.zip", data), DASH_ZIP, "failed",
           "10,000 members that declare 64 bytes but expand to 64 KiB each")

    # 6. an EOCD that declares 65,535 entries over a directory of 3.
    members = [("users-%d.txt" % i, 0, user_line(i), zlib.crc32(user_line(i)), len(user_line(i)))
               for i in range(3)]
    good = zip_archive(members)
    cut = len(good) - 22
    _, _, _, _, _, cd_size, cd_off, _ = struct.unpack("<IHHHHIIH", good[cut:])
    yield (write("06-zip-eocd-65535.zip", good[:cut] + eocd(3, cd_size, cd_off, total=0xFFFF)),
           API_ZIP, "failed", "EOCD declares 65,535 entries; the directory holds 3")

    # 6b. an EOCD that declares 60,000 entries over a directory of 3 (not the zip64 marker).
    yield (write("06b-zip-eocd-60000.zip", good[:cut] + eocd(3, cd_size, cd_off, total=60_000)),
           API_ZIP, "failed", "EOCD declares 60,000 entries; the directory holds 3")

    # 6c. 10,001 real (empty, stored) entries: one more than MAX_ARCHIVE_ENTRIES.
    data = zip_archive([("e%05d.txt" % i, 0, b"", 0, 0) for i in range(10_001)])
    yield (write("06c-zip-10001-entries.zip", data), DASH_ZIP, "failed",
           "10,001 empty entries (MAX_ARCHIVE_ENTRIES 10,000)")

    # 6d. a zip64 end record that declares 2^40 entries.
    body = good[: cd_off + cd_size]
    z64_at = len(body)
    z64 = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, 1 << 40, 1 << 40,
                      cd_size, cd_off)
    loc = struct.pack("<IIQI", 0x07064B50, 0, z64_at, 1)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    yield (write("06d-zip64-2e40-entries.zip", body + z64 + loc + end), API_ZIP, "failed",
           "zip64 end record declares 2^40 entries")

    # 7. CSV: an unclosed quote, then 600 MB of `x`.
    xs = b"x" * (16 * MIB)
    n = min(36, fitting_count(xs, MAX_FILE - 200))
    yield (write("07-csv-unclosed-quote.csv.gz", gzip_parts([b'a,b\n"', (xs, n)])),
           "reports/x.csv.gz", "any-not-complete",
           f'a,b then an unclosed quote and {n * 16} MiB of x')

    # 8. CSV with a 100 MB header line: 300,000 distinct names, then repeated ones.
    distinct = b",".join(b"c%x" % i for i in range(300_000))
    pad = b",pad" * (4 * MIB)  # 16 MiB
    n = (100 * MIB - len(distinct)) // len(pad)
    data = gzip_parts([distinct, (pad, n), b"\n1,2\n"])
    yield (write("08-csv-100mb-header.csv.gz", data),
           "reports/engagement/campaigns.csv.gz", "any-not-complete",
           f"a {(len(distinct) + n * len(pad)) // MIB} MiB header line (300,000 distinct names)")

    # 8b. CSV with a wide header under MAX_RECORD_BYTES: as many distinct columns as fit.
    for cols in (900_000, 800_000, 700_000):
        header = b",".join(b"c%x" % i for i in range(cols))
        data = gzip_bytes(header + b"\n" + b",".join(b"1" for _ in range(cols)) + b"\n")
        if len(data) <= MAX_FILE:
            break
    yield (write("08b-csv-wide-header.csv.gz", data), "reports/engagement/canvases.csv.gz",
           "any", f"{cols:,} distinct columns ({len(header) // MIB} MiB header), one row")

    # 8c. JSON lines: one object with as many distinct keys as fit.
    for keys in (950_000, 900_000, 850_000):
        line = b"{" + b",".join(b'"k%x":0' % i for i in range(keys)) + b"}\n"
        data = gzip_bytes(line)
        if len(data) <= MAX_FILE:
            break
    yield (write("08c-jsonl-wide-object.gz", data), API_GZ, "any",
           f"one JSON line with {keys:,} distinct keys ({len(line) // MIB} MiB)")

    # 8d. JSON lines: as many lines as fit, each with a new key.
    for keys in (900_000, 850_000, 800_000):
        data = gzip_bytes(b"".join(b'{"k%x":0}\n' % i for i in range(keys)))
        if len(data) <= MAX_FILE:
            break
    yield (write("08d-jsonl-distinct-keys.gz", data), API_GZ, "any",
           f"{keys:,} JSON lines, each with a key never seen before")

    # 9. JSON lines: one 200 MB line.
    data = gzip_parts([b'{"a":"', (xs, 12), b"x" * (8 * MIB), b'"}\n', user_line(1)])
    yield (write("09-jsonl-200mb-line.gz", data), API_GZ, "any-not-complete",
           "one 200 MiB JSON line (MAX_RECORD_BYTES), then a good one")

    # 9b. the same line, opened by 1.2 MB of base64 noise: the object is then large enough that
    # MAX_EXPANSION_RATIO lets the whole line through, and MAX_RECORD_BYTES must stop it.
    noise = base64.b64encode(random.Random(9).randbytes(900_000))
    data = gzip_parts([b'{"a":"', noise, (xs, 12), b"x" * (8 * MIB), b'"}\n', user_line(1)])
    yield (write("09b-jsonl-200mb-line-noisy.gz", data), API_GZ, "any-not-complete",
           "one 200 MiB JSON line that starts with 1.2 MB of base64, then a good one")

    # 10. Avro, deflate: 64 blocks of 16 Mi records of empty bytes (1 GiB of zeros).
    raw = deflated(zeros16)
    data = avro_header(BYTES_SCHEMA, "deflate") + avro_block(16 * MIB, raw) * 64
    yield (write("10-avro-deflate-bomb.avro", data), CURRENTS, "failed",
           "64 deflate blocks of 16 Mi empty-bytes records (1 GiB of zeros)")

    # 10b. Avro, deflate: one record whose `bytes` value is 1 GiB of zeros.
    data = avro_header(BYTES_SCHEMA, "deflate") + avro_block(1, huge_bytes_record(1 << 30))
    yield (write("10b-avro-deflate-one-huge-record.avro", data), CURRENTS, "failed",
           "one deflate block: one record of 1 GiB of zeros")

    # 10c. Avro: an empty-record schema, one block claiming 2^40 records of 0 bytes.
    data = avro_header(EMPTY_SCHEMA, "null") + avro_block(1 << 40, b"")
    yield (write("10c-avro-empty-records-2e40.avro", data), CURRENTS, "failed",
           "one block of 2^40 empty records")

    # 10d. Avro: 50,000 blocks, each claiming 33,000,000 empty records (1.65e12 in all).
    data = avro_header(EMPTY_SCHEMA, "null") + avro_block(33_000_000, b"") * 50_000
    yield (write("10d-avro-empty-records-many-blocks.avro", data), CURRENTS, "failed",
           "50,000 blocks of 33,000,000 empty records each (just under MAX_RECORD_BYTES)")

    # 10e. sanity: a valid null-codec Currents file.
    recs = b""
    for i in range(1000):
        recs += (avro_string("6f1c%028x" % i) + avro_string("5e1f%020x" % i)
                 + zigzag(1) + avro_string("user-%06d" % i) + zigzag(1764522000 + i)
                 + avro_string("5e1f0000000000000000abcd") + zigzag(1) + avro_string("ios"))
    data = avro_header(SEND_SCHEMA, "null") + avro_block(1000, recs)
    yield (write("10e-avro-null-valid.avro", data), CURRENTS, "complete",
           "sanity: 1,000 push Send events, null codec")

    # 10f. the same with 400 MiB: under apache_avro's own 512 MiB allocation cap, so only
    # MAX_RECORD_BYTES stands between the value and memory.
    data = avro_header(BYTES_SCHEMA, "deflate") + avro_block(1, huge_bytes_record(400 * MIB))
    yield (write("10f-avro-deflate-400mib-record.avro", data), CURRENTS, "failed",
           "one deflate block: one record of 400 MiB of zeros (under apache_avro's 512 MiB cap)")

    # 10g. valid: one record of 30 MiB, just under MAX_RECORD_BYTES.
    data = avro_header(BYTES_SCHEMA, "deflate") + avro_block(1, huge_bytes_record(30 * MIB))
    yield (write("10g-avro-deflate-30mib-record.avro", data), CURRENTS, "any",
           "one deflate block: one valid record of 30 MiB (just under MAX_RECORD_BYTES)")

    # 11. zstd.
    yield from zstd_cases(out, write, note)

    # 12. a self-extracting-style zip: a shell stub before the archive (as `cat stub a.zip`).
    stub = b"#!/bin/sh\n# self-extracting archive\nexec unzip -o \"$0\"\nexit 0\n" + bytes(200)
    lines = b"".join(user_line(i) for i in range(500))
    crc = zlib.crc32(lines)
    yield (write("12-zip-sfx-stub.zip", stub + zip_archive([("users-0.txt", 8, deflated(lines),
                                                             crc, len(lines))])),
           API_ZIP, "complete", "sanity: a shell stub before a valid 500-user zip")

    # 12b. the same with offsets adjusted to the whole file (as `zip -A` does).
    body = stub + local_header("users-0.txt", 8, crc, len(deflated(lines)), len(lines))
    body += deflated(lines)
    cd = central_header("users-0.txt", 8, crc, len(deflated(lines)), len(lines), len(stub))
    yield (write("12b-zip-sfx-adjusted.zip", body + cd + eocd(1, len(cd), len(body))),
           API_ZIP, "complete", "sanity: a shell stub, offsets adjusted (zip -A)")

    # Sanity: a plain gzip API export.
    yield (write("13-gzip-valid.gz", gzip_bytes(b"".join(user_line(i) for i in range(2000)))),
           API_GZ, "complete", "sanity: 2,000 users, gzip")


def zstd_cases(out, write, note):
    try:
        import zstandard  # noqa: F401  (optional)
    except ImportError:
        zstandard = None
    cli = shutil.which("zstd")
    if zstandard is None and cli is None:
        note("zstd: neither the zstandard module nor the zstd CLI is available; zstd cases skipped")
        return

    def compress(parts, level, wlog=None):
        """zstd of the concatenation of `parts`, (bytes, count) pairs."""
        if zstandard is not None:
            params = zstandard.ZstdCompressionParameters.from_level(level, window_log=wlog or 0)
            buf = io.BytesIO()
            w = zstandard.ZstdCompressor(compression_params=params).stream_writer(buf)
            for chunk, count in parts:
                for _ in range(count):
                    w.write(chunk)
            w.flush(zstandard.FLUSH_FRAME)
            return buf.getvalue()
        cmd = [cli, "-q", "-c", f"-{level}"] + ([f"--zstd=wlog={wlog}"] if wlog else [])
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        result = []
        reader = threading.Thread(target=lambda: result.append(p.stdout.read()))
        reader.start()
        for chunk, count in parts:
            for _ in range(count):
                p.stdin.write(chunk)
        p.stdin.close()
        reader.join()
        if p.wait() != 0:
            raise RuntimeError(f"{cmd} failed")
        return result[0]

    zeros16 = bytes(16 * MIB)
    data = compress([(zeros16, 256)], 1)
    yield (write("11-zstd-bomb.zst", data), "exports/users.jsonl.zst", "failed",
           "zstd of 4 GiB of zeros")
    # A 128 MiB window (the most the decoder accepts), behind 1.5 MB of incompressible bytes so
    # that the expansion ratio lets 256 MiB through: a decoder that allocates the whole window
    # holds twice the memory goal. Valid data: only the bounds are under test.
    noise = random.Random(27).randbytes(1_500_000)
    data = compress([(noise, 1), (zeros16, 16)], 1, wlog=27)
    yield (write("11b-zstd-window-128m.zst", data), "exports/events.bin.zst", "any",
           "zstd with a 128 MiB window (wlog 27): 1.5 MB of noise, then 256 MiB of zeros")


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        sys.exit(2)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rows = []
    for name, key, expected, what in cases(out, lambda m: print(f"gen_hostile: {m}", file=sys.stderr)):
        size = os.path.getsize(os.path.join(out, name))
        assert size <= MAX_FILE, f"{name} is {size} bytes, over {MAX_FILE}"
        assert "\t" not in what and "\n" not in what
        rows.append(f"{name}\t{key}\t{expected}\t{what}\n")
    with open(os.path.join(out, "cases.tsv"), "w") as f:
        f.writelines(rows)
    print(f"gen_hostile: {len(rows)} cases in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
