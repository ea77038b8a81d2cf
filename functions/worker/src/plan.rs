//! How big each multipart part is. S3 allows at most 10,000 parts per object, each at least
//! 5 MiB (but the last) and at most 5 GiB.

pub const MAX_PARTS: u64 = 10_000;
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// Parts of unknown-length bodies double in size after every this many parts.
const GROWTH_STEP: u64 = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    base: u64,
    /// The length is known: every part but the last has the base size.
    fixed: bool,
}

impl PartPlan {
    /// `min_part` (from configuration) grown, when the length is known, so that the whole
    /// body fits in 10,000 parts. With no length, parts start at `min_part` and double every
    /// 2,000 parts: 8 MiB parts reach about 484 GiB within the part limit.
    pub fn new(content_length: Option<u64>, min_part: u64) -> Self {
        let min_part = min_part.clamp(5 * 1024 * 1024, MAX_PART_SIZE);
        match content_length {
            Some(length) => {
                let needed = length.div_ceil(MAX_PARTS);
                // Round up to whole MiB: tidy sizes, still within the part limit.
                let needed = needed.div_ceil(1024 * 1024) * 1024 * 1024;
                Self {
                    base: needed.clamp(min_part, MAX_PART_SIZE),
                    fixed: true,
                }
            }
            None => Self {
                base: min_part,
                fixed: false,
            },
        }
    }

    /// Every part `size` bytes (the last may be shorter): a resumed upload keeps its parts.
    pub fn fixed(size: u64) -> Self {
        Self {
            base: size.clamp(5 * 1024 * 1024, MAX_PART_SIZE),
            fixed: true,
        }
    }

    /// Parts that start at `base` and grow as for a body of unknown length.
    pub fn growing(base: u64) -> Self {
        Self {
            base: base.clamp(5 * 1024 * 1024, MAX_PART_SIZE),
            fixed: false,
        }
    }

    /// How many parts this plan cuts `size` bytes into (the last one may be short).
    pub fn parts_for(&self, size: u64) -> u64 {
        if self.fixed {
            return size.div_ceil(self.base);
        }
        let (mut parts, mut covered) = (0, 0);
        while covered < size && parts < MAX_PARTS {
            parts += 1;
            covered += self.size(parts);
        }
        parts
    }

    /// Whether every full part has the same size (what resuming needs).
    pub fn is_fixed(&self) -> bool {
        self.fixed
    }

    /// Size of part `number` (1-based).
    pub fn size(&self, number: u64) -> u64 {
        if self.fixed {
            return self.base;
        }
        let doublings = (number.saturating_sub(1) / GROWTH_STEP).min(20) as u32;
        (self.base << doublings).min(MAX_PART_SIZE)
    }

    /// The largest size that fits in 10,000 parts.
    pub fn capacity(&self) -> u64 {
        (1..=MAX_PARTS).map(|n| self.size(n)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;
    const GIB: u64 = 1024 * MIB;

    #[test]
    fn tiny_and_ordinary_files_use_the_configured_minimum() {
        assert_eq!(PartPlan::new(Some(0), 8 * MIB).size(1), 8 * MIB);
        assert_eq!(PartPlan::new(Some(1), 8 * MIB).size(1), 8 * MIB);
        assert_eq!(PartPlan::new(Some(10 * GIB), 8 * MIB).size(1), 8 * MIB);
    }

    #[test]
    fn parts_are_counted_as_the_upload_cuts_them() {
        let fixed = PartPlan::fixed(8 * MIB);
        assert_eq!(fixed.parts_for(8 * MIB), 1);
        assert_eq!(fixed.parts_for(8 * MIB + 1), 2);
        assert_eq!(fixed.parts_for(24 * MIB), 3);
        // Unknown length: 2,000 parts of 8 MiB, then parts of 16 MiB.
        let growing = PartPlan::growing(8 * MIB);
        assert_eq!(growing.parts_for(2_000 * 8 * MIB), 2_000);
        assert_eq!(growing.parts_for(2_000 * 8 * MIB + 1), 2_001);
        assert_eq!(growing.parts_for(2_000 * 8 * MIB + 16 * MIB + 1), 2_002);
    }

    #[test]
    fn the_minimum_is_never_below_what_s3_accepts() {
        assert_eq!(PartPlan::new(Some(1), 1).size(1), 5 * MIB);
    }

    #[test]
    fn files_over_80_gib_grow_their_parts_to_fit_10000() {
        for length in [80 * GIB, 81 * GIB, 200 * GIB, 1024 * GIB, 4900 * GIB] {
            let plan = PartPlan::new(Some(length), 8 * MIB);
            let size = plan.size(1);
            assert!(size >= 8 * MIB);
            assert!(length.div_ceil(size) <= MAX_PARTS, "{length}: {size}");
            assert_eq!(size % MIB, 0);
            assert_eq!(plan.size(9_999), size, "fixed size for known lengths");
        }
        assert!(PartPlan::new(Some(81 * GIB), 8 * MIB).size(1) > 8 * MIB);
    }

    #[test]
    fn unknown_lengths_start_small_and_grow_within_the_part_limit() {
        let plan = PartPlan::new(None, 8 * MIB);
        assert_eq!(plan.size(1), 8 * MIB);
        assert_eq!(plan.size(2_000), 8 * MIB);
        assert_eq!(plan.size(2_001), 16 * MIB);
        assert_eq!(plan.size(10_000), 128 * MIB);
        assert!(plan.capacity() > 480 * GIB);
        assert!(plan.size(u64::MAX) <= MAX_PART_SIZE);
    }
}
