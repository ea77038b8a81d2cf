//! `bundle: "zip"` against LocalStack's S3: objects in, one archive out, read back and checked
//! by independent readers (Python's zipfile and Info-ZIP's `unzip -t`, scripts/zip/verify.py).

use bytes::Bytes;
use haul::artifacts::ArtifactStore;
use haul_tests::TestApp;
use haul_tests::harness::spawn_app;
use haul_tests::zipcheck::assert_readers_accept;
use haul_worker::bundle::zip::{DosTime, ZipWriter};
use haul_worker::bundle::{BundleError, BundleOptions, BundleResult, Source, bundle};
use serde_json::json;

use crate::sha256_hex;

const MIB: usize = 1024 * 1024;
/// 2025-06-01 12:00:00 UTC.
const MODIFIED: i64 = 1_748_779_200_000;

/// Deterministic bytes that do not repeat with the part size.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Stores each (name, bytes) under a fresh key; returns the sources and their bytes.
async fn put_sources(app: &TestApp, files: Vec<(&str, Vec<u8>)>) -> Vec<(Source, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, data) in files {
        let key = ArtifactStore::new_key();
        app.services
            .artifacts
            .put(&key, Bytes::from(data.clone()), "application/octet-stream")
            .await
            .expect("put source");
        let source = Source {
            key,
            name: name.to_owned(),
            size: data.len() as u64,
        };
        out.push((source, data));
    }
    out
}

async fn download(app: &TestApp, key: &str) -> Vec<u8> {
    let mut read = app
        .services
        .artifacts
        .get(key, None, None)
        .await
        .expect("get archive")
        .expect("the archive exists");
    let mut out = Vec::new();
    while let Some(chunk) = read.next_chunk().await {
        out.extend_from_slice(&chunk.expect("archive chunk"));
    }
    out
}

/// The manifest of `names` and `contents`, checked by both readers.
fn verify(archive: &[u8], names: &[&str], contents: &[&[u8]], zip64: bool) {
    let entries: Vec<_> = names
        .iter()
        .zip(contents)
        .map(|(name, data)| json!({"name": name, "size": data.len(), "sha256": sha256_hex(data)}))
        .collect();
    assert_readers_accept(archive, &json!({"zip64": zip64, "entries": entries}));
}

async fn bundle_as_worker(
    app: &TestApp,
    sources: &[Source],
    key: &str,
    options: &BundleOptions,
) -> Result<BundleResult, BundleError> {
    haul::aws_calls::as_function("worker", bundle(&app.services, sources, key, options)).await
}

/// The files of the main test: an empty one, one spanning three 5 MiB parts, unsafe and
/// duplicate names, a non-ASCII one.
fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("a.txt", b"hello, zip\n".to_vec()),
        ("empty.bin", Vec::new()),
        ("big.bin", pattern(12 * MIB + 123, 1)),
        ("../../etc/passwd", b"not really\n".to_vec()),
        ("a.txt", b"a second a.txt\n".to_vec()),
        ("résumé ✓.pdf", pattern(1000, 2)),
    ]
}
const NAMES: [&str; 6] = [
    "a.txt",
    "empty.bin",
    "big.bin",
    "etc/passwd",
    "a (2).txt",
    "résumé ✓.pdf",
];

async fn bundles_and_readers_agree(force_zip64: bool) {
    let app = spawn_app().await;
    let stored = put_sources(&app, files()).await;
    let sources: Vec<Source> = stored.iter().map(|(s, _)| s.clone()).collect();
    let contents: Vec<&[u8]> = stored.iter().map(|(_, d)| d.as_slice()).collect();
    let key = ArtifactStore::new_key();
    let mut options = BundleOptions::new(MODIFIED);
    options.force_zip64 = force_zip64;
    let (progress, watch) = tokio::sync::watch::channel(0);
    options.progress = Some(progress);

    let result = bundle_as_worker(&app, &sources, &key, &options)
        .await
        .expect("bundle");
    let total: u64 = sources.iter().map(|s| s.size).sum();
    assert_eq!(*watch.borrow(), total, "progress reaches every source byte");
    assert_eq!(result.zip64, force_zip64);
    let names: Vec<&str> = result.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, NAMES);
    let archive = download(&app, &key).await;
    assert_eq!(archive.len() as u64, result.size);
    assert!(archive.len() > 2 * 5 * MIB, "the archive went up in parts");
    assert!(
        result
            .checksum_crc32c
            .as_deref()
            .is_some_and(|c| c.ends_with("-3")),
        "three parts: {:?}",
        result.checksum_crc32c
    );
    verify(&archive, &NAMES, &contents, force_zip64);

    // A retry writes the same archive again to the same key and leaves nothing behind.
    let again = bundle_as_worker(&app, &sources, &key, &options)
        .await
        .expect("bundle again");
    assert_eq!(again, result);
    assert_eq!(
        sha256_hex(&download(&app, &key).await),
        sha256_hex(&archive)
    );
    assert_eq!(app.incomplete_uploads().await, 0);
}

#[tokio::test]
async fn a_bundle_of_s3_objects_is_a_zip_that_python_and_unzip_read() {
    bundles_and_readers_agree(false).await;
}

#[tokio::test]
async fn a_forced_zip64_bundle_of_small_objects_is_read_the_same() {
    bundles_and_readers_agree(true).await;
}

#[tokio::test]
async fn a_small_bundle_goes_up_in_one_put() {
    let app = spawn_app().await;
    let stored = put_sources(&app, vec![("only.txt", b"one".to_vec())]).await;
    let key = ArtifactStore::new_key();
    let result = bundle_as_worker(&app, &[stored[0].0.clone()], &key, &BundleOptions::new(0))
        .await
        .expect("bundle");
    let archive = download(&app, &key).await;
    assert_eq!(archive.len() as u64, result.size);
    assert!(result.checksum_crc32c.is_some_and(|c| !c.contains('-')));
    verify(&archive, &["only.txt"], &[b"one"], false);
}

#[tokio::test]
async fn a_missing_or_changed_source_fails_and_leaves_no_upload_behind() {
    let app = spawn_app().await;
    let stored = put_sources(&app, vec![("big.bin", pattern(11 * MIB, 3))]).await;
    let big = stored[0].0.clone();
    let missing = Source {
        key: ArtifactStore::new_key(),
        name: "gone.bin".into(),
        size: 10,
    };
    // The big file's parts are on their way when the missing one is found.
    let key = ArtifactStore::new_key();
    let options = BundleOptions::new(MODIFIED);
    let sources = [big.clone(), missing.clone()];
    let err = bundle_as_worker(&app, &sources, &key, &options).await;
    assert!(
        matches!(&err, Err(BundleError::Missing { key }) if *key == missing.key),
        "{err:?}"
    );
    assert!(!err.as_ref().is_err_and(BundleError::is_transient));
    assert_eq!(app.incomplete_uploads().await, 0);
    assert!(!app.object_keys().await.contains(&key));

    let wrong_size = Source {
        size: big.size + 1,
        ..big
    };
    let err = bundle_as_worker(&app, &[wrong_size], &key, &options).await;
    assert!(matches!(err, Err(BundleError::Changed { .. })), "{err:?}");
    assert!(!app.object_keys().await.contains(&key));
}

/// The writer alone, past the entry count's 16-bit field: the readers take the count from the
/// ZIP64 end record.
#[test]
fn an_archive_of_65536_entries_uses_zip64_and_the_readers_count_them_all() {
    let count = 65_536;
    let mut zip = ZipWriter::new(DosTime::from_epoch_ms(MODIFIED), false);
    let mut archive = Vec::new();
    let names: Vec<String> = (0..count).map(|i| format!("d/{i}.txt")).collect();
    let contents: Vec<Vec<u8>> = (0..count).map(|i| i.to_string().into_bytes()).collect();
    for (name, data) in names.iter().zip(&contents) {
        archive.extend(zip.start_entry(name, data.len() as u64).unwrap());
        zip.data(data).unwrap();
        archive.extend_from_slice(data);
        archive.extend(zip.finish_entry().unwrap().0);
    }
    let finished = zip.finish().unwrap();
    assert!(finished.zip64);
    archive.extend(finished.tail);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let contents: Vec<&[u8]> = contents.iter().map(Vec::as_slice).collect();
    verify(&archive, &names, &contents, true);
}
