//! `pause` and `resume`: a priority's work stops being received, or starts again, by turning
//! the worker's SQS event source mapping on that priority's queue off or on. Nothing is lost
//! while paused: messages wait in the queue (their retention is 4 days), jobs already running
//! finish, and `resume` picks the backlog up where it stood.

use std::time::{Duration, Instant};

use haul::priority::Priority;
use serde::Serialize;

use crate::{Ops, OpsError};

/// A mapping's state as Lambda reports it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MappingState {
    pub priority: Priority,
    pub id: String,
    /// `Enabled`, `Disabled`, `Enabling`, `Disabling`, `Updating`, ...
    pub state: String,
}

/// What `pause` or `resume` did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MappingChange {
    pub priority: Priority,
    pub id: String,
    /// False when the mapping was in (or on its way to) the asked state already.
    pub changed: bool,
    /// The state last read: after `--wait`, the settled one.
    pub state: String,
}

impl Ops {
    pub async fn mapping_state(&self, priority: Priority) -> Result<MappingState, OpsError> {
        let id = self.resources.mappings.of(priority).clone();
        let mapping = self
            .clients
            .lambda
            .get_event_source_mapping()
            .uuid(&id)
            .send()
            .await
            .map_err(|e| OpsError::aws("lambda:GetEventSourceMapping", e))?;
        Ok(MappingState {
            priority,
            id,
            state: mapping.state.unwrap_or_else(|| "unknown".into()),
        })
    }

    /// Turns `priority`'s mapping on (`enabled`) or off. Repeating it is harmless: a mapping
    /// already in (or moving to) that state is left alone. With `wait`, reads the mapping
    /// until it settles, for at most that long.
    pub async fn set_enabled(
        &self,
        priority: Priority,
        enabled: bool,
        wait: Option<Duration>,
    ) -> Result<MappingChange, OpsError> {
        let (target, moving) = match enabled {
            true => ("Enabled", "Enabling"),
            false => ("Disabled", "Disabling"),
        };
        let before = self.mapping_state(priority).await?;
        let changed = before.state != target && before.state != moving;
        let mut state = before.state;
        if changed {
            let updated = self
                .clients
                .lambda
                .update_event_source_mapping()
                .uuid(&before.id)
                .enabled(enabled)
                .send()
                .await
                .map_err(|e| OpsError::aws("lambda:UpdateEventSourceMapping", e))?;
            state = updated.state.unwrap_or_else(|| moving.into());
        }
        if let Some(wait) = wait {
            let deadline = Instant::now() + wait;
            while state != target && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(500)).await;
                state = self.mapping_state(priority).await?.state;
            }
        }
        Ok(MappingChange {
            priority,
            id: before.id,
            changed,
            state,
        })
    }
}
