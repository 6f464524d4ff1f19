//! `code_pages::release_start_up_code` on this test process: the loaded objects' read-only
//! segments are found (this very code among them, nothing writable), and unmapping them
//! leaves far fewer of their pages resident while the code runs on (what it runs is mapped
//! back). Its own test binary:
//! no other test runs code meanwhile.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use std::ops::Range;

use clawgate_host::code_pages::{read_only_segments, release_start_up_code};

/// KiB of `/proc/self/smaps` `Rss` in the mappings that overlap `segments`, and whether every
/// one of those mappings is read-only.
fn resident_kib(segments: &[Range<usize>]) -> (u64, bool) {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
    let (mut kib, mut read_only, mut inside) = (0, true, false);
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let (Some(first), Some(second)) = (words.next(), words.next()) else {
            continue;
        };
        if let Some((lo, hi)) = first.split_once('-')
            && let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
        {
            inside = segments.iter().any(|s| s.start < hi && lo < s.end);
            read_only &= !inside || !second.contains('w');
        } else if inside && first == "Rss:" {
            kib += second.parse::<u64>().expect("an Rss figure");
        }
    }
    (kib, read_only)
}

#[test]
fn start_up_code_is_unmapped_and_mapped_back_on_use() {
    let segments = read_only_segments();
    let here = start_up_code_is_unmapped_and_mapped_back_on_use as *const () as usize;
    assert!(
        segments.iter().any(|s| s.contains(&here)),
        "this function's code is in a listed segment: {segments:x?}"
    );
    // Touch every page once, as a start-up that ran through its code would leave them.
    let page = 4096;
    let sum = segments
        .iter()
        .flat_map(|s| s.clone().step_by(page))
        // SAFETY: every address lies in a mapped, readable segment of a loaded object.
        .map(|a| usize::from(unsafe { std::ptr::read_volatile(a as *const u8) }))
        .sum::<usize>();
    std::hint::black_box(sum);
    let (before, read_only) = resident_kib(&segments);
    assert!(read_only, "every mapping inside the segments is read-only");
    let advised = release_start_up_code();
    let (after, _) = resident_kib(&segments);
    assert!(
        advised >= segments.iter().map(Range::len).sum::<usize>() / 2,
        "{advised} bytes advised"
    );
    assert!(
        after * 2 < before,
        "resident read-only pages: {before} KiB before, {after} KiB after"
    );
}
