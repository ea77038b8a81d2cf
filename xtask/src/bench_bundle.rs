//! `make bench` (bundle part, `xtask bench-bundle <bundle-once>`): the zip bundler's peak
//! memory on files whose total passes 4 GiB, so the archive needs ZIP64 for real (entries and
//! the central directory past the 4 GiB offset). The sources are put
//! in the local stack's S3, `bundle-once` (the release bundler as its own process, configured
//! like the worker function) writes the archive, and its peak RSS comes from the kernel's
//! accounting of the waited child. The archive is read back and checked by Python's zipfile
//! (names, sizes, testzip, a SHA-256 of every member against the source's) and `unzip -t`
//! (scripts/zip/verify.py). Writes `target/bench/bundle.json`.
//!
//! `HAUL_BENCH_BUNDLE_MIB` (default `1040,64,0`) gives the stored files' sizes in MiB, and the
//! first one is put in the archive `HAUL_BENCH_BUNDLE_COPIES` times (default 4: 4,160 MiB, so
//! entries, their offsets and the central directory pass 4 GiB); a 1000-byte file is added.
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

fn plan() -> Result<Vec<Planned>, BoxError> {
    let raw = std::env::var("HAUL_BENCH_BUNDLE_MIB").unwrap_or_else(|_| "1040,64,0".into());
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

/// Runs the bundler as a child; returns its result line, wall seconds and peak RSS (KiB).
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
    // SAFETY: `rusage` is plain data that getrusage fills; the only child waited for so far
    // is the bundler, so the children's peak is its own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return Err("getrusage failed".into());
    }
    let line: Value = serde_json::from_slice(&output.stdout)?;
    Ok((line, seconds, usage.ru_maxrss.max(0) as u64))
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
    let files = plan()?;
    let app = spawn_app_with(AppOptions {
        part_size_mib: 8,
        ..AppOptions::default()
    })
    .await;
    let store = &app.services.artifacts;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;

    let Stored {
        sources,
        manifest,
        keys,
    } = store_sources(store, &files).await?;
    check_disk(&dir, sizes(&sources).iter().sum())?;
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
    report(
        &dir,
        &sizes(&sources),
        &result,
        seconds,
        peak_kib,
        zip64,
        &app,
    )
}

/// The bench's files in the bucket, the first one listed `HAUL_BENCH_BUNDLE_COPIES` times (4)
/// under different names: what the bundler reads, the manifest to check the archive by, and
/// the keys to delete afterwards.
struct Stored {
    sources: Vec<Value>,
    manifest: Vec<Value>,
    keys: Vec<String>,
}

async fn store_sources(store: &ArtifactStore, files: &[Planned]) -> Result<Stored, BoxError> {
    let copies: usize = match std::env::var("HAUL_BENCH_BUNDLE_COPIES") {
        Ok(raw) => raw
            .parse()
            .map_err(|e| format!("HAUL_BENCH_BUNDLE_COPIES: {e}"))?,
        Err(_) => 4,
    };
    let mut sources = Vec::new();
    let mut manifest = Vec::new();
    let mut keys = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let key = ArtifactStore::new_key();
        eprintln!("bench-bundle: storing {} ({} bytes)", file.name, file.size);
        let sha256 = put_source(store, &key, file).await?;
        let times = if i == 0 { copies.max(1) } else { 1 };
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
    Ok(Stored {
        sources,
        manifest,
        keys,
    })
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

fn report(
    dir: &Path,
    sizes: &[u64],
    result: &Value,
    seconds: f64,
    peak_kib: u64,
    zip64: bool,
    app: &haul_tests::TestApp,
) -> Result<(), BoxError> {
    let total: u64 = sizes.iter().sum();
    let archive = result.get("size").and_then(Value::as_u64).unwrap_or(0);
    let config = &app.services.config;
    let summary = json!({
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
    });
    std::fs::write(
        dir.join("bundle.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
