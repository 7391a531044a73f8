//! Hostile and inconsistent zip archives, made byte by byte: each is either read correctly or
//! `failed` with a message naming the inconsistency, never `complete` with fewer records than
//! the archive holds, never `binary`.

use std::io::Write;

use crate::fixtures::*;
use crate::support::*;

const KEY: &str = "segment-export/abc56c0c-rd4a-pb0a-870pdf4db07q/2019-04-25/d9696570-dfb7-45ae-baa2-25e302r2da27-1556044807/114f0226319130e1a4770f2602b5639a.zip";

/// One member as written, with knobs to make its headers lie.
#[derive(Clone)]
struct Member {
    name: Vec<u8>,
    /// The bytes as stored (deflated when `method` is 8).
    stored: Vec<u8>,
    method: u16,
    crc: u32,
    size: u32,
    local_name: Option<Vec<u8>>,
    local_method: Option<u16>,
    local_crc: Option<u32>,
    local_size: Option<u32>,
    /// Point the central entry at another member's local header (by index).
    same_offset_as: Option<usize>,
    /// Written as a local entry only, with no central-directory entry naming it.
    hidden: bool,
    /// General-purpose flags (bit 3: a data descriptor follows; none is written).
    flags: u16,
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn member(name: &str, data: &[u8], deflated: bool) -> Member {
    Member {
        name: name.as_bytes().to_vec(),
        stored: if deflated {
            deflate(data)
        } else {
            data.to_vec()
        },
        method: if deflated { 8 } else { 0 },
        crc: crc32fast::hash(data),
        size: data.len() as u32,
        local_name: None,
        local_method: None,
        local_crc: None,
        local_size: None,
        same_offset_as: None,
        hidden: false,
        flags: 0x0800,
    }
}

#[derive(Default)]
struct Layout {
    /// Bytes before the archive proper.
    prepend: Vec<u8>,
    /// Whether stored offsets count the prepended bytes (`zip -A`) or not (a plain `cat`).
    offsets_include_prepend: bool,
    /// Entry count written in the end record, if not the true one.
    declared_entries: Option<u16>,
    /// A zip64 end record and locator before the end record, whose own values stay real (as
    /// Info-ZIP writes when streaming).
    zip64_records: bool,
    /// The archive comment.
    comment: Vec<u8>,
    /// The order of the central directory (indexes into the members), if not theirs.
    directory_order: Option<Vec<usize>>,
}

fn build(members: &[Member], layout: &Layout) -> Vec<u8> {
    let mut out = layout.prepend.clone();
    let base = if layout.offsets_include_prepend {
        0
    } else {
        layout.prepend.len()
    };
    let mut offsets = Vec::new();
    for m in members {
        offsets.push((out.len() - base) as u32);
        if m.same_offset_as.is_some() {
            continue;
        }
        let name = m.local_name.as_ref().unwrap_or(&m.name);
        out.extend_from_slice(b"PK\x03\x04");
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&m.flags.to_le_bytes());
        out.extend_from_slice(&m.local_method.unwrap_or(m.method).to_le_bytes());
        out.extend_from_slice(&[0, 0, 0x21, 0]);
        out.extend_from_slice(&m.local_crc.unwrap_or(m.crc).to_le_bytes());
        out.extend_from_slice(&(m.stored.len() as u32).to_le_bytes());
        out.extend_from_slice(&m.local_size.unwrap_or(m.size).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&m.stored);
    }
    let cd_start = out.len();
    let order: Vec<usize> = layout
        .directory_order
        .clone()
        .unwrap_or_else(|| (0..members.len()).collect());
    for (i, m) in order
        .iter()
        .map(|&i| (i, &members[i]))
        .filter(|(_, m)| !m.hidden)
    {
        let offset = m.same_offset_as.map(|j| offsets[j]).unwrap_or(offsets[i]);
        out.extend_from_slice(b"PK\x01\x02");
        out.extend_from_slice(&0x031eu16.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&m.flags.to_le_bytes());
        out.extend_from_slice(&m.method.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0x21, 0]);
        out.extend_from_slice(&m.crc.to_le_bytes());
        out.extend_from_slice(&(m.stored.len() as u32).to_le_bytes());
        out.extend_from_slice(&m.size.to_le_bytes());
        out.extend_from_slice(&(m.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attributes
        out.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&m.name);
    }
    let cd_len = out.len() - cd_start;
    let listed = members.iter().filter(|m| !m.hidden).count();
    let count = layout.declared_entries.unwrap_or(listed as u16);
    if layout.zip64_records {
        let record_at = out.len() - base;
        out.extend_from_slice(b"PK\x06\x06");
        out.extend_from_slice(&44u64.to_le_bytes());
        out.extend_from_slice(&[45, 0, 45, 0]);
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&(count as u64).to_le_bytes());
        out.extend_from_slice(&(count as u64).to_le_bytes());
        out.extend_from_slice(&(cd_len as u64).to_le_bytes());
        out.extend_from_slice(&((cd_start - base) as u64).to_le_bytes());
        out.extend_from_slice(b"PK\x06\x07");
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(record_at as u64).to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
    }
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&(cd_len as u32).to_le_bytes());
    out.extend_from_slice(&((cd_start - base) as u32).to_le_bytes());
    out.extend_from_slice(&(layout.comment.len() as u16).to_le_bytes());
    out.extend_from_slice(&layout.comment);
    out
}

fn users(seed: u64, n: usize) -> TextPart {
    users_jsonl(seed, n)
}

/// A `failed` manifest whose errors name `what`; nothing is `binary`, no part claims more than
/// it read.
fn assert_failed_naming(run: &Run, what: &str) {
    run.assert_failed();
    let text = run.all_error_text();
    assert!(
        text.contains(what),
        "the errors name {what:?}; {}",
        run.describe()
    );
    assert_eq!(run.m()["compression"], "zip", "{}", run.describe());
}

#[test]
fn zip_members_sharing_a_name_are_all_parts() {
    let parts: Vec<TextPart> = (0..3).map(|k| users(900 + k, 40 + k as usize)).collect();
    let members = vec![
        member("users.txt", &parts[0].bytes, true),
        member("users.txt", &parts[1].bytes, false),
        member("users.txt~2", &parts[2].bytes, true),
    ];
    let zip = build(&members, &Layout::default());
    let (run, out) = index_bytes_out(&zip, KEY, &[]);
    run.assert_status("complete");
    let names = part_names(&run);
    // Directory order; the second `users.txt` skips `users.txt~2`, which the archive holds.
    assert_eq!(names, ["users.txt", "users.txt~3", "users.txt~2"]);
    for (name, exp) in names.iter().zip(&parts) {
        let p = run.part(name);
        assert_eq!(p["records"], exp.good_records() as u64, "{name}");
        assert_eq!(p["sha256"], sha256_hex(&exp.bytes), "{name}");
        let written = std::fs::read(
            out.path()
                .join(format!("export-fetcher/parts/{KEY}/{name}")),
        )
        .unwrap();
        assert!(written == exp.bytes, "part {name} written byte-identical");
    }
    let total: usize = parts.iter().map(|p| p.good_records()).sum();
    assert_eq!(run.m()["totals"]["records"], total as u64);
    assert_eq!(run.m()["totals"]["parts"], 3);
}

#[test]
fn zip_end_record_count_disagreeing_with_the_directory_is_failed() {
    let (_, members) = numbered_members(910, 20, |_| true);
    for declared in [2u16, 1] {
        let layout = Layout {
            declared_entries: Some(declared),
            ..Layout::default()
        };
        let run = index_bytes(&build(&members, &layout), KEY, &[]);
        assert_failed_naming(&run, &format!("declares {declared} entries"));
        assert!(run.parts().is_empty(), "{}", run.describe());
    }
    // More declared than there are: the directory cannot hold them.
    let layout = Layout {
        declared_entries: Some(4),
        ..Layout::default()
    };
    let run = index_bytes(&build(&members, &layout), KEY, &[]);
    assert_failed_naming(&run, "declares 4 entries");
}

#[test]
fn zip_local_header_disagreeing_with_its_central_entry_is_failed() {
    let good = users(920, 30);
    let bad = users(921, 30);
    type Lie = Box<dyn Fn(&mut Member)>;
    let cases: Vec<(&str, Lie)> = vec![
        (
            "name",
            Box::new(|m| m.local_name = Some(b"other.txt".to_vec())),
        ),
        ("method", Box::new(|m| m.local_method = Some(0))),
        ("size", Box::new(|m| m.local_size = Some(m.size + 1))),
        ("CRC-32", Box::new(|m| m.local_crc = Some(m.crc ^ 1))),
    ];
    for (what, lie) in cases {
        let mut liar = member("b.txt", &bad.bytes, true);
        lie(&mut liar);
        let zip = build(
            &[member("a.txt", &good.bytes, true), liar],
            &Layout::default(),
        );
        let run = index_bytes(&zip, KEY, &[]);
        assert_failed_naming(&run, "local header disagrees");
        assert_failed_naming(&run, what);
        // The good member is still there, exact; the lying one is listed as failed.
        assert_eq!(run.part("a.txt")["records"], good.good_records() as u64);
        assert!(
            run.errors().iter().any(|e| e["part"] == "b.txt"),
            "{}",
            run.describe()
        );
    }
}

#[test]
fn zip_directory_entry_holding_data_is_failed() {
    let data = users(930, 25);
    let zip = build(
        &[
            member("a.txt", &data.bytes, true),
            member("folder/", &data.bytes, true),
        ],
        &Layout::default(),
    );
    let run = index_bytes(&zip, KEY, &[]);
    assert_failed_naming(&run, "named as a directory but holds");
}

#[test]
fn zip_overlapping_member_data_is_failed() {
    // The overlapping-file bomb: many central entries share one local header and its data.
    let data = users(940, 50);
    let mut members = vec![member("base.txt", &data.bytes, true)];
    for k in 1..20 {
        let mut m = member("base.txt", &data.bytes, true);
        m.name = format!("copy{k}.txt").into_bytes();
        m.local_name = Some(b"base.txt".to_vec());
        m.same_offset_as = Some(0);
        members.push(m);
    }
    let run = index_bytes(&build(&members, &Layout::default()), KEY, &[]);
    assert_failed_naming(&run, "overlap");
    assert!(run.parts().is_empty(), "{}", run.describe());

    // Entries whose data runs into the next local header.
    let a = member("a.txt", &data.bytes, false);
    let b = member("b.txt", b"small\n", false);
    // Claim the first member is larger than it is: its data would cover b's header.
    let mut zip = build(&[a.clone(), b], &Layout::default());
    // Rewrite a's compressed and uncompressed sizes in both headers to reach into b.
    let grown = (a.stored.len() + 40) as u32;
    let cd = zip
        .windows(4)
        .position(|w| w == b"PK\x01\x02")
        .expect("central directory");
    zip[cd + 20..cd + 24].copy_from_slice(&grown.to_le_bytes());
    zip[cd + 24..cd + 28].copy_from_slice(&grown.to_le_bytes());
    zip[18..22].copy_from_slice(&grown.to_le_bytes());
    zip[22..26].copy_from_slice(&grown.to_le_bytes());
    let run = index_bytes(&zip, KEY, &[]);
    assert_failed_naming(&run, "overlap");
}

#[test]
fn zip_with_prepended_data_is_read_with_corrected_offsets() {
    let (parts, members) = numbered_members(950, 30, |k| k != 1);
    let stub = b"#!/bin/sh\necho self-extracting\nexit 0\n".repeat(30);
    for offsets_include_prepend in [false, true] {
        let layout = Layout {
            prepend: stub.clone(),
            offsets_include_prepend,
            ..Layout::default()
        };
        let zip = build(&members, &layout);
        assert_all_parts(&index_bytes(&zip, KEY, &[]), &parts);
    }
}

#[test]
fn zip_of_many_small_members_shares_one_expansion_budget() {
    // 3,000 members of 64 KiB of zeros: each is far below the ratio floor, together they
    // expand ~190 MiB from a few hundred KiB, well over 250x the object.
    let zeros = vec![0u8; 64 << 10];
    let one = member("z", &zeros, true);
    let members: Vec<Member> = (0..3000)
        .map(|k| Member {
            name: format!("z{k:04}.bin").into_bytes(),
            ..one.clone()
        })
        .collect();
    let zip = build(&members, &Layout::default());
    assert!(zip.len() < 2 << 20, "fixture is small: {}", zip.len());
    let (run, out) = index_bytes_out(&zip, KEY, &[]);
    assert_failed_naming(&run, "MAX_EXPANSION_RATIO");
    assert!(
        walk_files(&out.path().join("export-fetcher/parts")).is_empty(),
        "nothing written before the budget was checked"
    );
    // The same members whose headers understate their sizes are stopped while they stream.
    let liars: Vec<Member> = members
        .iter()
        .map(|m| Member {
            size: 1,
            local_size: Some(1),
            ..m.clone()
        })
        .collect();
    let run = index_bytes(&build(&liars, &Layout::default()), KEY, &[]);
    run.assert_failed();
    assert_eq!(run.m()["totals"]["records"], 0, "{}", run.describe());
}

#[test]
fn zip_local_entry_named_by_no_directory_entry_is_failed() {
    // A member between two listed ones that the central directory does not name: reading the
    // directory alone would index fewer records than the archive holds.
    let (parts, mut members) = numbered_members(960, 30, |_| true);
    for hidden in [1, 2] {
        members.iter_mut().for_each(|m| m.hidden = false);
        members[hidden].hidden = true;
        let run = index_bytes(&build(&members, &Layout::default()), KEY, &[]);
        assert_failed_naming(&run, "belongs to no central directory entry");
    }
    // Data descriptors between members are not mistaken for hidden members.
    let zip = zip_streaming(&[("a.txt", &parts[0].bytes), ("b.txt", &parts[1].bytes)]);
    index_bytes(&zip, KEY, &[]).assert_status("complete");
}

/// Three parts of `records` users each (from `seed` on), as members `p0.txt` to `p2.txt`,
/// deflated where `deflated(k)` says.
fn numbered_members(
    seed: u64,
    records: usize,
    deflated: impl Fn(usize) -> bool,
) -> (Vec<TextPart>, Vec<Member>) {
    let parts: Vec<TextPart> = (0..3).map(|k| users(seed + k, records)).collect();
    let members = parts
        .iter()
        .enumerate()
        .map(|(k, p)| member(&format!("p{k}.txt"), &p.bytes, deflated(k)))
        .collect();
    (parts, members)
}

fn three_members(seed: u64) -> (Vec<TextPart>, Vec<Member>) {
    numbered_members(seed, 25, |_| true)
}

fn part_names(run: &Run) -> Vec<&str> {
    run.parts()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect()
}

#[track_caller]
fn assert_all_parts(run: &Run, parts: &[TextPart]) {
    run.assert_status("complete");
    for (k, exp) in parts.iter().enumerate() {
        let p = run.part(&format!("p{k}.txt"));
        assert_eq!(
            p["records"],
            exp.good_records() as u64,
            "{}",
            run.describe()
        );
        assert_eq!(p["sha256"], sha256_hex(&exp.bytes));
    }
}

#[test]
fn zip_standard_variants_are_read_in_full() {
    let (parts, members) = three_members(970);
    // Info-ZIP streaming: zip64 records whose 32-bit twins are real; with prepended data too.
    for prepend in [Vec::new(), b"#!/bin/sh\nexit 0\n".repeat(10)] {
        let layout = Layout {
            zip64_records: true,
            prepend,
            ..Layout::default()
        };
        assert_all_parts(&index_bytes(&build(&members, &layout), KEY, &[]), &parts);
    }
    // A self-extracting stub and an archive comment (one that even holds an end signature).
    let layout = Layout {
        prepend: b"MZ stub of a self-extractor".repeat(40),
        comment: b"made by a tool; PK\x05\x06 in a comment".to_vec(),
        ..Layout::default()
    };
    let run = index_bytes(&build(&members, &layout), KEY, &[]);
    assert_eq!(run.m()["compression"], "zip", "{}", run.describe());
    assert_all_parts(&run, &parts);
    // A directory listed in another order than the data: read front to back, listed in
    // directory order.
    let layout = Layout {
        directory_order: Some(vec![2, 0, 1]),
        ..Layout::default()
    };
    let run = index_bytes(&build(&members, &layout), KEY, &[]);
    assert_all_parts(&run, &parts);
    assert_eq!(part_names(&run), ["p2.txt", "p0.txt", "p1.txt"]);
}

#[test]
fn zip_hidden_members_in_every_hiding_place_are_failed() {
    let (_, members) = three_members(980);
    let hidden = |m: &Member| Member {
        hidden: true,
        name: b"hidden.txt".to_vec(),
        ..m.clone()
    };
    // Before the first listed entry.
    let mut before = vec![hidden(&members[0])];
    before.extend(members.iter().cloned());
    let run = index_bytes(&build(&before, &Layout::default()), KEY, &[]);
    assert_failed_naming(&run, "hidden member");
    // Right after a member that claims a data descriptor but has none.
    let mut flagged = members.clone();
    flagged[0].flags |= 0x0008;
    flagged.insert(1, hidden(&members[1]));
    let run = index_bytes(&build(&flagged, &Layout::default()), KEY, &[]);
    assert_failed_naming(&run, "hidden member");
    // Inside a member's compressed size, after its deflate stream ends.
    let mut padded = members.clone();
    let inner = build(&[hidden(&members[1])], &Layout::default());
    let local_entry = &inner[..inner.len() - 22];
    padded[0].stored.extend_from_slice(local_entry);
    let run = index_bytes(&build(&padded, &Layout::default()), KEY, &[]);
    assert_failed_naming(&run, "continues past the end of its compressed stream");
    // After a directory entry.
    let mut with_dir = vec![member("dir/", b"", false)];
    with_dir.push(hidden(&members[0]));
    with_dir.extend(members.iter().cloned());
    let run = index_bytes(&build(&with_dir, &Layout::default()), KEY, &[]);
    assert_failed_naming(&run, "hidden member");
}

#[test]
fn zip_whose_members_all_fail_stops_early_with_a_bounded_manifest() {
    // 300 members that each lie about their size: the object fails on the first; after 100
    // failed members the rest is left unread, and the manifest stays small.
    let lying: Vec<Member> = (0..300)
        .map(|k| Member {
            size: 1,
            local_size: Some(1),
            ..member(&format!("m{k:03}.txt"), b"two bytes or more\n", true)
        })
        .collect();
    let run = index_bytes(&build(&lying, &Layout::default()), KEY, &[]);
    assert_failed_naming(
        &run,
        "stopped after 100 members failed: 200 of 300 members were not read",
    );
    assert_eq!(run.parts().len(), 100, "{}", run.describe());
    assert!(run.errors().len() <= 101, "{}", run.errors().len());
    assert!(
        run.stdout.len() < 256 << 10,
        "manifest of {} bytes",
        run.stdout.len()
    );
}
