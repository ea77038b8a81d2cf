//! Who may ask for what: `priority: "high"` is an entitlement, not a free choice, so that the
//! reserved high lane (its own queue and workers) belongs to the callers an operator gave it
//! to rather than to whoever fills it first.

use super::{ConfigError, Env};
use crate::priority::Priority;

/// The scope a token must carry for `high` when `HIGH_PRIORITY_SCOPE` is unset: the
/// `<resource server>/<scope>` shape OIDC providers (Cognito's resource servers among them)
/// give custom scopes.
pub const DEFAULT_HIGH_PRIORITY_SCOPE: &str = "haul/high";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriorityAccess {
    /// The scope that entitles a verified caller to `high` (`HIGH_PRIORITY_SCOPE`).
    pub high_scope: String,
    /// Whether callers without an authorizer (an open API) may ask for `high`
    /// (`ALLOW_ANONYMOUS_HIGH_PRIORITY`, off by default: anyone could take the lane).
    pub allow_anonymous_high: bool,
}

impl Default for PriorityAccess {
    fn default() -> Self {
        Self {
            high_scope: DEFAULT_HIGH_PRIORITY_SCOPE.to_owned(),
            allow_anonymous_high: false,
        }
    }
}

/// Whether a caller is refused the priority it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A verified caller whose token lacks the scope.
    MissingScope,
    /// A caller without an authorizer, on a deployment that keeps `high` for verified ones.
    Anonymous,
}

impl PriorityAccess {
    /// `scopes` is `None` without an authorizer, else the verified token's scopes. `low` and
    /// `normal` are everyone's.
    pub fn check<'s>(
        &self,
        priority: Priority,
        scopes: Option<impl IntoIterator<Item = &'s str>>,
    ) -> Result<(), Refusal> {
        if priority != Priority::High {
            return Ok(());
        }
        match scopes {
            None if self.allow_anonymous_high => Ok(()),
            None => Err(Refusal::Anonymous),
            Some(scopes) => {
                let mut scopes = scopes.into_iter();
                if scopes.any(|s| s == self.high_scope) {
                    Ok(())
                } else {
                    Err(Refusal::MissingScope)
                }
            }
        }
    }
}

pub(super) fn priority_access(env: &Env) -> Result<PriorityAccess, ConfigError> {
    let high_scope = env
        .get("HIGH_PRIORITY_SCOPE")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| DEFAULT_HIGH_PRIORITY_SCOPE.to_owned());
    // RFC 6749 section 3.3: a scope token is visible ASCII without space, `"` or `\`.
    if !high_scope
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        return Err(ConfigError::Invalid {
            name: "HIGH_PRIORITY_SCOPE",
            reason: "one OAuth scope: visible ASCII without spaces, quotes or backslashes".into(),
        });
    }
    let allow_anonymous_high = match env.get("ALLOW_ANONYMOUS_HIGH_PRIORITY").as_deref() {
        None => false,
        Some(raw) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => {
                return Err(ConfigError::Invalid {
                    name: "ALLOW_ANONYMOUS_HIGH_PRIORITY",
                    reason: format!("{raw:?} is not true or false"),
                });
            }
        },
    };
    Ok(PriorityAccess {
        high_scope,
        allow_anonymous_high,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<PriorityAccess, ConfigError> {
        let lookup = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        priority_access(&Env(&lookup))
    }

    #[test]
    fn high_needs_the_scope_and_the_rest_is_everyones() {
        let access = read(&[]).unwrap();
        assert_eq!(access, PriorityAccess::default());
        let none: Option<Vec<&str>> = None;
        for p in [Priority::Low, Priority::Normal] {
            assert_eq!(access.check(p, none.clone()), Ok(()));
            assert_eq!(access.check(p, Some(Vec::<&str>::new())), Ok(()));
        }
        assert_eq!(
            access.check(Priority::High, none.clone()),
            Err(Refusal::Anonymous)
        );
        assert_eq!(
            access.check(Priority::High, Some(vec!["openid", "haul/highest"])),
            Err(Refusal::MissingScope)
        );
        assert_eq!(
            access.check(Priority::High, Some(vec!["openid", "haul/high"])),
            Ok(())
        );
        let open = read(&[("ALLOW_ANONYMOUS_HIGH_PRIORITY", "true")]).unwrap();
        assert_eq!(open.check(Priority::High, none), Ok(()));
        // Allowing anonymous callers does not hand the lane to verified ones without the scope.
        assert_eq!(
            open.check(Priority::High, Some(Vec::<&str>::new())),
            Err(Refusal::MissingScope)
        );
    }

    #[test]
    fn the_settings_are_checked() {
        let custom = read(&[
            ("HIGH_PRIORITY_SCOPE", "api://haul/priority.high"),
            ("ALLOW_ANONYMOUS_HIGH_PRIORITY", "FALSE"),
        ])
        .unwrap();
        assert_eq!(custom.high_scope, "api://haul/priority.high");
        assert!(!custom.allow_anonymous_high);
        assert!(read(&[("HIGH_PRIORITY_SCOPE", "haul high")]).is_err());
        assert!(read(&[("ALLOW_ANONYMOUS_HIGH_PRIORITY", "maybe")]).is_err());
    }
}
