//! Tests of the checksums and part layouts: composites the worker's own layouts produce verify,
//! and a flipped byte or a wrong size is caught.

use super::*;

fn data(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_u32;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

fn blocks_of(bytes: &[u8], chunk: usize) -> Blocks {
    let mut crc = BlockCrc::default();
    for piece in bytes.chunks(chunk) {
        crc.update(piece);
    }
    crc.finish()
}

fn composite_of(bytes: &[u8], part: usize) -> String {
    let mut concatenated = Vec::new();
    for piece in bytes.chunks(part) {
        concatenated.extend_from_slice(&(checksum(CRC32C, piece) as u32).to_be_bytes());
    }
    let parts = bytes.len().div_ceil(part);
    format!(
        "{}-{parts}",
        encode_crc(checksum(CRC32C, &concatenated) as u32)
    )
}

#[test]
fn crc32c_reference_vector_and_encoding() {
    let blocks = blocks_of(b"123456789", 4);
    assert_eq!(blocks.whole(), 0xE306_9283);
    assert_eq!(encode_crc(0xE306_9283), "4waSgw==");
    assert_eq!(parse_checksum("4waSgw=="), Ok(Expected::Whole(0xE306_9283)));
    assert_eq!(
        parse_checksum("4waSgw==-12"),
        Ok(Expected::Composite {
            crc: 0xE306_9283,
            parts: 12
        })
    );
    // The empty object.
    assert_eq!(blocks_of(b"", 1).whole(), 0);
    assert_eq!(encode_crc(0), "AAAAAA==");
}

#[test]
fn malformed_checksums_are_reported() {
    for bad in [
        "",
        "zz",
        "4waSgw",
        "AAAAAAAA",
        "4waSgw==-",
        "4waSgw==-0",
        "4waSgw==-x",
    ] {
        assert!(parse_checksum(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn blocks_combine_to_the_whole_crc_whatever_the_chunking() {
    let bytes = data(3 * MIB as usize + 12_345);
    let want = checksum(CRC32C, &bytes) as u32;
    for chunk in [1_000, 16_384, MIB as usize, 5 * MIB as usize] {
        let blocks = blocks_of(&bytes, chunk);
        assert_eq!(blocks.len(), bytes.len() as u64);
        assert_eq!(blocks.whole(), want, "chunk {chunk}");
    }
}

#[test]
fn whole_object_checksum_detects_a_flipped_byte() {
    let mut bytes = data(2 * MIB as usize);
    let recorded = encode_crc(checksum(CRC32C, &bytes) as u32);
    let verdict = check(
        &blocks_of(&bytes, 65_536),
        bytes.len() as u64,
        Some(&recorded),
    );
    assert!(matches!(verdict, Verdict::Verified(_)), "{verdict:?}");
    assert_eq!(verdict.checksum_kind(), "whole");
    bytes[1_000_000] ^= 0x20;
    let verdict = check(
        &blocks_of(&bytes, 65_536),
        bytes.len() as u64,
        Some(&recorded),
    );
    assert!(matches!(verdict, Verdict::Mismatch(_)), "{verdict:?}");
}

#[test]
fn size_is_always_checked() {
    let bytes = data(1000);
    let recorded = encode_crc(checksum(CRC32C, &bytes) as u32);
    let blocks = blocks_of(&bytes, 100);
    assert!(matches!(
        check(&blocks, 1001, Some(&recorded)),
        Verdict::Mismatch(_)
    ));
    assert!(matches!(check(&blocks, 1000, None), Verdict::SizeOnly(_)));
    assert!(matches!(check(&blocks, 999, None), Verdict::Mismatch(_)));
    assert!(matches!(
        check(&blocks, 1000, Some("???")),
        Verdict::SizeOnly(_)
    ));
}

#[test]
fn composite_checksums_of_the_workers_layouts_verify() {
    let bytes = data(21 * MIB as usize + 4_321);
    // The default 8 MiB parts, 5 MiB parts (the smallest), and 7 MiB parts.
    for part in [8, 5, 7] {
        let recorded = composite_of(&bytes, part * MIB as usize);
        let verdict = check(
            &blocks_of(&bytes, 10_000),
            bytes.len() as u64,
            Some(&recorded),
        );
        assert!(
            matches!(&verdict, Verdict::Verified(how) if how.contains(&format!("{part} MiB"))),
            "{part} MiB: {verdict:?}"
        );
        assert_eq!(verdict.checksum_kind(), "composite");
    }
    // One part (an 8 MiB file uploaded as a one-part multipart upload).
    let one = data(8 * MIB as usize);
    let recorded = composite_of(&one, 8 * MIB as usize);
    assert!(recorded.ends_with("-1"));
    assert!(matches!(
        check(&blocks_of(&one, 4096), one.len() as u64, Some(&recorded)),
        Verdict::Verified(_)
    ));
}

#[test]
fn composite_checksum_detects_a_flipped_byte() {
    let mut bytes = data(17 * MIB as usize);
    let recorded = composite_of(&bytes, 8 * MIB as usize);
    bytes[9 * MIB as usize] ^= 1;
    let verdict = check(
        &blocks_of(&bytes, 50_000),
        bytes.len() as u64,
        Some(&recorded),
    );
    assert!(matches!(verdict, Verdict::Mismatch(_)), "{verdict:?}");
}

#[test]
fn layouts_give_exactly_the_announced_parts() {
    let size = 24 * MIB;
    let layouts = candidate_layouts(size, 3);
    assert_eq!(
        layouts[0],
        Layout::Fixed(8 * MIB),
        "the default comes first"
    );
    assert!(layouts.contains(&Layout::Fixed(11 * MIB)));
    assert!(
        !layouts.contains(&Layout::Fixed(12 * MIB)),
        "12 MiB makes 2 parts"
    );
    for layout in layouts {
        assert_eq!(
            layout.lengths(size, 3).map(|l| l.len()),
            Some(3),
            "{layout:?}"
        );
    }
    assert!(candidate_layouts(size, 100).is_empty(), "parts under 5 MiB");
}

#[test]
fn doubling_layouts_for_unknown_lengths() {
    let layout = Layout::Doubling(5 * MIB);
    assert_eq!(layout.part_size(2000), 5 * MIB);
    assert_eq!(layout.part_size(2001), 10 * MIB);
    assert_eq!(layout.part_size(200_000), MAX_PART);
    let size = 2000 * 5 * MIB + 3 * 10 * MIB + 1;
    assert_eq!(layout_count(layout, size), Some(2004));
    assert_eq!(layout.lengths(size, 2004).map(|l| l.len()), Some(2004));
    assert!(candidate_layouts(size, 2004).contains(&layout));
}
