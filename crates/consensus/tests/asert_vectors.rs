//! The aserti3-2d specification's published test vectors through our difficulty function.
//! See tests/vectors/README.md for their source.

use cairn_consensus::difficulty::{AsertAnchor, asert_target};
use ruint::aliases::U256;

fn header_value<'a>(lines: &[&'a str], key: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| {
            l.strip_prefix("##")
                .and_then(|r| r.trim().strip_prefix(key))
                .map(|v| v.trim_start_matches(':').trim())
        })
        .unwrap_or_else(|| panic!("missing header {key}"))
}

fn parse_bits(s: &str) -> u32 {
    u32::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex bits")
}

#[test]
fn all_published_runs_match() {
    // Bitcoin Cash mainnet pow limit: 32 zero bits then all ones.
    let mut limit = [0xffu8; 32];
    limit[..4].fill(0);
    let pow_limit = U256::from_be_bytes(limit);
    let mut checked = 0usize;
    for run in 1..=12 {
        let path = format!(
            "{}/tests/vectors/aserti3-2d/run{run:02}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).expect("vector file");
        let lines: Vec<&str> = text.lines().collect();
        let anchor = AsertAnchor {
            height: header_value(&lines, "anchor height")
                .parse()
                .expect("height"),
            parent_time: header_value(&lines, "anchor parent time")
                .parse()
                .expect("time"),
            bits: parse_bits(header_value(&lines, "anchor nBits")),
        };
        let iterations: usize = header_value(&lines, "iterations")
            .parse()
            .expect("iterations");
        let mut rows = 0;
        for line in lines
            .iter()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            let height: u64 = f[1].parse().expect("height");
            let time: i64 = f[2].parse().expect("time");
            let expected = parse_bits(f[3]);
            let got = asert_target(anchor, height, time, 600, 172_800, pow_limit).to_compact();
            assert_eq!(got, expected, "run{run:02} line {line:?}: got {got:#010x}");
            rows += 1;
        }
        assert_eq!(rows, iterations, "run{run:02} row count");
        checked += rows;
    }
    assert_eq!(checked, 14_000);
}
