//! A job's priority: which of the three work queues it goes through. Each queue has its own
//! event source mapping with its own concurrency share, so high work always has workers of
//! its own and low work always progresses at its share, whatever waits on the other queues.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

/// A priority that is none of `high`, `normal` and `low`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("priority must be one of high, normal and low")]
pub struct UnknownPriority;

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

impl FromStr for Priority {
    type Err = UnknownPriority;

    /// Exactly the lowercase names: `"HIGH"` is refused like any other unknown value.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or(UnknownPriority)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_parse_from_their_lowercase_names_only() {
        for p in Priority::ALL {
            assert_eq!(p.as_str().parse::<Priority>(), Ok(p));
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        for bad in ["HIGH", "High", "urgent", "", " high"] {
            assert_eq!(bad.parse::<Priority>(), Err(UnknownPriority), "{bad:?}");
        }
        assert_eq!(Priority::default(), Priority::Normal);
    }
}
