//! A streaming ZIP writer, pure (no I/O): it hands out the bytes around each entry's data
//! (its local header before, its data descriptor after, the central directory at the end)
//! and keeps only each entry's metadata, so an archive of any size is written in one pass.
//!
//! Entries are stored (method 0) with the CRC-32 computed while the data passes through, so
//! every entry has a data descriptor (general purpose bit 3) and a UTF-8 name (bit 11).
//! ZIP64 (APPNOTE 6.3.10, 4.3.9, 4.3.14-16, 4.5.3) is used where a size or offset reaches
//! 0xFFFFFFFF or there are 65535 entries or more, or everywhere with `force_zip64`.

use crc_fast::{CrcAlgorithm, Digest};
use serde::{Deserialize, Serialize};

use super::names::UniqueNames;

const LOCAL_HEADER: u32 = 0x0403_4b50;
const DATA_DESCRIPTOR: u32 = 0x0807_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const ZIP64_END: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const END: u32 = 0x0605_4b50;
/// A 32-bit field that holds this value means "see the ZIP64 extra field".
pub const MAX32: u64 = 0xFFFF_FFFF;
const MAX16: u64 = 0xFFFF;
const ZIP64_EXTRA: u16 = 0x0001;
/// Data descriptor follows (bit 3) and the name is UTF-8 (bit 11).
const FLAGS: u16 = (1 << 3) | (1 << 11);
/// Version needed: 2.0 for stored entries with descriptors, 4.5 for ZIP64.
const VERSION_20: u16 = 20;
const VERSION_45: u16 = 45;
/// Made by: Unix (high byte 3), spec 4.5; with a regular file's mode in the attributes.
const MADE_BY: u16 = (3 << 8) | VERSION_45;
const FILE_MODE: u32 = 0o100_644 << 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZipError {
    #[error("entry {name:?} was announced as {expected} bytes but {actual} were written")]
    SizeMismatch {
        name: String,
        expected: u64,
        actual: u64,
    },
    #[error("an entry is already open")]
    EntryOpen,
    #[error("no entry is open")]
    NoEntry,
}

/// One finished entry, as the central directory needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The name in the archive (sanitized, unique).
    pub name: String,
    pub size: u64,
    pub crc32: u32,
    /// Where its local header starts.
    pub offset: u64,
    /// Whether its local header carries a ZIP64 field (and its descriptor 8-byte sizes).
    zip64_local: bool,
}

/// The end of an archive.
#[derive(Debug)]
pub struct Finished {
    /// The central directory and end records: the archive's last bytes.
    pub tail: Vec<u8>,
    pub entries: Vec<Entry>,
    /// Whether it has the ZIP64 end records.
    pub zip64: bool,
}

struct Open {
    name: String,
    expected: u64,
    written: u64,
    crc: Digest,
    offset: u64,
    zip64_local: bool,
}

/// The entry being written, as a checkpoint keeps it: the CRC's running state (not its
/// final value) carries on over the rest of the data in a later invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenState {
    pub name: String,
    pub expected: u64,
    pub written: u64,
    pub crc_state: u64,
    pub offset: u64,
    zip64_local: bool,
}

/// Everything the writer knows at a point between two of its outputs: enough to go on
/// from there in another process, byte for byte as if it had never stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZipState {
    pub entries: Vec<Entry>,
    pub open: Option<OpenState>,
    pub offset: u64,
}

/// A DOS date and time (local time; the archive uses UTC), to the even second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DosTime {
    pub date: u16,
    pub time: u16,
}

impl DosTime {
    /// From milliseconds since the Unix epoch, clamped to DOS's 1980-2107.
    pub fn from_epoch_ms(ms: i64) -> Self {
        let secs = ms.div_euclid(1000);
        let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        if year < 1980 {
            return Self {
                date: (1 << 5) | 1,
                time: 0,
            };
        }
        if year > 2107 {
            return Self {
                date: (127 << 9) | (12 << 5) | 31,
                time: (23 << 11) | (59 << 5) | 29,
            };
        }
        let (hour, minute, second) = (rest / 3600, rest % 3600 / 60, rest % 60);
        Self {
            date: (((year - 1980) << 9) | (month << 5) | day) as u16,
            time: ((hour << 11) | (minute << 5) | (second / 2)) as u16,
        }
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The archive being written. Feed it `start_entry`, `data` (the caller passes the same bytes
/// on to the output), `finish_entry` for each file, then `finish`.
pub struct ZipWriter {
    entries: Vec<Entry>,
    names: UniqueNames,
    open: Option<Open>,
    /// Bytes handed out so far (headers, data, descriptors).
    offset: u64,
    force_zip64: bool,
    modified: DosTime,
}

impl ZipWriter {
    pub fn new(modified: DosTime, force_zip64: bool) -> Self {
        Self {
            entries: Vec::new(),
            names: UniqueNames::default(),
            open: None,
            offset: 0,
            force_zip64,
            modified,
        }
    }

    /// Bytes handed out so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The writer as it stands, for a checkpoint.
    pub fn state(&self) -> ZipState {
        ZipState {
            entries: self.entries.clone(),
            open: self.open.as_ref().map(|open| OpenState {
                name: open.name.clone(),
                expected: open.expected,
                written: open.written,
                crc_state: open.crc.get_state(),
                offset: open.offset,
                zip64_local: open.zip64_local,
            }),
            offset: self.offset,
        }
    }

    /// A writer that goes on from `state` (see [`ZipWriter::state`]); the names given out
    /// before stay taken.
    pub fn restore(modified: DosTime, force_zip64: bool, state: ZipState) -> Self {
        let mut names = UniqueNames::default();
        for name in state.entries.iter().map(|e| &e.name) {
            names.reserve(name);
        }
        let open = state.open.map(|open| {
            names.reserve(&open.name);
            Open {
                crc: Digest::new_with_init_state(CrcAlgorithm::Crc32IsoHdlc, open.crc_state),
                name: open.name,
                expected: open.expected,
                written: open.written,
                offset: open.offset,
                zip64_local: open.zip64_local,
            }
        });
        Self {
            entries: state.entries,
            names,
            open,
            offset: state.offset,
            force_zip64,
            modified,
        }
    }

    /// Opens an entry of exactly `size` bytes; returns its local header. `name` is sanitized
    /// and made unique (see `names`).
    pub fn start_entry(&mut self, name: &str, size: u64) -> Result<Vec<u8>, ZipError> {
        if self.open.is_some() {
            return Err(ZipError::EntryOpen);
        }
        let name = self.names.claim(name);
        let zip64_local = self.force_zip64 || size >= MAX32;
        let mut out = Vec::with_capacity(30 + name.len() + 20);
        put32(&mut out, LOCAL_HEADER);
        put16(&mut out, if zip64_local { VERSION_45 } else { VERSION_20 });
        put16(&mut out, FLAGS);
        put16(&mut out, 0); // stored
        put16(&mut out, self.modified.time);
        put16(&mut out, self.modified.date);
        // CRC and sizes follow the data (bit 3); with ZIP64 the sizes point at the extra
        // field, which holds zeros for the same reason.
        put32(&mut out, 0);
        let sizes = if zip64_local { MAX32 as u32 } else { 0 };
        put32(&mut out, sizes);
        put32(&mut out, sizes);
        put16(&mut out, name.len() as u16);
        put16(&mut out, if zip64_local { 20 } else { 0 });
        out.extend_from_slice(name.as_bytes());
        if zip64_local {
            put16(&mut out, ZIP64_EXTRA);
            put16(&mut out, 16);
            put64(&mut out, 0);
            put64(&mut out, 0);
        }
        self.open = Some(Open {
            name,
            expected: size,
            written: 0,
            crc: Digest::new(CrcAlgorithm::Crc32IsoHdlc),
            offset: self.offset,
            zip64_local,
        });
        self.offset += out.len() as u64;
        Ok(out)
    }

    /// Accounts for a chunk of the open entry's data (the caller writes it out unchanged).
    pub fn data(&mut self, chunk: &[u8]) -> Result<(), ZipError> {
        let open = self.open.as_mut().ok_or(ZipError::NoEntry)?;
        open.crc.update(chunk);
        open.written += chunk.len() as u64;
        self.offset += chunk.len() as u64;
        if open.written > open.expected {
            return Err(ZipError::SizeMismatch {
                name: open.name.clone(),
                expected: open.expected,
                actual: open.written,
            });
        }
        Ok(())
    }

    /// Closes the open entry; returns its data descriptor.
    pub fn finish_entry(&mut self) -> Result<(Vec<u8>, &Entry), ZipError> {
        let open = self.open.take().ok_or(ZipError::NoEntry)?;
        if open.written != open.expected {
            return Err(ZipError::SizeMismatch {
                name: open.name,
                expected: open.expected,
                actual: open.written,
            });
        }
        let crc32 = open.crc.finalize() as u32;
        let mut out = Vec::with_capacity(24);
        put32(&mut out, DATA_DESCRIPTOR);
        put32(&mut out, crc32);
        if open.zip64_local {
            put64(&mut out, open.written);
            put64(&mut out, open.written);
        } else {
            put32(&mut out, open.written as u32);
            put32(&mut out, open.written as u32);
        }
        self.offset += out.len() as u64;
        self.entries.push(Entry {
            name: open.name,
            size: open.written,
            crc32,
            offset: open.offset,
            zip64_local: open.zip64_local,
        });
        let entry = self.entries.last().ok_or(ZipError::NoEntry)?;
        Ok((out, entry))
    }

    /// The central directory and the end records; the archive is complete after them.
    pub fn finish(&mut self) -> Result<Finished, ZipError> {
        if self.open.is_some() {
            return Err(ZipError::EntryOpen);
        }
        let start = self.offset;
        let mut out = Vec::new();
        for entry in &self.entries {
            self.central_header(&mut out, entry);
        }
        let size = out.len() as u64;
        let count = self.entries.len() as u64;
        let zip64 = self.force_zip64 || count >= MAX16 || size >= MAX32 || start >= MAX32;
        if zip64 {
            let record = start + size;
            put32(&mut out, ZIP64_END);
            put64(&mut out, 44); // the record's size after this field
            put16(&mut out, MADE_BY);
            put16(&mut out, VERSION_45);
            put32(&mut out, 0); // this disk
            put32(&mut out, 0); // the disk the central directory starts on
            put64(&mut out, count);
            put64(&mut out, count);
            put64(&mut out, size);
            put64(&mut out, start);
            put32(&mut out, ZIP64_LOCATOR);
            put32(&mut out, 0);
            put64(&mut out, record);
            put32(&mut out, 1); // disks in all
        }
        // Only the fields that overflow point at the ZIP64 record (APPNOTE 4.4.1.4); all of
        // them when forced, so tests see readers take every value from it.
        let force = self.force_zip64;
        let field16 = |v: u64| if force || v >= MAX16 { MAX16 } else { v } as u16;
        let field32 = |v: u64| if force || v >= MAX32 { MAX32 } else { v } as u32;
        put32(&mut out, END);
        put16(&mut out, 0);
        put16(&mut out, 0);
        put16(&mut out, field16(count));
        put16(&mut out, field16(count));
        put32(&mut out, field32(size));
        put32(&mut out, field32(start));
        put16(&mut out, 0); // no comment
        Ok(Finished {
            tail: out,
            entries: std::mem::take(&mut self.entries),
            zip64,
        })
    }

    /// Accounts for `n` bytes of the open entry without them (tests of the 4 GiB thresholds).
    #[cfg(test)]
    fn pretend_written(&mut self, n: u64) {
        if let Some(open) = self.open.as_mut() {
            open.written += n;
            self.offset += n;
        }
    }

    fn central_header(&self, out: &mut Vec<u8>, entry: &Entry) {
        let force = self.force_zip64;
        let big_size = force || entry.size >= MAX32;
        let big_offset = force || entry.offset >= MAX32;
        let mut extra = Vec::new();
        if big_size {
            put64(&mut extra, entry.size);
            put64(&mut extra, entry.size);
        }
        if big_offset {
            put64(&mut extra, entry.offset);
        }
        let zip64 = !extra.is_empty() || entry.zip64_local;
        put32(out, CENTRAL_HEADER);
        put16(out, MADE_BY);
        put16(out, if zip64 { VERSION_45 } else { VERSION_20 });
        put16(out, FLAGS);
        put16(out, 0);
        put16(out, self.modified.time);
        put16(out, self.modified.date);
        put32(out, entry.crc32);
        let size = if big_size { MAX32 } else { entry.size } as u32;
        put32(out, size);
        put32(out, size);
        put16(out, entry.name.len() as u16);
        put16(
            out,
            if extra.is_empty() {
                0
            } else {
                4 + extra.len() as u16
            },
        );
        put16(out, 0); // comment
        put16(out, 0); // disk
        put16(out, 0); // internal attributes
        put32(out, FILE_MODE);
        put32(out, if big_offset { MAX32 } else { entry.offset } as u32);
        out.extend_from_slice(entry.name.as_bytes());
        if !extra.is_empty() {
            put16(out, ZIP64_EXTRA);
            put16(out, extra.len() as u16);
            out.extend_from_slice(&extra);
        }
    }
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
#[path = "zip_tests.rs"]
mod tests;
