//! `target/bench/worker.json` and the printed table: per share and tool, the figures over both
//! file sizes together, and the worker's ratios to the best peer.
//!
//! - MiB/s: all bytes of the share's runs over their summed wall time (256 MiB and 2 GiB);
//! - CPU-s/GiB: the box's CPU time (cpuacct) over the GiB moved;
//! - quota used: CPU time over wall time × the share; near 1 means the tool was CPU-bound,
//!   well below 1 means something outside its box (the sink, the origin) held it back;
//! - sink CPU-s/GiB: the S3 sink's own CPU time meanwhile (s3s-fs by default; LocalStack's
//!   one Python process when `HAUL_BENCH_SINK=localstack`): its cores busy per second of wall
//!   time near what it can use means the sink, not the tool, set the pace.
//!
//! Ratios are the worker's over the best peer's: for MiB/s the fastest peer, for CPU-s/GiB
//! the cheapest peer. Peers with a failed or unverified run are left out of "best".

use serde_json::{Value, json};

use super::cgroup::Share;
use super::measure::Sample;
use super::peers::Tool;

const GIB: f64 = 1024.0;

/// One transfer of the bench.
#[derive(Debug, Clone)]
pub struct Row {
    pub tool: Tool,
    pub share: Share,
    pub size_mib: u64,
    pub sample: Option<Sample>,
    /// Read back with the right length and CRC-32.
    pub verified: bool,
    pub error: Option<String>,
}

/// A tool's figures at one share, over every file size.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub mib_s: f64,
    pub cpu_s_per_gib: f64,
    pub quota_used: f64,
    pub peak_rss_mib: f64,
    pub box_peak_mib: f64,
    pub sink_cpu_s_per_gib: Option<f64>,
    pub sink_cores_busy: Option<f64>,
    pub dynamodb_cpu_s_per_gib: Option<f64>,
}

/// The summary of `tool` at `share`, if every one of its runs there succeeded and verified.
pub fn summarize(rows: &[Row], tool: Tool, share: Share) -> Option<Summary> {
    let runs: Vec<&Row> = rows
        .iter()
        .filter(|r| r.tool == tool && r.share.name == share.name)
        .collect();
    if runs.is_empty() || runs.iter().any(|r| !r.verified || r.sample.is_none()) {
        return None;
    }
    let samples: Vec<(&Sample, f64)> = runs
        .iter()
        .filter_map(|r| Some((r.sample.as_ref()?, r.size_mib as f64)))
        .collect();
    let mib: f64 = samples.iter().map(|(_, m)| m).sum();
    let wall: f64 = samples.iter().map(|(s, _)| s.wall.as_secs_f64()).sum();
    let cpu: f64 = samples.iter().map(|(s, _)| s.cpu_s).sum();
    let optional_sum = |f: fn(&Sample) -> Option<f64>| -> Option<f64> {
        samples.iter().map(|(s, _)| f(s)).sum::<Option<f64>>()
    };
    let sink = optional_sum(|s| s.sink_cpu_s);
    Some(Summary {
        mib_s: mib / wall,
        cpu_s_per_gib: cpu / (mib / GIB),
        quota_used: cpu / (wall * share.vcpus()),
        peak_rss_mib: samples
            .iter()
            .map(|(s, _)| s.peak_rss_kib as f64 / 1024.0)
            .fold(0.0, f64::max),
        box_peak_mib: samples
            .iter()
            .map(|(s, _)| s.box_peak_bytes as f64 / 1048576.0)
            .fold(0.0, f64::max),
        sink_cpu_s_per_gib: sink.map(|s| s / (mib / GIB)),
        sink_cores_busy: sink.map(|s| s / wall),
        dynamodb_cpu_s_per_gib: optional_sum(|s| s.dynamodb_cpu_s).map(|s| s / (mib / GIB)),
    })
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// The best peer by `key` (largest when `higher_is_better`), with its value.
fn best_peer(
    rows: &[Row],
    share: Share,
    key: fn(&Summary) -> f64,
    higher_is_better: bool,
) -> Option<(Tool, f64)> {
    Tool::ALL
        .into_iter()
        .filter(|t| *t != Tool::Worker)
        .filter_map(|t| summarize(rows, t, share).map(|s| (t, key(&s))))
        .max_by(|a, b| {
            let order = a.1.total_cmp(&b.1);
            if higher_is_better {
                order
            } else {
                order.reverse()
            }
        })
}

/// The `lambda512` / `vcpu1` object of worker.json.
fn share_report(rows: &[Row], share: Share) -> Value {
    let worker = summarize(rows, Tool::Worker, share);
    let fastest = best_peer(rows, share, |s| s.mib_s, true);
    let cheapest = best_peer(rows, share, |s| s.cpu_s_per_gib, false);
    let ratio = |mine: Option<f64>, best: Option<(Tool, f64)>| match (mine, best) {
        (Some(mine), Some((_, best))) if best > 0.0 => json!(round(mine / best, 2)),
        _ => Value::Null,
    };
    let tools: serde_json::Map<String, Value> = Tool::ALL
        .into_iter()
        .filter_map(|t| {
            Some((
                t.name().to_owned(),
                summary_json(&summarize(rows, t, share)?),
            ))
        })
        .collect();
    json!({
        "cpu_quota_ms_per_100ms": share.quota_us / 1000,
        "lambda_memory_mb": share.lambda_memory_mb,
        "ratio_mib_s_vs_best_peer": ratio(worker.map(|w| w.mib_s), fastest),
        "ratio_cpu_s_per_gib_vs_best_peer": ratio(worker.map(|w| w.cpu_s_per_gib), cheapest),
        "best_peer_mib_s": fastest.map(|(t, _)| t.name()),
        "best_peer_cpu_s_per_gib": cheapest.map(|(t, _)| t.name()),
        "tools": tools,
    })
}

fn summary_json(s: &Summary) -> Value {
    json!({
        "mib_s": round(s.mib_s, 1),
        "cpu_s_per_gib": round(s.cpu_s_per_gib, 2),
        "quota_used": round(s.quota_used, 2),
        "peak_rss_mib": round(s.peak_rss_mib, 1),
        "box_peak_mib": round(s.box_peak_mib, 1),
        "sink_cpu_s_per_gib": s.sink_cpu_s_per_gib.map(|v| round(v, 2)),
        "sink_cores_busy": s.sink_cores_busy.map(|v| round(v, 2)),
        "dynamodb_cpu_s_per_gib": s.dynamodb_cpu_s_per_gib.map(|v| round(v, 2)),
    })
}

/// The worker's largest peak RSS at `size_mib` over every share, MiB.
fn worker_peak_rss(rows: &[Row], size_mib: u64) -> Option<f64> {
    rows.iter()
        .filter(|r| r.tool == Tool::Worker && r.size_mib == size_mib)
        .filter_map(|r| r.sample.as_ref())
        .map(|s| round(s.peak_rss_kib as f64 / 1024.0, 1))
        .reduce(f64::max)
}

/// The whole of worker.json.
pub fn worker_json(rows: &[Row], shares: &[Share], versions: Value, notes: Value) -> Value {
    let mut report = serde_json::Map::new();
    for share in shares {
        report.insert(share.name.to_owned(), share_report(rows, *share));
    }
    let peers: Vec<&str> = Tool::ALL
        .into_iter()
        .filter(|t| *t != Tool::Worker && rows.iter().any(|r| r.tool == *t && r.verified))
        .map(Tool::name)
        .collect();
    report.insert("peers_measured".into(), json!(peers));
    report.insert("peak_rss_mib_256".into(), json!(worker_peak_rss(rows, 256)));
    report.insert(
        "peak_rss_mib_2048".into(),
        json!(worker_peak_rss(rows, 2048)),
    );
    report.insert("targets".into(), targets(&report));
    report.insert("tool_versions".into(), versions);
    report.insert("notes".into(), notes);
    report.insert("runs".into(), rows.iter().map(row_json).collect());
    Value::Object(report)
}

/// The targets, each with whether this run met it.
fn targets(report: &serde_json::Map<String, Value>) -> Value {
    let get = |share: &str, key: &str| report.get(share).and_then(|s| s.get(key)?.as_f64());
    let rss = |key: &str| report.get(key).and_then(Value::as_f64);
    let check = |value: Option<f64>, ok: fn(f64) -> bool, rule: &str| json!({ "rule": rule, "value": value, "met": value.is_some_and(ok) });
    let (small, large) = (rss("peak_rss_mib_256"), rss("peak_rss_mib_2048"));
    // Flat: the 2 GiB peak within 10% (and 4 MiB) of the 256 MiB one.
    let flat = small.zip(large).map(|(s, l)| l - s.max(0.0));
    json!({
        "lambda512.ratio_mib_s_vs_best_peer": check(get("lambda512", "ratio_mib_s_vs_best_peer"), |v| v >= 1.3, ">= 1.3"),
        "lambda512.ratio_cpu_s_per_gib_vs_best_peer": check(get("lambda512", "ratio_cpu_s_per_gib_vs_best_peer"), |v| v <= 0.7, "<= 0.7"),
        "vcpu1.ratio_mib_s_vs_best_peer": check(get("vcpu1", "ratio_mib_s_vs_best_peer"), |v| v >= 1.0, ">= 1.0"),
        "peak_rss_mib_2048": check(large, |v| v <= 64.0, "<= 64"),
        "peak_rss_growth_mib_256_to_2048": check(flat, |v| v <= 4.0, "<= 4 (flat)"),
    })
}

fn row_json(row: &Row) -> Value {
    let mut value = json!({
        "tool": row.tool.name(),
        "share": row.share.name,
        "size_mib": row.size_mib,
        "bytes_verified": row.verified,
    });
    if let (Some(s), Some(map)) = (&row.sample, value.as_object_mut()) {
        let wall = s.wall.as_secs_f64();
        map.insert("wall_s".into(), json!(round(wall, 2)));
        map.insert("mib_s".into(), json!(round(row.size_mib as f64 / wall, 1)));
        map.insert("cpu_s".into(), json!(round(s.cpu_s, 2)));
        map.insert("rusage_cpu_s".into(), json!(round(s.rusage_cpu_s, 2)));
        map.insert(
            "peak_rss_mib".into(),
            json!(round(s.peak_rss_kib as f64 / 1024.0, 1)),
        );
        map.insert(
            "box_peak_mib".into(),
            json!(round(s.box_peak_bytes as f64 / 1048576.0, 1)),
        );
        map.insert("throttled_periods".into(), json!(s.throttled_periods));
        map.insert(
            "sink_cpu_s".into(),
            json!(s.sink_cpu_s.map(|v| round(v, 2))),
        );
        map.insert(
            "dynamodb_cpu_s".into(),
            json!(s.dynamodb_cpu_s.map(|v| round(v, 2))),
        );
        map.insert("origin_cpu_s".into(), json!(round(s.origin_cpu_s, 2)));
    }
    if let (Some(error), Some(map)) = (&row.error, value.as_object_mut()) {
        map.insert("error".into(), json!(error));
    }
    value
}

/// The table `make bench` prints.
pub fn print_table(rows: &[Row], shares: &[Share]) {
    println!(
        "| share | tool | MiB/s | CPU-s/GiB | quota used | peak RSS MiB | box peak MiB | sink CPU-s/GiB | sink cores busy |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
    for share in shares {
        for tool in Tool::ALL {
            match summarize(rows, tool, *share) {
                Some(s) => println!(
                    "| {} | {} | {:.1} | {:.2} | {:.2} | {:.1} | {:.1} | {} | {} |",
                    share.name,
                    tool.name(),
                    s.mib_s,
                    s.cpu_s_per_gib,
                    s.quota_used,
                    s.peak_rss_mib,
                    s.box_peak_mib,
                    opt(s.sink_cpu_s_per_gib),
                    opt(s.sink_cores_busy),
                ),
                None if rows
                    .iter()
                    .any(|r| r.tool == tool && r.share.name == share.name) =>
                {
                    println!(
                        "| {} | {} | failed or unverified (see runs) | | | | | | |",
                        share.name,
                        tool.name()
                    )
                }
                None => {}
            }
        }
    }
}
