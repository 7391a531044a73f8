//! A JSON validator that builds nothing: one pass over a line that is already valid UTF-8,
//! checking RFC 8259's grammar and noting the keys of a top-level object.
//!
//! It answers only "valid": anything it does not accept (a syntax error, a top-level key with an
//! escape it cannot decode) goes to `serde_json`, which gives the verdict and the message
//! ([`super::jsonl::check_line`]). So a record is never rejected here that `serde_json` would
//! accept, and the fuzz target `jsonl_index` checks the other direction against `serde_json`.
//!
//! Its rules are those `serde_json` applies to the values it skips: numbers by their grammar
//! only (`1e400` is valid), escapes by their form (`\ud800` is valid JSON), control characters
//! refused in strings, no nesting limit. A top-level key with escapes is decoded here, a lone
//! surrogate as U+FFFD (serde_json would refuse to decode it, though the line is valid JSON).
//!
//! Strings, most of a Braze record, are scanned eight bytes at a time for `"`, `\` and control
//! characters (SWAR: plain integer arithmetic, the same on x86_64 and arm64).

use super::jsonl::KeySet;

/// Scratch kept between lines: the open containers (`{` or `[`).
#[derive(Default)]
pub(crate) struct Scanner {
    stack: Vec<u8>,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The bytes of `w` that are zero, as their high bits (exact for the lowest one).
#[inline(always)]
fn zero_bytes(w: u64) -> u64 {
    w.wrapping_sub(ONES) & !w & HIGHS
}

/// The bytes of `w` that end or interrupt a string's plain run: `"`, `\`, below 0x20.
#[inline(always)]
fn specials(w: u64) -> u64 {
    zero_bytes(w ^ (ONES * b'"' as u64))
        | zero_bytes(w ^ (ONES * b'\\' as u64))
        | (w.wrapping_sub(ONES * 0x20) & !w & HIGHS)
}

#[inline(always)]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The end of the string whose opening quote is just before `i` (the index after its closing
/// quote), and whether it holds an escape; `None` when it is not a valid string.
#[inline]
fn string_end(b: &[u8], mut i: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    loop {
        while let Some(chunk) = b.get(i..i + 8) {
            let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            let m = specials(w);
            if m != 0 {
                i += (m.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        match *b.get(i)? {
            b'"' => return Some((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                match *b.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        let hex = b.get(i + 2..i + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        i += 6;
                    }
                    _ => return None,
                }
            }
            c if c < 0x20 => return None,
            _ => i += 1,
        }
    }
}

#[inline]
fn digits(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// The end of the number starting at `i`, by JSON's grammar; `None` when it is not one.
fn number_end(b: &[u8], mut i: usize) -> Option<usize> {
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match *b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(b, i + 1),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        let end = digits(b, i + 1);
        if end == i + 1 {
            return None;
        }
        i = end;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        let end = digits(b, i);
        if end == i {
            return None;
        }
        i = end;
    }
    Some(i)
}

/// The text of a string's content whose escapes [`string_end`] checked. Runs of `\uXXXX` are
/// UTF-16, decoded by the standard library: pairs joined, a lone surrogate as U+FFFD.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut units: Vec<u16> = Vec::new();
    let mut rest = raw;
    while let Some(at) = rest.find('\\') {
        let esc = &rest[at + 1..];
        if !units.is_empty() && (at > 0 || !esc.starts_with('u')) {
            out.extend(char::decode_utf16(units.drain(..)).map(|c| c.unwrap_or('\u{FFFD}')));
        }
        out.push_str(&rest[..at]);
        let used = match esc.as_bytes().first() {
            Some(b'u') => {
                let hex = esc.get(1..5).unwrap_or_default();
                units.push(u16::from_str_radix(hex, 16).unwrap_or(0xFFFD));
                5
            }
            Some(&c) => {
                out.push(match c {
                    b'b' => '\u{8}',
                    b'f' => '\u{c}',
                    b'n' => '\n',
                    b'r' => '\r',
                    b't' => '\t',
                    other => other as char,
                });
                1
            }
            None => 0,
        };
        rest = esc.get(used..).unwrap_or_default();
    }
    out.extend(char::decode_utf16(units).map(|c| c.unwrap_or('\u{FFFD}')));
    out.push_str(rest);
    out
}

impl Scanner {
    /// Whether `line` (valid UTF-8) is one JSON value and nothing else but whitespace. The keys
    /// of a top-level object are noted in `keys` as they come (a valid record's are committed
    /// by the caller; on `false` they are discarded by it).
    pub(crate) fn valid(&mut self, line: &str, keys: &mut KeySet) -> bool {
        self.stack.clear();
        let b = line.as_bytes();
        let mut i = skip_ws(b, 0);
        if b.get(i) == Some(&b'{') {
            keys.start();
        }
        'value: loop {
            // A value starts at `i` (after whitespace).
            match *match b.get(i) {
                Some(c) => c,
                None => return false,
            } {
                b'"' => match string_end(b, i + 1) {
                    Some((end, _)) => i = end,
                    None => return false,
                },
                b'{' => {
                    i = skip_ws(b, i + 1);
                    if b.get(i) == Some(&b'}') {
                        i += 1;
                    } else {
                        self.stack.push(b'{');
                        match self.member(line, i, keys) {
                            Some(next) => i = next,
                            None => return false,
                        }
                        continue 'value;
                    }
                }
                b'[' => {
                    i = skip_ws(b, i + 1);
                    if b.get(i) == Some(&b']') {
                        i += 1;
                    } else {
                        self.stack.push(b'[');
                        continue 'value;
                    }
                }
                b't' if b.get(i..i + 4) == Some(b"true") => i += 4,
                b'f' if b.get(i..i + 5) == Some(b"false") => i += 5,
                b'n' if b.get(i..i + 4) == Some(b"null") => i += 4,
                b'-' | b'0'..=b'9' => match number_end(b, i) {
                    Some(end) => i = end,
                    None => return false,
                },
                _ => return false,
            }
            // After a value: close containers, or go on to the next element or member.
            loop {
                i = skip_ws(b, i);
                match (self.stack.last(), b.get(i)) {
                    (None, _) => return i == b.len(),
                    (Some(b'{'), Some(b',')) => {
                        match self.member(line, skip_ws(b, i + 1), keys) {
                            Some(next) => i = next,
                            None => return false,
                        }
                        continue 'value;
                    }
                    (Some(b'['), Some(b',')) => {
                        i = skip_ws(b, i + 1);
                        continue 'value;
                    }
                    (Some(b'{'), Some(b'}')) | (Some(b'['), Some(b']')) => {
                        self.stack.pop();
                        i += 1;
                    }
                    _ => return false,
                }
            }
        }
    }

    /// A member's key and colon at `i`: the index of its value (after whitespace). A key of
    /// the top-level object is noted.
    fn member(&self, line: &str, i: usize, keys: &mut KeySet) -> Option<usize> {
        let b = line.as_bytes();
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let (end, escaped) = string_end(b, i + 1)?;
        if self.stack.len() == 1 {
            if escaped {
                // Rare: decoded here (a lone surrogate, valid JSON, becomes U+FFFD).
                keys.note(&unescape(&line[i + 1..end - 1]));
            } else {
                // The quotes are ASCII: the key between them is a `str` slice as it is.
                keys.note(line.get(i + 1..end - 1)?);
            }
        }
        let colon = skip_ws(b, end);
        if b.get(colon) != Some(&b':') {
            return None;
        }
        Some(skip_ws(b, colon + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// serde_json's verdict on a line as the indexer asks it (the oracle of the fuzz target).
    fn serde_valid(line: &[u8]) -> bool {
        std::str::from_utf8(line).is_ok()
            && serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok()
    }

    fn fast_valid(line: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(line) else {
            return false;
        };
        Scanner::default().valid(text, &mut KeySet::default())
    }

    #[test]
    fn agrees_with_serde_json_on_a_table_of_edges() {
        let cases: &[&[u8]] = &[
            b"{}",
            b" { } ",
            b"[]",
            b"[1,2,3]",
            b"[1,2,]",
            b"[,1]",
            b"{\"a\":1,}",
            b"{\"a\" : [ {\"b\":null} , true , false ] }",
            b"{\"a\":1}x",
            b"{\"a\":1}}",
            b"{\"a\":1",
            b"{\"a\"1}",
            b"{a:1}",
            b"{\"a\":01}",
            b"{\"a\":-0}",
            b"{\"a\":-}",
            b"{\"a\":1.}",
            b"{\"a\":.5}",
            b"{\"a\":1e}",
            b"{\"a\":1e+}",
            b"{\"a\":1E-7}",
            b"{\"a\":1e400}",
            b"{\"a\":-12.5e+3}",
            b"{\"a\":+1}",
            b"{\"a\":tru}",
            b"{\"a\":truex}",
            b"{\"a\":nul}",
            b"{\"a\":\"\\u00e9\\n\\\"\\/\"}",
            b"{\"a\":\"\\ud800\"}",
            b"{\"a\":\"\\x\"}",
            b"{\"a\":\"\\u12G4\"}",
            b"{\"a\":\"\\u12\"}",
            b"{\"a\":\"tab\there\"}",
            b"{\"a\":\"nul\x00\"}",
            b"{\"a\":\"del\x7f\"}",
            b"{\"a\":\"\xc3\xa9t\xc3\xa9 long enough to take the eight-byte path\"}",
            b"{\"a\":\"unterminated",
            b"{\"a\":\"ends in a backslash\\",
            b"\"a string\"",
            b"12",
            b"-1.5e3",
            b"1 2",
            b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
            b"[[]",
            b"[]]",
            b"{\"a\":[}",
            b"{\"a\":{]}",
            b"{\"\\u0041\":1}",
            b"null",
            b"\r\n",
        ];
        for line in cases {
            let serde = serde_valid(line);
            let fast = fast_valid(line);
            // `fast` may only say "valid" where serde_json does; it says "not valid" exactly
            // where serde_json does too here (no rejected case goes to serde_json in vain).
            assert_eq!(fast, serde, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn deep_nesting_has_no_limit_as_in_serde_json_skipping() {
        let mut line = b"{\"a\":".to_vec();
        line.extend(std::iter::repeat_n(b'[', 10_000));
        line.extend(std::iter::repeat_n(b']', 10_000));
        line.push(b'}');
        assert!(fast_valid(&line));
        assert_eq!(fast_valid(&line), serde_valid(&line));
    }

    #[test]
    fn notes_top_level_keys_only_and_decodes_escaped_ones() {
        let mut keys = KeySet::default();
        let mut s = Scanner::default();
        assert!(s.valid(
            "{\"a\":{\"inner\":1},\"b\\u00e9\":[{\"x\":2}],\"c\":\"v\"}",
            &mut keys
        ));
        keys.commit();
        let mut errors = super::super::ErrorList::default();
        assert_eq!(keys.finish(&mut errors), vec!["a", "b\u{e9}", "c"]);
        // A lone surrogate in a top-level key is valid JSON: the key is noted with U+FFFD; a
        // pair is joined; the other escapes are decoded.
        let mut keys = KeySet::default();
        let line = r#"{"\ud800":1,"a\udeee":2,"\ud83d\ude00\n\"\\\/\t\b\f\r":3,"\ud83dx":4}"#;
        assert!(s.valid(line, &mut keys));
        keys.commit();
        let mut errors = super::super::ErrorList::default();
        assert_eq!(
            keys.finish(&mut errors),
            vec![
                "\u{FFFD}",
                "a\u{FFFD}",
                "\u{1F600}\n\"\\/\t\u{8}\u{c}\r",
                "\u{FFFD}x"
            ]
        );
    }

    /// Generated lines, valid and damaged at every position: the scanner never accepts a line
    /// serde_json refuses.
    #[test]
    fn never_accepts_what_serde_json_refuses() {
        let base: &[&[u8]] = &[
            b"{\"external_id\":\"u-1\",\"email\":\"a@b.c\",\"n\":-1.25e-3,\"t\":[true,false,null],\"o\":{\"k\":\"\\u00e9\\\"\"}}",
            b"[\"x\",{\"y\":[1,2,{\"z\":\"\"}]},0]",
        ];
        let subst: &[u8] = b"\"\\{}[],:0-+.eE \x01tu";
        for line in base {
            for pos in 0..line.len() {
                for &c in subst {
                    let mut l = line.to_vec();
                    l[pos] = c;
                    assert!(
                        !fast_valid(&l) || serde_valid(&l),
                        "accepted {:?}",
                        String::from_utf8_lossy(&l)
                    );
                    let mut cut = line.to_vec();
                    cut.truncate(pos);
                    assert!(!fast_valid(&cut) || serde_valid(&cut));
                }
            }
        }
    }
}
