//! The writer's bytes, field by field (APPNOTE 6.3.10), at and around the ZIP64 thresholds.
//! Independent readers (Python's `zipfile`, `unzip -t`) check whole archives in
//! tests/tests/integration/bundle.rs.

use super::*;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

const TIME: DosTime = DosTime {
    date: 0x5a21,
    time: 0x6000,
};

/// One archive in memory: every byte the writer hands out, data included.
fn archive(force_zip64: bool, files: &[(&str, &[u8])]) -> (Vec<u8>, Vec<Entry>) {
    let mut zip = ZipWriter::new(TIME, force_zip64);
    let mut out = Vec::new();
    for (name, data) in files {
        out.extend(zip.start_entry(name, data.len() as u64).unwrap());
        for chunk in data.chunks(3) {
            zip.data(chunk).unwrap();
            out.extend_from_slice(chunk);
        }
        out.extend(zip.finish_entry().unwrap().0);
    }
    assert_eq!(zip.offset(), out.len() as u64);
    let finished = zip.finish().unwrap();
    assert_eq!(finished.zip64, force_zip64);
    out.extend(finished.tail);
    (out, finished.entries)
}

#[test]
fn a_small_archive_has_plain_headers_descriptors_and_end_record() {
    let (zip, entries) = archive(false, &[("hello.txt", b"hello world"), ("empty", b"")]);
    // Local header of the first entry.
    assert_eq!(u32_at(&zip, 0), 0x0403_4b50);
    assert_eq!(u16_at(&zip, 4), 20, "version needed");
    assert_eq!(
        u16_at(&zip, 6),
        0x0808,
        "bit 3 (descriptor) and bit 11 (UTF-8)"
    );
    assert_eq!(u16_at(&zip, 8), 0, "stored");
    assert_eq!((u16_at(&zip, 10), u16_at(&zip, 12)), (TIME.time, TIME.date));
    assert_eq!(
        (u32_at(&zip, 14), u32_at(&zip, 18), u32_at(&zip, 22)),
        (0, 0, 0)
    );
    assert_eq!((u16_at(&zip, 26), u16_at(&zip, 28)), (9, 0));
    assert_eq!(&zip[30..39], b"hello.txt");
    assert_eq!(&zip[39..50], b"hello world");
    // Its data descriptor: CRC-32/ISO-HDLC of the data, 32-bit sizes.
    let crc = 0x0d4a_1185; // crc32(b"hello world")
    assert_eq!(u32_at(&zip, 50), 0x0807_4b50);
    assert_eq!(
        (u32_at(&zip, 54), u32_at(&zip, 58), u32_at(&zip, 62)),
        (crc, 11, 11)
    );
    assert_eq!(entries[0].crc32, crc);
    assert_eq!(entries[1].offset, 66);
    assert_eq!(entries[1].crc32, 0);

    // The end record: no ZIP64 locator before it.
    let end = zip.len() - 22;
    assert_eq!(u32_at(&zip, end), 0x0605_4b50);
    assert_eq!((u16_at(&zip, end + 8), u16_at(&zip, end + 10)), (2, 2));
    let (cd_size, cd_start) = (u32_at(&zip, end + 12), u32_at(&zip, end + 16));
    assert_eq!(cd_start as usize + cd_size as usize, end);
    assert_ne!(u32_at(&zip, end - 20), 0x0706_4b50);

    // The central header of the first entry.
    let c = cd_start as usize;
    assert_eq!(u32_at(&zip, c), 0x0201_4b50);
    assert_eq!(u16_at(&zip, c + 4), (3 << 8) | 45, "made by Unix");
    assert_eq!(u16_at(&zip, c + 6), 20);
    assert_eq!(u16_at(&zip, c + 8), 0x0808);
    assert_eq!(u32_at(&zip, c + 16), crc);
    assert_eq!((u32_at(&zip, c + 20), u32_at(&zip, c + 24)), (11, 11));
    assert_eq!((u16_at(&zip, c + 28), u16_at(&zip, c + 30)), (9, 0));
    assert_eq!(u32_at(&zip, c + 38) >> 16, 0o100_644);
    assert_eq!(u32_at(&zip, c + 42), 0, "local header offset");
    assert_eq!(&zip[c + 46..c + 55], b"hello.txt");
    let second = c + 46 + 9;
    assert_eq!(u32_at(&zip, second + 42), 66);
    assert_eq!(&zip[second + 46..second + 51], b"empty");
}

#[test]
fn forced_zip64_marks_every_field_and_writes_the_zip64_end_records() {
    let (zip, _) = archive(true, &[("a.bin", b"abc")]);
    // Local header: version 4.5, sizes point at a 20-byte ZIP64 field holding zeros.
    assert_eq!(u16_at(&zip, 4), 45);
    assert_eq!(
        (u32_at(&zip, 18), u32_at(&zip, 22)),
        (0xFFFF_FFFF, 0xFFFF_FFFF)
    );
    assert_eq!(u16_at(&zip, 28), 20);
    assert_eq!((u16_at(&zip, 35), u16_at(&zip, 37)), (1, 16));
    assert_eq!((u64_at(&zip, 39), u64_at(&zip, 47)), (0, 0));
    assert_eq!(&zip[55..58], b"abc");
    // The descriptor has 8-byte sizes.
    assert_eq!(u32_at(&zip, 58), 0x0807_4b50);
    assert_eq!((u64_at(&zip, 66), u64_at(&zip, 74)), (3, 3));
    let cd_start = 82;

    // Central header: sizes and offset in the extra field, in APPNOTE order.
    let c = cd_start;
    assert_eq!(u32_at(&zip, c), 0x0201_4b50);
    assert_eq!(u16_at(&zip, c + 6), 45);
    assert_eq!(
        (u32_at(&zip, c + 20), u32_at(&zip, c + 24)),
        (u32::MAX, u32::MAX)
    );
    assert_eq!(u16_at(&zip, c + 30), 4 + 24);
    assert_eq!(u32_at(&zip, c + 42), u32::MAX);
    let x = c + 46 + 5;
    assert_eq!((u16_at(&zip, x), u16_at(&zip, x + 2)), (1, 24));
    assert_eq!((u64_at(&zip, x + 4), u64_at(&zip, x + 12)), (3, 3));
    assert_eq!(u64_at(&zip, x + 20), 0);
    let cd_size = 46 + 5 + 28;

    // ZIP64 end record, locator, then the end record with every field saturated.
    let z = cd_start + cd_size;
    assert_eq!(u32_at(&zip, z), 0x0606_4b50);
    assert_eq!(u64_at(&zip, z + 4), 44);
    assert_eq!((u64_at(&zip, z + 24), u64_at(&zip, z + 32)), (1, 1));
    assert_eq!(u64_at(&zip, z + 40), cd_size as u64);
    assert_eq!(u64_at(&zip, z + 48), cd_start as u64);
    let l = z + 56;
    assert_eq!(u32_at(&zip, l), 0x0706_4b50);
    assert_eq!(u64_at(&zip, l + 8), z as u64);
    assert_eq!(u32_at(&zip, l + 16), 1);
    let e = l + 20;
    assert_eq!(u32_at(&zip, e), 0x0605_4b50);
    assert_eq!(
        (u16_at(&zip, e + 8), u16_at(&zip, e + 10)),
        (0xFFFF, 0xFFFF)
    );
    assert_eq!(
        (u32_at(&zip, e + 12), u32_at(&zip, e + 16)),
        (u32::MAX, u32::MAX)
    );
    assert_eq!(zip.len(), e + 22);
}

#[test]
fn an_entry_of_4_gib_or_more_gets_zip64_in_its_local_header_and_descriptor() {
    let below = ZipWriter::new(TIME, false).start_entry("below", MAX32 - 1);
    let below = below.unwrap();
    assert_eq!((u16_at(&below, 4), u16_at(&below, 28)), (20, 0));

    let mut zip = ZipWriter::new(TIME, false);
    zip.start_entry("below", MAX32 - 100).unwrap();
    zip.pretend_written(MAX32 - 100);
    let (descriptor, entry) = zip.finish_entry().unwrap();
    assert_eq!(descriptor.len(), 16, "32-bit sizes");
    assert_eq!(entry.size, MAX32 - 100);

    let at = zip.start_entry("at", MAX32).unwrap();
    assert_eq!((u16_at(&at, 4), u16_at(&at, 28)), (45, 20));
    zip.pretend_written(MAX32);
    let (descriptor, _) = zip.finish_entry().unwrap();
    assert_eq!(descriptor.len(), 24, "64-bit sizes");
    assert_eq!(u64_at(&descriptor, 8), MAX32);

    // The third entry starts past 4 GiB: only its offset goes to the extra field.
    zip.start_entry("after", 0).unwrap();
    zip.finish_entry().unwrap();
    let Finished {
        tail,
        entries,
        zip64,
    } = zip.finish().unwrap();
    assert!(zip64);
    assert_eq!(entries[1].offset, 30 + 5 + MAX32 - 100 + 16);
    assert!(entries[2].offset > MAX32);
    let c0 = 0;
    assert_eq!(u32_at(&tail, c0 + 20), (MAX32 - 100) as u32);
    assert_eq!((u16_at(&tail, c0 + 6), u16_at(&tail, c0 + 30)), (20, 0));
    let c1 = 46 + 5;
    assert_eq!(u32_at(&tail, c1 + 20), u32::MAX);
    assert_eq!(
        u16_at(&tail, c1 + 30),
        4 + 16,
        "sizes only: its offset fits"
    );
    assert_eq!(u32_at(&tail, c1 + 42) as u64, entries[1].offset);
    let c2 = c1 + 46 + 2 + 20;
    assert_eq!(u16_at(&tail, c2 + 6), 45);
    assert_eq!(
        (u32_at(&tail, c2 + 20), u32_at(&tail, c2 + 42)),
        (0, u32::MAX)
    );
    assert_eq!(u16_at(&tail, c2 + 30), 4 + 8, "offset only");
    assert_eq!(u64_at(&tail, c2 + 46 + 5 + 4), entries[2].offset);
    // The central directory starts past 4 GiB: ZIP64 end records.
    let z = c2 + 46 + 5 + 12;
    assert_eq!(u32_at(&tail, z), 0x0606_4b50);
    assert_eq!(u64_at(&tail, z + 48), entries[2].offset + 30 + 5 + 16);
    assert_eq!(u32_at(&tail, tail.len() - 22), 0x0605_4b50);
    assert_eq!(
        u16_at(&tail, tail.len() - 22 + 10),
        3,
        "the count still fits"
    );
    assert_eq!(u32_at(&tail, tail.len() - 22 + 16), u32::MAX);
}

#[test]
fn entries_zip64_from_65535_on() {
    for (count, zip64) in [(65_534, false), (65_535, true)] {
        let mut zip = ZipWriter::new(TIME, false);
        for i in 0..count {
            zip.start_entry(&i.to_string(), 0).unwrap();
            zip.finish_entry().unwrap();
        }
        let Finished {
            tail,
            entries,
            zip64: finished_zip64,
        } = zip.finish().unwrap();
        assert_eq!(entries.len(), count);
        assert_eq!(finished_zip64, zip64);
        let end = tail.len() - 22;
        assert_eq!(u32_at(&tail, end), 0x0605_4b50);
        let has_locator = u32_at(&tail, end - 20) == 0x0706_4b50;
        assert_eq!(has_locator, zip64, "{count} entries");
        let expected = if zip64 { 0xFFFF } else { count as u16 };
        assert_eq!(u16_at(&tail, end + 10), expected);
    }
}

#[test]
fn sizes_must_match_what_was_announced() {
    let mut zip = ZipWriter::new(TIME, false);
    zip.start_entry("a", 2).unwrap();
    assert_eq!(zip.start_entry("b", 1), Err(ZipError::EntryOpen));
    zip.data(b"x").unwrap();
    assert!(matches!(
        zip.finish_entry(),
        Err(ZipError::SizeMismatch { actual: 1, .. })
    ));
    zip.start_entry("b", 1).unwrap();
    assert!(matches!(
        zip.data(b"xy"),
        Err(ZipError::SizeMismatch { actual: 2, .. })
    ));
    assert!(matches!(
        ZipWriter::new(TIME, false).finish_entry(),
        Err(ZipError::NoEntry)
    ));
}

#[test]
fn names_are_sanitized_and_made_unique_in_the_headers() {
    let (zip, entries) = archive(false, &[("../x.txt", b"1"), ("/x.txt", b"2")]);
    let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["x.txt", "x (2).txt"]);
    assert_eq!(&zip[30..35], b"x.txt");
}

#[test]
fn dos_times_from_epoch_milliseconds() {
    // 2025-03-01 12:34:57 UTC: seconds to the even second below.
    let t = DosTime::from_epoch_ms(1_740_832_497_000);
    assert_eq!(t.date, ((2025 - 1980) << 9) | (3 << 5) | 1);
    assert_eq!(t.time, (12 << 11) | (34 << 5) | 28);
    // 2000-02-29 (a leap day).
    let t = DosTime::from_epoch_ms(951_782_400_000);
    assert_eq!(t.date, (20 << 9) | (2 << 5) | 29);
    assert_eq!(
        DosTime::from_epoch_ms(0).date,
        (1 << 5) | 1,
        "clamped to 1980"
    );
}

/// Like [`archive`], but the writer is put down (its state through JSON, as a checkpoint
/// keeps it) and taken up anew after every chunk and every entry.
fn archive_resumed_everywhere(force_zip64: bool, files: &[(&str, &[u8])]) -> Vec<u8> {
    let again = |zip: &ZipWriter| {
        let json = serde_json::to_string(&zip.state()).unwrap();
        ZipWriter::restore(TIME, force_zip64, serde_json::from_str(&json).unwrap())
    };
    let mut zip = ZipWriter::new(TIME, force_zip64);
    let mut out = Vec::new();
    for (name, data) in files {
        zip = again(&zip);
        out.extend(zip.start_entry(name, data.len() as u64).unwrap());
        for chunk in data.chunks(3) {
            zip = again(&zip);
            zip.data(chunk).unwrap();
            out.extend_from_slice(chunk);
        }
        zip = again(&zip);
        out.extend(zip.finish_entry().unwrap().0);
    }
    zip = again(&zip);
    out.extend(zip.finish().unwrap().tail);
    out
}

#[test]
fn a_writer_taken_up_from_its_state_anywhere_writes_the_same_bytes_as_one_that_never_stopped() {
    let files: [(&str, &[u8]); 4] = [
        ("a.txt", b"hello, zip, in more than one chunk"),
        ("A.TXT", b"same name but for case"),
        ("empty", b""),
        ("a.txt", b"a third one"),
    ];
    for force_zip64 in [false, true] {
        let (whole, entries) = archive(force_zip64, &files);
        assert_eq!(archive_resumed_everywhere(force_zip64, &files), whole);
        // The names given out before a restore stay taken after it.
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a.txt", "A (2).TXT", "empty", "a (3).txt"]);
    }
}
