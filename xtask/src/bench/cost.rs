//! Dollars per TiB moved by Lambda memory size, from the worker's measured cost.
//!
//! Lambda bills duration × memory, and its CPU share grows with memory (1,769 MB = one vCPU).
//! While the worker is CPU-bound its throughput is `vCPUs / CPU-s per GiB`, so the bill per
//! byte is about the same at every size; what changes is whether a 2 GiB file fits in one
//! invocation (at most 900 s). Every size uses the worker's measured MiB/s at its CPU share
//! (`make bench` runs the worker alone at 256 and 1,024 MB too); a size left out of a narrowed
//! run is the 512 MB figure scaled by its CPU share, capped at the fastest measured figure.
//! The local sink (one LocalStack process) caps the larger sizes: on AWS they would move
//! faster for the same bill, so their dollars here are an upper bound.
//!
//! Price: AWS Lambda, us-east-1, x86_64, as published in 2026: $0.0000166667 per GB-second
//! and $0.20 per million requests (arm64 is 20% cheaper per GB-second).

use serde_json::{Value, json};

use super::cgroup::{LAMBDA_512, SHARES};
use super::peers::Tool;
use super::report::{Row, summarize};

pub const PRICE_PER_GB_SECOND: f64 = 0.000_016_666_7;
pub const PRICE_PER_REQUEST: f64 = 0.20 / 1_000_000.0;
pub const PRICE_SOURCE: &str = "AWS Lambda us-east-1 x86_64 as published 2026: $0.0000166667 per GB-second, $0.20 per 1M requests";
/// Lambda's longest invocation.
const MAX_INVOCATION_S: f64 = 900.0;
const FILE_MIB: f64 = 2048.0;
const TIB_MIB: f64 = 1024.0 * 1024.0;

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizeCost {
    pub memory_mb: u32,
    pub mib_s: f64,
    pub measured: bool,
    pub usd_per_tib: f64,
    pub seconds_per_2gib: f64,
}

/// The cost of moving a TiB in 2 GiB files at `memory_mb` and `mib_s`.
pub fn size_cost(memory_mb: u32, mib_s: f64, measured: bool) -> SizeCost {
    let seconds = TIB_MIB / mib_s;
    let gb_seconds = seconds * f64::from(memory_mb) / 1024.0;
    let invocations = TIB_MIB / FILE_MIB;
    SizeCost {
        memory_mb,
        mib_s,
        measured,
        usd_per_tib: gb_seconds * PRICE_PER_GB_SECOND + invocations * PRICE_PER_REQUEST,
        seconds_per_2gib: FILE_MIB / mib_s,
    }
}

/// The table from the worker's runs; `Value::Null` without a 512 MB worker run.
pub fn table(rows: &[Row]) -> Value {
    let Some(at_512) = summarize(rows, Tool::Worker, LAMBDA_512) else {
        return Value::Null;
    };
    let measured: Vec<_> = SHARES
        .into_iter()
        .filter_map(|share| Some((share, summarize(rows, Tool::Worker, share)?)))
        .collect();
    // Past the fastest measured figure the local sink, not the worker, sets the pace.
    let ceiling = measured.iter().map(|(_, s)| s.mib_s).fold(0.0, f64::max);
    let sizes: Vec<SizeCost> = SHARES
        .into_iter()
        .map(
            |share| match measured.iter().find(|(m, _)| m.name == share.name) {
                Some((_, s)) => size_cost(share.lambda_memory_mb, s.mib_s, true),
                None => {
                    // Not run: the 512 MB figure scaled by the CPU share.
                    let scale = f64::from(share.lambda_memory_mb) / 512.0;
                    size_cost(
                        share.lambda_memory_mb,
                        (at_512.mib_s * scale).min(ceiling),
                        false,
                    )
                }
            },
        )
        .collect();
    let cheapest_fitting = sizes
        .iter()
        .filter(|s| s.seconds_per_2gib <= MAX_INVOCATION_S)
        .min_by(|a, b| a.usd_per_tib.total_cmp(&b.usd_per_tib))
        .map(|s| s.memory_mb);
    json!({
        "price": PRICE_SOURCE,
        "file_mib": FILE_MIB,
        "cheapest_size_mb_with_2gib_in_one_invocation": cheapest_fitting,
        "sizes": sizes.iter().map(|s| json!({
            "memory_mb": s.memory_mb,
            "mib_s": (s.mib_s * 10.0).round() / 10.0,
            "measured": s.measured,
            "usd_per_tib": (s.usd_per_tib * 1000.0).round() / 1000.0,
            "seconds_per_2gib": s.seconds_per_2gib.round(),
        })).collect::<Vec<_>>(),
    })
}

pub fn print_table(cost: &Value) {
    let Some(sizes) = cost["sizes"].as_array() else {
        return;
    };
    println!("\n| memory MB | MiB/s | measured | $ per TiB | s per 2 GiB |\n|---|---|---|---|---|");
    for s in sizes {
        println!(
            "| {} | {} | {} | {} | {} |",
            s["memory_mb"], s["mib_s"], s["measured"], s["usd_per_tib"], s["seconds_per_2gib"]
        );
    }
    println!("{}", cost["price"].as_str().unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tib_at_one_gib_per_second_per_gb_costs_its_gb_seconds() {
        // 1 TiB at 1,024 MiB/s is 1,024 s; at 1,024 MB that is 1,024 GB-s, plus 512 requests.
        let cost = size_cost(1024, 1024.0, true);
        let expected = 1024.0 * PRICE_PER_GB_SECOND + 512.0 * PRICE_PER_REQUEST;
        assert!((cost.usd_per_tib - expected).abs() < 1e-9, "{cost:?}");
        assert_eq!(cost.seconds_per_2gib, 2.0);
    }

    #[test]
    fn cpu_bound_throughput_makes_the_price_per_byte_flat() {
        // Twice the memory, twice the CPU share, twice the speed: the same bill.
        let small = size_cost(512, 50.0, false);
        let large = size_cost(1024, 100.0, false);
        assert!((small.usd_per_tib - large.usd_per_tib).abs() < 1e-9);
    }
}
