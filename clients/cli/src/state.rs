//! The idempotency key of an unfinished `haul get <file_id>`, kept on disk so that running the
//! same command again (after Ctrl-C, a crash, a lost network) continues the same job instead of
//! starting a second one.
//!
//! One small JSON file per (API URL, file id) under `$HAUL_STATE_DIR`, else
//! `$XDG_STATE_HOME/haul`, else `~/.local/state/haul`. It is written before the initiate
//! request is sent (so a request whose answer was lost is replayed with the same key), updated
//! with the job id once known, and removed when the file is saved or the job ended without a
//! file (failed, cancelled, expired). Entries older than [`MAX_AGE`] are ignored.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Jobs are kept about a day (retention) and their records a week more; a key older than this
/// would only replay a job that is gone.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    pub api_url: String,
    pub file_id: u64,
    pub idempotency_key: String,
    pub job_id: Option<String>,
    /// Seconds since the epoch.
    pub created_at: u64,
    /// The `--priority` the key was sent with (part of what the key stands for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
}

impl Pending {
    pub fn new(api_url: &str, file_id: u64) -> Self {
        Self {
            api_url: normalize(api_url),
            file_id,
            idempotency_key: format!("haul-cli-{}", uuid::Uuid::new_v4()),
            job_id: None,
            created_at: unix_now(),
            priority: None,
        }
    }
}

pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    /// The default location; `None` when there is no home directory to put it in.
    pub fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let dir = if let Some(dir) = var("HAUL_STATE_DIR") {
            PathBuf::from(dir)
        } else if let Some(dir) = var("XDG_STATE_HOME") {
            PathBuf::from(dir).join("haul")
        } else {
            PathBuf::from(var("HOME")?).join(".local/state/haul")
        };
        Some(Self { dir })
    }

    #[cfg(test)]
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, api_url: &str, file_id: u64) -> PathBuf {
        self.dir.join(entry_name(api_url, file_id))
    }

    /// The unfinished `get` of this file on this API, if any (and not stale or foreign).
    pub fn load(&self, api_url: &str, file_id: u64) -> Option<Pending> {
        let text = std::fs::read_to_string(self.path(api_url, file_id)).ok()?;
        let pending: Pending = serde_json::from_str(&text).ok()?;
        let fresh = unix_now().saturating_sub(pending.created_at) < MAX_AGE.as_secs();
        (fresh && pending.api_url == normalize(api_url) && pending.file_id == file_id)
            .then_some(pending)
    }

    /// Writes atomically (a temporary file renamed over the old one).
    pub fn save(&self, pending: &Pending) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path(&pending.api_url, pending.file_id);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec_pretty(pending)?)?;
        std::fs::rename(&tmp, &path)
    }

    pub fn remove(&self, api_url: &str, file_id: u64) {
        let _ = std::fs::remove_file(self.path(api_url, file_id));
    }
}

/// `https://api.example.com/` and `https://api.example.com` are the same API.
pub fn normalize(api_url: &str) -> String {
    api_url.trim().trim_end_matches('/').to_string()
}

/// A stable file name for (API URL, file id): FNV-1a of both, so any URL makes a safe name.
fn entry_name(api_url: &str, file_id: u64) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in normalize(api_url)
        .bytes()
        .chain([0])
        .chain(file_id.to_string().bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("get-{file_id}-{hash:016x}.json")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store() -> StateStore {
        StateStore::at(
            std::env::temp_dir().join(format!("haul-cli-state-{}", uuid::Uuid::new_v4())),
        )
    }

    #[test]
    fn entry_names_are_stable_and_distinct() {
        assert_eq!(
            entry_name("http://127.0.0.1:9000", 7),
            entry_name("http://127.0.0.1:9000/", 7)
        );
        assert_ne!(
            entry_name("http://127.0.0.1:9000", 7),
            entry_name("http://127.0.0.1:9001", 7)
        );
        assert_ne!(
            entry_name("http://127.0.0.1:9000", 7),
            entry_name("http://127.0.0.1:9000", 70)
        );
        // "…:900" + "07" must not collide with "…:9000" + "7".
        assert_ne!(entry_name("http://h:900", 7), entry_name("http://h:90", 7));
        assert!(entry_name("http://x/../../etc", 1).starts_with("get-1-"));
    }

    #[test]
    fn round_trip_update_and_remove() {
        let store = temp_store();
        let api = "http://127.0.0.1:9420/";
        assert_eq!(store.load(api, 5), None);
        let mut pending = Pending::new(api, 5);
        assert!(pending.idempotency_key.len() <= 128);
        assert!(
            pending
                .idempotency_key
                .bytes()
                .all(|b| b.is_ascii_graphic())
        );
        store.save(&pending).unwrap();
        assert_eq!(store.load(api, 5), Some(pending.clone()));
        assert_eq!(
            store.load("http://127.0.0.1:9420", 5),
            Some(pending.clone())
        );
        assert_eq!(store.load(api, 6), None);
        pending.job_id = Some("0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10".into());
        store.save(&pending).unwrap();
        assert_eq!(store.load(api, 5).unwrap().job_id, pending.job_id);
        store.remove(api, 5);
        assert_eq!(store.load(api, 5), None);
        let _ = std::fs::remove_dir_all(store.dir());
    }

    #[test]
    fn stale_or_corrupt_entries_are_ignored() {
        let store = temp_store();
        let api = "http://127.0.0.1:9420";
        let mut pending = Pending::new(api, 9);
        pending.created_at -= MAX_AGE.as_secs() + 1;
        store.save(&pending).unwrap();
        assert_eq!(store.load(api, 9), None);
        std::fs::write(store.path(api, 9), b"{not json").unwrap();
        assert_eq!(store.load(api, 9), None);
        let _ = std::fs::remove_dir_all(store.dir());
    }
}
