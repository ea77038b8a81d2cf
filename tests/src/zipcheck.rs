//! Archives checked by independent readers: `scripts/zip/verify.py` runs Python's `zipfile`
//! (names, sizes, stored method, `testzip()`, each member's SHA-256, the ZIP64 end records) and
//! Info-ZIP's `unzip -t` on an archive against a manifest of what it must hold.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Panics with the readers' reasons unless both accept `archive` as `manifest` describes it:
/// `{"zip64": bool, "entries": [{"name", "size", "sha256"}]}`, in archive order.
pub fn assert_readers_accept(archive: &[u8], manifest: &Value) {
    let dir = std::env::temp_dir().join(format!("haul-zip-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (path, list) = (dir.join("archive.zip"), dir.join("manifest.json"));
    std::fs::write(&path, archive).expect("write archive");
    std::fs::write(&list, manifest.to_string()).expect("write manifest");
    let result = run_verifier(&path, &list);
    let _ = std::fs::remove_dir_all(&dir);
    result.unwrap_or_else(|e| panic!("{e}"));
}

fn run_verifier(archive: &Path, manifest: &Path) -> Result<(), String> {
    let script: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "scripts",
        "zip",
        "verify.py",
    ]
    .iter()
    .collect();
    let output = std::process::Command::new("python3")
        .arg(script)
        .arg(archive)
        .arg(manifest)
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "the readers reject the archive:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}
