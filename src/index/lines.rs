//! Plain text lines: every line is a record (empty ones too); a last line without `\n` counts.

use std::io::BufRead;

use super::{Indexed, LineFramer, Offsets, Options};

pub fn index<R: BufRead>(r: &mut R, opts: &Options) -> Indexed {
    let mut out = Indexed::default();
    let mut offsets = Offsets::new(opts.offset_interval);
    // Line content is not needed: lines of any length are counted without being held.
    let result = LineFramer::new(u64::MAX, false).run(r, |line| {
        offsets.record_at(out.records, line.start);
        out.records += 1;
    });
    out.fatal = result.err();
    out.offsets = offsets.into_vec();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lines_like_wc_plus_an_unterminated_last_line() {
        let opts = Options {
            offset_interval: 2,
            max_record_bytes: 4,
            budget: crate::decode::Budget::default(),
        };
        let cases: &[(&[u8], u64)] = &[
            (b"", 0),
            (b"a", 1),
            (b"a\n", 1),
            (b"a\n\nb", 3),
            (b"a very long line beyond any limit\nb\n", 2),
        ];
        for (data, want) in cases {
            let out = index(&mut std::io::BufReader::with_capacity(3, *data), &opts);
            assert_eq!(out.records, *want, "{:?}", String::from_utf8_lossy(data));
        }
        let out = index(&mut &b"a\nbb\nccc\n"[..], &opts);
        assert_eq!(out.offsets, vec![[0, 0], [2, 5]]);
    }
}
