//! Checking a downloaded file against what the job recorded: its size, and S3's CRC32C.
//!
//! `result.checksumCrc32c` is S3's checksum of the object, base64 of the big-endian CRC32C.
//! A single-PUT object carries the CRC32C of its bytes. A multipart object carries a
//! *composite* checksum, `<base64>-<parts>`: the CRC32C of the concatenated big-endian CRC32Cs
//! of its parts, which depends on where the parts were cut. The worker cuts parts at whole
//! MiB (`functions/worker/src/plan.rs`: every part but the last the same size, at least 5 MiB,
//! or doubling every 2,000 parts when the length was unknown), so the CLI keeps the CRC32C of
//! every MiB as the bytes arrive and, at the end, tries the part layouts that give exactly
//! `<parts>` parts for this size: a layout that reproduces the composite proves the bytes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use crc_fast::{CrcAlgorithm, Digest, checksum, checksum_combine};

const CRC32C: CrcAlgorithm = CrcAlgorithm::Crc32Iscsi;
const MIB: u64 = 1 << 20;
/// The granularity of the running checksums: part boundaries always fall on it.
pub const BLOCK: u64 = MIB;
const MIN_PART: u64 = 5 * MIB;
const MAX_PART: u64 = 5 * 1024 * MIB;
/// Parts per size step of the unknown-length plan.
const GROWTH_STEP: u64 = 2000;
/// At most this many part layouts are tried for one composite checksum.
const MAX_LAYOUTS: usize = 256;

/// CRC32C of every [`BLOCK`] of a stream, fed as it arrives.
#[derive(Clone)]
pub struct BlockCrc {
    blocks: Vec<u32>,
    digest: Digest,
    in_block: u64,
    total: u64,
}

impl Default for BlockCrc {
    fn default() -> Self {
        Self {
            blocks: Vec::new(),
            digest: Digest::new(CRC32C),
            in_block: 0,
            total: 0,
        }
    }
}

impl BlockCrc {
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = (BLOCK - self.in_block) as usize;
            let (now, rest) = data.split_at(room.min(data.len()));
            self.digest.update(now);
            self.in_block += now.len() as u64;
            self.total += now.len() as u64;
            if self.in_block == BLOCK {
                self.blocks.push(self.digest.finalize_reset() as u32);
                self.in_block = 0;
            }
            data = rest;
        }
    }

    pub fn finish(mut self) -> Blocks {
        if self.in_block > 0 {
            self.blocks.push(self.digest.finalize() as u32);
        }
        Blocks {
            crcs: self.blocks,
            total: self.total,
        }
    }
}

/// The per-block checksums of a whole file.
#[derive(Debug, Clone)]
pub struct Blocks {
    crcs: Vec<u32>,
    total: u64,
}

impl Blocks {
    pub fn len(&self) -> u64 {
        self.total
    }

    fn block_len(&self, index: usize) -> u64 {
        let start = index as u64 * BLOCK;
        (self.total - start).min(BLOCK)
    }

    /// CRC32C of `count` blocks from `first`.
    fn range(&self, first: usize, count: usize) -> u32 {
        (first..first + count).fold(0u32, |crc, i| {
            checksum_combine(
                CRC32C,
                u64::from(crc),
                u64::from(self.crcs[i]),
                self.block_len(i),
            ) as u32
        })
    }

    /// CRC32C of the whole file.
    pub fn whole(&self) -> u32 {
        self.range(0, self.crcs.len())
    }

    /// S3's composite CRC32C for parts of these lengths (all but the last whole blocks).
    fn composite(&self, part_lengths: &[u64]) -> Option<u32> {
        if part_lengths.iter().sum::<u64>() != self.total {
            return None;
        }
        let mut concatenated = Vec::with_capacity(part_lengths.len() * 4);
        let mut first = 0usize;
        for &length in part_lengths {
            let count = length.div_ceil(BLOCK) as usize;
            let crc = if length == 0 {
                0
            } else {
                self.range(first, count)
            };
            concatenated.extend_from_slice(&crc.to_be_bytes());
            first += count;
        }
        Some(checksum(CRC32C, &concatenated) as u32)
    }
}

/// What the job recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Whole(u32),
    Composite { crc: u32, parts: u64 },
}

pub fn parse_checksum(value: &str) -> Result<Expected, String> {
    let decode = |text: &str| -> Result<u32, String> {
        let bytes = STANDARD
            .decode(text)
            .map_err(|_| format!("{value:?} is not base64"))?;
        let bytes: [u8; 4] = bytes
            .try_into()
            .map_err(|_| format!("{value:?} is not a 4-byte CRC32C"))?;
        Ok(u32::from_be_bytes(bytes))
    };
    // The base64 alphabet has no '-', so a '-' can only start the part count.
    match value.rsplit_once('-') {
        Some((crc, parts)) => {
            let parts: u64 = parts
                .parse()
                .ok()
                .filter(|&p| p >= 1)
                .ok_or_else(|| format!("{value:?} has no valid part count"))?;
            Ok(Expected::Composite {
                crc: decode(crc)?,
                parts,
            })
        }
        None => Ok(Expected::Whole(decode(value)?)),
    }
}

pub fn encode_crc(crc: u32) -> String {
    STANDARD.encode(crc.to_be_bytes())
}

/// How the part layouts of an upload were planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Every part `size` bytes but the last.
    Fixed(u64),
    /// `base` bytes, doubled every 2,000 parts, at most 5 GiB.
    Doubling(u64),
}

impl Layout {
    fn part_size(self, number: u64) -> u64 {
        match self {
            Layout::Fixed(size) => size,
            Layout::Doubling(base) => {
                let doublings = ((number - 1) / GROWTH_STEP).min(20) as u32;
                (base << doublings).min(MAX_PART)
            }
        }
    }

    /// The part lengths for a file of `size` bytes, if there are exactly `parts` of them.
    fn lengths(self, size: u64, parts: u64) -> Option<Vec<u64>> {
        let mut lengths = Vec::new();
        let mut left = size;
        let mut number = 1;
        while left > 0 {
            if number > parts {
                return None;
            }
            let length = self.part_size(number).min(left);
            lengths.push(length);
            left -= length;
            number += 1;
        }
        (lengths.len() as u64 == parts).then_some(lengths)
    }

    fn describe(self) -> String {
        match self {
            Layout::Fixed(size) => format!("{} MiB parts", size / MIB),
            Layout::Doubling(base) => format!("{} MiB parts doubling", base / MIB),
        }
    }
}

/// The layouts worth trying for `parts` parts of a `size`-byte file, likeliest first: the
/// worker's default 8 MiB, then other whole-MiB sizes from the smallest that fits.
fn candidate_layouts(size: u64, parts: u64) -> Vec<Layout> {
    let mut layouts = Vec::new();
    if parts == 1 {
        // One part: its size does not matter.
        return vec![Layout::Fixed(size.max(MIB).div_ceil(MIB) * MIB)];
    }
    if size == 0 {
        return layouts;
    }
    let smallest = size.div_ceil(parts).div_ceil(MIB).max(MIN_PART / MIB);
    let largest = ((size - 1) / (parts - 1) / MIB).min(MAX_PART / MIB);
    let mut fixed: Vec<u64> = (smallest..=largest).collect();
    if let Some(i) = fixed.iter().position(|&mib| mib == 8) {
        fixed.remove(i);
        fixed.insert(0, 8);
    }
    layouts.extend(
        fixed
            .into_iter()
            .take(MAX_LAYOUTS)
            .map(|mib| Layout::Fixed(mib * MIB)),
    );
    if parts > GROWTH_STEP {
        for mib in MIN_PART / MIB..=MAX_PART / MIB {
            if layouts.len() >= MAX_LAYOUTS {
                break;
            }
            let layout = Layout::Doubling(mib * MIB);
            if !layouts.contains(&layout) && layout_count(layout, size) == Some(parts) {
                layouts.push(layout);
            }
        }
    }
    layouts.truncate(MAX_LAYOUTS);
    layouts
}

/// Number of parts a layout cuts `size` into, a group of equal parts at a time.
fn layout_count(layout: Layout, size: u64) -> Option<u64> {
    let mut left = size;
    let mut parts = 0u64;
    while left > 0 {
        let part = layout.part_size(parts + 1);
        let group = if parts / GROWTH_STEP >= 20 {
            u64::MAX
        } else {
            GROWTH_STEP - parts % GROWTH_STEP
        };
        let needed = left.div_ceil(part);
        if needed <= group {
            return Some(parts + needed);
        }
        parts += group;
        left -= group * part;
    }
    Some(parts)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Size and checksum agree; says how the checksum was checked.
    Verified(String),
    /// The size agrees; the checksum could not be checked (says why).
    SizeOnly(String),
    Mismatch(String),
}

impl Verdict {
    /// `"whole"`, `"composite"` or `"none"`, for `--json`.
    pub fn checksum_kind(&self) -> &'static str {
        match self {
            Verdict::Verified(how) if how.starts_with("composite") => "composite",
            Verdict::Verified(_) => "whole",
            _ => "none",
        }
    }
}

pub fn check(blocks: &Blocks, expected_size: u64, expected_crc: Option<&str>) -> Verdict {
    if blocks.len() != expected_size {
        return Verdict::Mismatch(format!(
            "size is {} bytes, the job recorded {expected_size}",
            blocks.len()
        ));
    }
    let Some(recorded) = expected_crc else {
        return Verdict::SizeOnly("the job recorded no checksum".into());
    };
    match parse_checksum(recorded) {
        Err(why) => Verdict::SizeOnly(format!("unrecognised checksum: {why}")),
        Ok(Expected::Whole(crc)) => {
            let got = blocks.whole();
            if got == crc {
                Verdict::Verified(format!("CRC32C {recorded}"))
            } else {
                Verdict::Mismatch(format!(
                    "CRC32C is {}, the job recorded {recorded}",
                    encode_crc(got)
                ))
            }
        }
        Ok(Expected::Composite { crc, parts }) => {
            let layouts = candidate_layouts(expected_size, parts);
            for layout in &layouts {
                let Some(lengths) = layout.lengths(expected_size, parts) else {
                    continue;
                };
                if blocks.composite(&lengths) == Some(crc) {
                    return Verdict::Verified(format!(
                        "composite CRC32C {recorded} ({parts} × {})",
                        layout.describe()
                    ));
                }
            }
            Verdict::Mismatch(format!(
                "composite CRC32C {recorded} matches none of the {} part layouts of {parts} \
                 whole-MiB parts for {expected_size} bytes",
                layouts.len()
            ))
        }
    }
}

#[cfg(test)]
mod tests;
