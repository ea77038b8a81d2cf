//! What Ctrl-C needs to know: the temporary file being written (to remove it) and the job being
//! followed (to say how to continue it).

use std::path::PathBuf;
use std::sync::Mutex;

use crate::ui::short;

/// The temporary file being written and the job being followed, for Ctrl-C.
pub static INTERRUPTED_STATE: Mutex<(Option<PathBuf>, Option<String>)> = Mutex::new((None, None));

pub fn remember_temp(path: Option<PathBuf>) {
    if let Ok(mut state) = INTERRUPTED_STATE.lock() {
        state.0 = path;
    }
}

pub fn remember_job(job_id: &str) {
    if let Ok(mut state) = INTERRUPTED_STATE.lock() {
        state.1 = Some(job_id.to_string());
    }
}

/// What Ctrl-C should say.
pub fn interrupted_hint() -> Option<String> {
    let state = INTERRUPTED_STATE.lock().ok()?;
    state.1.as_ref().map(|job| {
        format!(
            "job {job} ({}) keeps going on the server; run the same command again, or `haul get --job {job}`, to continue",
            short(job)
        )
    })
}

/// Removes the partial download after Ctrl-C.
pub fn remove_partial() {
    if let Ok(mut state) = INTERRUPTED_STATE.lock()
        && let Some(path) = state.0.take()
    {
        let _ = std::fs::remove_file(path);
    }
}
