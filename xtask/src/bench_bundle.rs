//! `make bench` (bundle part, `xtask bench-bundle <bundle-once>`): the zip bundler's peak
//! memory on files whose total passes 4 GiB, so the archive needs ZIP64 for real (entries and
//! the central directory past the 4 GiB offset). The sources are put
//! in the local stack's S3, `bundle-once` (the release bundler as its own process, configured
//! like the worker function) writes the archive, and its peak RSS comes from the kernel's
//! own high-water mark (`VmHWM`, which `bundle-once` reports). The archive is read back and checked by Python's zipfile
//! (names, sizes, testzip, a SHA-256 of every member against the source's) and `unzip -t`
//! (scripts/zip/verify.py). Writes `target/bench/bundle.json`.
//!
//! Two runs by default, to show the peak is flat: about 1 GiB (one 1,040 MiB file, an empty
//! one) and about 4 GiB (the 1,040 MiB file four times, one of 64 MiB, an empty one: 4,160 MiB,
//! so entries, their offsets and the central directory pass 4 GiB); a 1000-byte file is added
//! to each. `HAUL_BENCH_BUNDLE_MIB` (e.g. `20,0`) makes it one run of those sizes in MiB, the
//! first one put in the archive `HAUL_BENCH_BUNDLE_COPIES` times (default 4).
//! Reading one object several times keeps the local stack's disk use down: it holds the
//! sources, the archive's parts and, while completing, the archive again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use haul::artifacts::{ArtifactStore, UploadedPart};
use haul_tests::harness::{AppOptions, spawn_app_with};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::BoxError;

const MIB: u64 = 1024 * 1024;
const GIB: f64 = (1u64 << 30) as f64;
/// The sources go up in parts of this size.
const PUT_PART: u64 = 64 * MIB;

struct Planned {
    name: String,
    size: u64,
    seed: u64,
}

/// One run: its label in `bundle.json`, the files' sizes in MiB, and the first one's copies.
struct Run {
    label: String,
    mib: String,
    copies: usize,
}

fn runs() -> Result<Vec<Run>, BoxError> {
    let Ok(mib) = std::env::var("HAUL_BENCH_BUNDLE_MIB") else {
        return Ok(vec![
            Run {
                label: "1gib".into(),
                mib: "1040,0".into(),
                copies: 1,
            },
            Run {
                label: "4gib".into(),
                mib: "1040,64,0".into(),
                copies: 4,
            },
        ]);
    };
    let copies = match std::env::var("HAUL_BENCH_BUNDLE_COPIES") {
        Ok(raw) => raw
            .parse()
            .map_err(|e| format!("HAUL_BENCH_BUNDLE_COPIES: {e}"))?,
        Err(_) => 4,
    };
    Ok(vec![Run {
        label: "custom".into(),
        mib,
        copies,
    }])
}

fn plan(raw: &str) -> Result<Vec<Planned>, BoxError> {
    let mut files = Vec::new();
    for (i, mib) in raw.split(',').map(str::trim).enumerate() {
        let mib: u64 = mib
            .parse()
            .map_err(|e| format!("HAUL_BENCH_BUNDLE_MIB: {e}"))?;
        files.push(Planned {
            name: format!("file-{i}-{mib}MiB.bin"),
            size: mib * MIB,
            seed: i as u64 + 1,
        });
    }
    files.push(Planned {
        name: "notes.txt".into(),
        size: 1000,
        seed: 99,
    });
    Ok(files)
}

/// Deterministic bytes: xorshift64, eight at a time.
struct Pattern(u64);

impl Pattern {
    fn fill(&mut self, buffer: &mut BytesMut, len: usize) {
        buffer.clear();
        while buffer.len() < len {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let take = (len - buffer.len()).min(8);
            buffer.extend_from_slice(&self.0.to_le_bytes()[..take]);
        }
    }
}

/// Stores one planned file; returns the SHA-256 of its bytes.
async fn put_source(store: &ArtifactStore, key: &str, file: &Planned) -> Result<String, BoxError> {
    let mut pattern = Pattern(file.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut sha = Sha256::new();
    let mut buffer = BytesMut::with_capacity(PUT_PART as usize);
    if file.size < PUT_PART {
        pattern.fill(&mut buffer, file.size as usize);
        sha.update(&buffer);
        store
            .put(key, buffer.freeze(), "application/octet-stream")
            .await?;
        return Ok(hex(&sha.finalize()));
    }
    let upload_id = store
        .start_multipart(key, "application/octet-stream")
        .await?;
    let mut parts: Vec<UploadedPart> = Vec::new();
    let mut done = 0;
    while done < file.size {
        let len = PUT_PART.min(file.size - done);
        pattern.fill(&mut buffer, len as usize);
        sha.update(&buffer);
        let body = Bytes::copy_from_slice(&buffer);
        let number = parts.len() as i32 + 1;
        parts.push(store.upload_part(key, &upload_id, number, body).await?);
        done += len;
    }
    store.complete_multipart(key, &upload_id, parts).await?;
    Ok(hex(&sha.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the bundler as a child; returns its result line, wall seconds and peak RSS (KiB, its
/// own `VmHWM`: see tests/src/bin/bundle_once.rs for why not `RUSAGE_CHILDREN`).
fn run_bundler(
    binary: &str,
    list: &Path,
    dest: &str,
    env: &[(String, String)],
) -> Result<(Value, f64, u64), BoxError> {
    let started = Instant::now();
    let output = std::process::Command::new(binary)
        .arg(list)
        .arg(dest)
        .envs(env.iter().map(|(k, v)| (k, v)))
        // As template.yaml configures the worker function.
        .env("MALLOC_ARENA_MAX", "2")
        .stderr(std::process::Stdio::inherit())
        .output()?;
    let seconds = started.elapsed().as_secs_f64();
    if !output.status.success() {
        return Err(format!("bundle-once failed: {}", output.status).into());
    }
    let line: Value = serde_json::from_slice(&output.stdout)?;
    let peak = line
        .get("peakRssKib")
        .and_then(Value::as_u64)
        .ok_or("bundle-once reported no peakRssKib")?;
    Ok((line, seconds, peak))
}

async fn download(store: &ArtifactStore, key: &str, path: &Path) -> Result<(), BoxError> {
    let mut read = store.get(key, None, None).await?.ok_or("no archive")?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    while let Some(chunk) = read.next_chunk().await {
        file.write_all(&chunk?)?;
    }
    file.flush()?;
    Ok(())
}

fn verify(archive: &Path, manifest: &Path) -> Result<(), BoxError> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/zip/verify.py");
    let status = std::process::Command::new("python3")
        .arg(script)
        .arg(archive)
        .arg(manifest)
        .status()?;
    if !status.success() {
        return Err("the archive failed verification (above)".into());
    }
    Ok(())
}

pub async fn run(args: &[String]) -> Result<(), BoxError> {
    let binary = args
        .first()
        .ok_or("usage: xtask bench-bundle <release bundle-once>")?;
    let app = spawn_app_with(AppOptions {
        part_size_mib: 8,
        ..AppOptions::default()
    })
    .await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    for run in runs()? {
        eprintln!(
            "bench-bundle: run {} ({} MiB, first x{})",
            run.label, run.mib, run.copies
        );
        rows.push(run_once(&app, &dir, binary, &run).await?);
    }
    report(&dir, rows)
}

/// One archive: sources stored, bundled by `bundle-once`, read back and verified.
async fn run_once(
    app: &haul_tests::TestApp,
    dir: &Path,
    binary: &str,
    run: &Run,
) -> Result<Value, BoxError> {
    let store = &app.services.artifacts;
    let files = plan(&run.mib)?;
    let mut sources = Vec::new();
    let mut manifest = Vec::new();
    let mut keys = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let key = ArtifactStore::new_key();
        eprintln!("bench-bundle: storing {} ({} bytes)", file.name, file.size);
        let sha256 = put_source(store, &key, file).await?;
        let times = if i == 0 { run.copies.max(1) } else { 1 };
        for copy in 1..=times {
            let name = match times {
                1 => file.name.clone(),
                _ => format!("copy-{copy}-{}", file.name),
            };
            sources.push(json!({"key": key, "name": name, "size": file.size}));
            manifest.push(json!({"name": name, "size": file.size, "sha256": sha256}));
        }
        keys.push(key);
    }
    check_disk(dir, sizes(&sources).iter().sum())?;
    let list = dir.join("bundle-sources.json");
    std::fs::write(&list, serde_json::to_vec(&sources)?)?;
    let dest = ArtifactStore::new_key();
    let env: Vec<(String, String)> = app.env.clone().into_iter().collect();
    eprintln!("bench-bundle: bundling with {binary}");
    let (result, seconds, peak_kib) = run_bundler(binary, &list, &dest, &env)?;

    for key in &keys {
        store.delete(key).await?;
    }
    let archive: PathBuf = dir.join("bundle.zip");
    download(store, &dest, &archive).await?;
    store.delete(&dest).await?;
    let manifest_path = dir.join("bundle-manifest.json");
    let zip64 = result.get("zip64").and_then(Value::as_bool) == Some(true);
    // Past 4 GiB of data the archive must have the ZIP64 end records (`HAUL_BENCH_BUNDLE_MIB`
    // may ask for less, for a quick look).
    let total: u64 = sizes(&sources).iter().sum();
    let expected = json!({"zip64": total >= u64::from(u32::MAX), "entries": manifest});
    std::fs::write(&manifest_path, serde_json::to_vec(&expected)?)?;
    let verified = verify(&archive, &manifest_path);
    let _ = std::fs::remove_file(&archive);
    verified?;
    Ok(row(
        run,
        &sizes(&sources),
        &result,
        seconds,
        peak_kib,
        zip64,
        app,
    ))
}

/// The local stack holds the archive's parts and, while completing it, the archive again; the
/// read-back puts one more copy on disk. Refuses to start without room for them.
fn check_disk(dir: &Path, total: u64) -> Result<(), BoxError> {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())?;
    // SAFETY: `statvfs` is plain data that statvfs fills; `path` is a valid C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err("statvfs failed".into());
    }
    let free = stat.f_bavail as u64 * stat.f_frsize as u64;
    let needed = 3 * total + (1 << 30);
    if free < needed {
        return Err(format!(
            "{} GiB free on the disk, {} GiB needed (the archive three times over, plus 1 GiB)",
            free >> 30,
            needed >> 30
        )
        .into());
    }
    Ok(())
}

fn sizes(sources: &[Value]) -> Vec<u64> {
    sources
        .iter()
        .filter_map(|s| s.get("size").and_then(Value::as_u64))
        .collect()
}

fn row(
    run: &Run,
    sizes: &[u64],
    result: &Value,
    seconds: f64,
    peak_kib: u64,
    zip64: bool,
    app: &haul_tests::TestApp,
) -> Value {
    let total: u64 = sizes.iter().sum();
    let archive = result.get("size").and_then(Value::as_u64).unwrap_or(0);
    let config = &app.services.config;
    json!({
        "run": run.label,
        "peak_rss_mib": (peak_kib as f64 / 1024.0 * 10.0).round() / 10.0,
        "total_gib": (total as f64 / GIB * 1000.0).round() / 1000.0,
        "archive_bytes": archive,
        "source_bytes": total,
        "entries": sizes.len(),
        "zip64": zip64,
        "seconds": (seconds * 10.0).round() / 10.0,
        "mib_per_s": (total as f64 / MIB as f64 / seconds).round(),
        "part_size_mib": config.part_size as u64 / MIB,
        "parts_in_flight": config.parts_in_flight,
        "verified": "python zipfile (names, sizes, testzip, SHA-256 per member) and unzip -t",
        "sizes_bytes": sizes,
    })
}

/// `bundle.json`: every run, and the peaks at 1 and 4 GiB with the target (<= 64 MiB, flat).
fn report(dir: &Path, rows: Vec<Value>) -> Result<(), BoxError> {
    let peak = |label: &str| {
        rows.iter()
            .find(|r| r["run"] == label)
            .and_then(|r| r["peak_rss_mib"].as_f64())
    };
    let (small, large) = (peak("1gib"), peak("4gib"));
    let flat = small.zip(large).map(|(a, b)| (b - a).abs() <= 4.0);
    let met = |v: Option<f64>| v.map(|v| if v <= 64.0 { "met" } else { "not met" });
    let summary = json!({
        "peak_rss_mib_1gib": small,
        "peak_rss_mib_4gib": large,
        "checks": {
            "peak_rss_mib_1gib": met(small).map(|m| format!("<= 64: {m}")),
            "peak_rss_mib_4gib": met(large).map(|m| format!("<= 64: {m}")),
            "flat": flat.map(|f| if f { "within 4 MiB: met" } else { "within 4 MiB: not met" }),
        },
        "runs": rows,
    });
    std::fs::write(
        dir.join("bundle.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
