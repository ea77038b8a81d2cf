//! The idempotency key of an unfinished `haul get <file_id>`, kept on disk so that running the
//! same command again (after Ctrl-C, a crash, a lost network) continues the same job instead of
//! starting a second one.
//!
//! One small JSON file per (API URL, file id) — or (API URL, batch: its file ids in order and
//! whether as one archive) — under `$HAUL_STATE_DIR`, else
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

/// What a `haul get` asked for: one file, or a batch of them (and whether as one archive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    File(u64),
    Batch { file_ids: Vec<u64>, zip: bool },
}

impl Subject {
    /// The string the entry's name is hashed from: the file id (as before batches), or the
    /// batch's ids in their order, `+zip` for an archive.
    fn key(&self) -> String {
        match self {
            Subject::File(id) => id.to_string(),
            Subject::Batch { file_ids, zip } => {
                let ids: Vec<String> = file_ids.iter().map(u64::to_string).collect();
                format!("batch:{}{}", ids.join(","), if *zip { "+zip" } else { "" })
            }
        }
    }

    fn prefix(&self) -> String {
        match self {
            Subject::File(id) => format!("get-{id}"),
            Subject::Batch { .. } => "batch".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    pub api_url: String,
    /// The file of a single get (0 for a batch).
    #[serde(default)]
    pub file_id: u64,
    /// A batch's files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_ids: Vec<u64>,
    /// A batch asked as one archive.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub zip: bool,
    pub idempotency_key: String,
    pub job_id: Option<String>,
    /// Seconds since the epoch.
    pub created_at: u64,
    /// The `--priority` the key was sent with (part of what the key stands for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
}

impl Pending {
    pub fn new(api_url: &str, subject: &Subject) -> Self {
        let (file_id, file_ids, zip) = match subject {
            Subject::File(id) => (*id, Vec::new(), false),
            Subject::Batch { file_ids, zip } => (0, file_ids.clone(), *zip),
        };
        Self {
            api_url: normalize(api_url),
            file_id,
            file_ids,
            zip,
            idempotency_key: format!("haul-cli-{}", uuid::Uuid::new_v4()),
            job_id: None,
            created_at: unix_now(),
            priority: None,
        }
    }

    pub fn subject(&self) -> Subject {
        if self.file_ids.is_empty() {
            Subject::File(self.file_id)
        } else {
            Subject::Batch {
                file_ids: self.file_ids.clone(),
                zip: self.zip,
            }
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

    fn path(&self, api_url: &str, subject: &Subject) -> PathBuf {
        self.dir.join(entry_name(api_url, subject))
    }

    /// The unfinished `get` of this file (or batch) on this API, if any (and not stale or
    /// foreign).
    pub fn load(&self, api_url: &str, subject: &Subject) -> Option<Pending> {
        let text = std::fs::read_to_string(self.path(api_url, subject)).ok()?;
        let pending: Pending = serde_json::from_str(&text).ok()?;
        let fresh = unix_now().saturating_sub(pending.created_at) < MAX_AGE.as_secs();
        (fresh && pending.api_url == normalize(api_url) && pending.subject() == *subject)
            .then_some(pending)
    }

    /// Writes atomically (a temporary file renamed over the old one).
    pub fn save(&self, pending: &Pending) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path(&pending.api_url, &pending.subject());
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec_pretty(pending)?)?;
        std::fs::rename(&tmp, &path)
    }

    pub fn remove(&self, api_url: &str, subject: &Subject) {
        let _ = std::fs::remove_file(self.path(api_url, subject));
    }
}

/// `https://api.example.com/` and `https://api.example.com` are the same API.
pub fn normalize(api_url: &str) -> String {
    api_url.trim().trim_end_matches('/').to_string()
}

/// A stable file name for (API URL, file id or batch): FNV-1a of both, so any URL makes a safe
/// name.
fn entry_name(api_url: &str, subject: &Subject) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in normalize(api_url)
        .bytes()
        .chain([0])
        .chain(subject.key().bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{}-{hash:016x}.json", subject.prefix())
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
        let f = Subject::File;
        assert_eq!(
            entry_name("http://127.0.0.1:9000", &f(7)),
            entry_name("http://127.0.0.1:9000/", &f(7))
        );
        assert_ne!(
            entry_name("http://127.0.0.1:9000", &f(7)),
            entry_name("http://127.0.0.1:9001", &f(7))
        );
        assert_ne!(
            entry_name("http://127.0.0.1:9000", &f(7)),
            entry_name("http://127.0.0.1:9000", &f(70))
        );
        // "…:900" + "07" must not collide with "…:9000" + "7".
        assert_ne!(
            entry_name("http://h:900", &f(7)),
            entry_name("http://h:90", &f(7))
        );
        assert!(entry_name("http://x/../../etc", &f(1)).starts_with("get-1-"));
        let batch = |ids: &[u64], zip| Subject::Batch {
            file_ids: ids.to_vec(),
            zip,
        };
        let api = "http://127.0.0.1:9000";
        let name = entry_name(api, &batch(&[1, 5, 9], false));
        assert!(name.starts_with("batch-"), "{name}");
        assert_ne!(name, entry_name(api, &batch(&[1, 5, 9], true)));
        assert_ne!(name, entry_name(api, &batch(&[1, 59], false)));
        assert_ne!(name, entry_name(api, &batch(&[9, 5, 1], false)));
    }

    #[test]
    fn round_trip_update_and_remove() {
        let store = temp_store();
        let api = "http://127.0.0.1:9420/";
        let five = Subject::File(5);
        assert_eq!(store.load(api, &five), None);
        let mut pending = Pending::new(api, &five);
        assert!(pending.idempotency_key.len() <= 128);
        assert!(
            pending
                .idempotency_key
                .bytes()
                .all(|b| b.is_ascii_graphic())
        );
        store.save(&pending).unwrap();
        assert_eq!(store.load(api, &five), Some(pending.clone()));
        assert_eq!(
            store.load("http://127.0.0.1:9420", &five),
            Some(pending.clone())
        );
        assert_eq!(store.load(api, &Subject::File(6)), None);
        pending.job_id = Some("0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10".into());
        store.save(&pending).unwrap();
        assert_eq!(store.load(api, &five).unwrap().job_id, pending.job_id);
        store.remove(api, &five);
        assert_eq!(store.load(api, &five), None);
        // A batch: its own entry, found again by the same ids (and archive or not).
        let batch = Subject::Batch {
            file_ids: vec![1, 5, 9],
            zip: true,
        };
        let entry = Pending::new(api, &batch);
        store.save(&entry).unwrap();
        assert_eq!(store.load(api, &batch), Some(entry));
        let no_zip = Subject::Batch {
            file_ids: vec![1, 5, 9],
            zip: false,
        };
        assert_eq!(store.load(api, &no_zip), None);
        assert_eq!(store.load(api, &Subject::File(1)), None);
        store.remove(api, &batch);
        assert_eq!(store.load(api, &batch), None);
        let _ = std::fs::remove_dir_all(store.dir());
    }

    #[test]
    fn stale_or_corrupt_entries_are_ignored() {
        let store = temp_store();
        let api = "http://127.0.0.1:9420";
        let nine = Subject::File(9);
        let mut pending = Pending::new(api, &nine);
        pending.created_at -= MAX_AGE.as_secs() + 1;
        store.save(&pending).unwrap();
        assert_eq!(store.load(api, &nine), None);
        std::fs::write(store.path(api, &nine), b"{not json").unwrap();
        assert_eq!(store.load(api, &nine), None);
        let _ = std::fs::remove_dir_all(store.dir());
    }
}
