//! A real webhook receiver for the tests: `scripts/webhooks/receiver.py`, which verifies each
//! delivery with the Standard Webhooks reference library (not haul's code), answers with the
//! statuses scripted per path and logs every request. Stopped when dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct Receiver {
    pub port: u16,
    log: PathBuf,
    _child: Child,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The receiver venv's python (`scripts/webhooks/install.sh` makes it; `make test` runs that).
fn python() -> Result<PathBuf, BoxError> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = std::process::Command::new(root.join("scripts/webhooks/install.sh"))
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err("scripts/webhooks/install.sh failed".into());
    }
    Ok(PathBuf::from(String::from_utf8(output.stdout)?.trim()))
}

impl Receiver {
    /// Starts a receiver that verifies with each of `secrets` and answers `path` with its
    /// scripted statuses in turn (the last one from then on); other paths answer 200.
    pub async fn start(secrets: &[&str], scripts: &[(&str, &[u16])]) -> Result<Self, BoxError> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = std::env::temp_dir().join(format!("haul-receiver-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("deliveries.jsonl");
        let mut command = Command::new(python()?);
        command
            .arg(root.join("scripts/webhooks/receiver.py"))
            .arg("--log")
            .arg(&log)
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        for secret in secrets {
            command.arg("--secret").arg(secret);
        }
        for (path, codes) in scripts {
            let codes: Vec<String> = codes.iter().map(u16::to_string).collect();
            command
                .arg("--script")
                .arg(format!("{path}={}", codes.join(",")));
        }
        let mut child = command.spawn()?;
        let stdout = child.stdout.take().ok_or("receiver has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .map_err(|_| "receiver did not start within 30 s")??
            .ok_or("receiver exited")?;
        let port = first
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("unexpected receiver output {first:?}"))?;
        Ok(Self {
            port,
            log,
            _child: child,
            _dir: TempDir(dir),
        })
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request received so far, in order.
    pub fn deliveries(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The requests to `path`.
    pub fn deliveries_to(&self, path: &str) -> Vec<Value> {
        self.deliveries()
            .into_iter()
            .filter(|d| d["path"] == path)
            .collect()
    }

    /// Waits until `path` got at least `n` requests.
    pub async fn wait_for(&self, path: &str, n: usize, timeout: Duration) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let got = self.deliveries_to(path);
            if got.len() >= n || started.elapsed() > timeout {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
