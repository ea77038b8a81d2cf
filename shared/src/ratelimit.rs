//! Job starts per caller, limited in the service: HTTP APIs have no per-client throttling
//! and WAF cannot attach to them.
//!
//! A token bucket kept as one number per caller in the jobs table, in its GCRA form: `tat`,
//! the "theoretical arrival time" at which the caller's bucket is full again. A start at
//! `now` is allowed while `max(tat, now) + interval <= now + burst * interval`, and moves `tat`
//! on by one interval. The usual case (a caller who started something recently) is one
//! conditional UpdateItem; a caller idle long enough that `tat` lies in the past takes a
//! second one, which resets `tat` to `now` (DynamoDB has no `max()` in an update). A refused
//! start costs one write and answers when the next token is due.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use sha2::{Digest, Sha256};

use crate::clock::EpochMs;

/// Who a limit applies to: the JWT subject when there is an authorizer, else the source IP
/// API Gateway saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Subject(String),
    SourceIp(String),
}

impl Caller {
    /// The record's key: hashed, so the table holds no caller identities in the clear.
    fn record_id(&self) -> String {
        let (kind, value) = match self {
            Caller::Subject(sub) => ("sub", sub),
            Caller::SourceIp(ip) => ("ip", ip),
        };
        let digest = Sha256::digest(format!("{kind}:{value}").as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("rate#{hex}")
    }
}

/// What the limiter decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Over the limit: a start of the same cost is allowed after this long, and `fits` is
    /// how many tokens the bucket holds now.
    Limited {
        retry_after: Duration,
        fits: u32,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("rate limit store: {0}")]
pub struct RateLimitError(String);

/// The limit: `per_minute` starts a minute on average, `burst` at once after being idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub per_minute: u32,
    pub burst: u32,
}

impl Limit {
    fn interval_ms(&self) -> i64 {
        60_000 / i64::from(self.per_minute.max(1))
    }
}

#[derive(Clone, Debug)]
pub struct RateLimiter {
    client: Client,
    table: String,
    /// `None`: no limit.
    limit: Option<Limit>,
}

/// How a conditional write ended: done, or refused with the record as DynamoDB saw it.
enum Write {
    Done,
    Refused(Option<i64>),
}

impl RateLimiter {
    pub fn new(client: Client, table: impl Into<String>, limit: Option<Limit>) -> Self {
        Self {
            client,
            table: table.into(),
            limit: limit.filter(|l| l.per_minute > 0),
        }
    }

    /// Takes one token from `caller`'s bucket, if it has one.
    pub async fn admit(&self, caller: &Caller, now: EpochMs) -> Result<Decision, RateLimitError> {
        self.admit_many(caller, 1, now).await
    }

    /// Takes `cost` tokens (a batch's files) from `caller`'s bucket at once, or none: a start
    /// that does not fit whole is refused whole, and says how many would fit now.
    pub async fn admit_many(
        &self,
        caller: &Caller,
        cost: u32,
        now: EpochMs,
    ) -> Result<Decision, RateLimitError> {
        let Some(limit) = self.limit else {
            return Ok(Decision::Allowed);
        };
        let interval = limit.interval_ms();
        let burst = i64::from(limit.burst.max(1));
        let cost = i64::from(cost.max(1));
        let step = interval * cost;
        // The latest `tat` that still leaves `cost` tokens in the bucket.
        let latest = now + interval * (burst - cost);
        let id = caller.record_id();
        if cost > burst {
            // Never fits, whatever the wait: the whole bucket is the most one start may take.
            return Ok(Decision::Limited {
                retry_after: Duration::from_millis((interval * burst) as u64),
                fits: limit.burst.max(1),
            });
        }
        // Two rounds at most normally; a third only if another request raced this one.
        for _ in 0..3 {
            let seen = match self.take_from_busy(&id, step, now, latest).await? {
                Write::Done => return Ok(Decision::Allowed),
                Write::Refused(seen) => seen,
            };
            if let Some(tat) = seen.filter(|tat| *tat > latest) {
                return Ok(limited(tat, latest, now, interval, burst));
            }
            // Idle (no record, or `tat` in the past): the bucket is full; start it at `now`.
            if let Write::Done = self.start_full(&id, step, now).await? {
                return Ok(Decision::Allowed);
            }
        }
        // Contended beyond reason: let it through rather than refuse on a race.
        Ok(Decision::Allowed)
    }

    /// Takes `step` from a bucket in use, unless that would leave it short (`tat` past
    /// `latest`); refused, it says the `tat` it found.
    async fn take_from_busy(
        &self,
        id: &str,
        step: i64,
        now: EpochMs,
        latest: i64,
    ) -> Result<Write, RateLimitError> {
        self.write(
            id,
            "SET tat = tat + :interval, #ttl = :ttl",
            "tat >= :now AND tat <= :latest",
            &[
                (":interval", step),
                (":now", now),
                (":latest", latest),
                (":ttl", expiry(latest + step)),
            ],
        )
        .await
    }

    /// Starts an idle bucket (no record, or `tat` in the past) full, less `step`.
    async fn start_full(&self, id: &str, step: i64, now: EpochMs) -> Result<Write, RateLimitError> {
        self.write(
            id,
            "SET tat = :next, #ttl = :ttl",
            "attribute_not_exists(tat) OR tat < :now",
            &[
                (":next", now + step),
                (":now", now),
                (":ttl", expiry(now + step)),
            ],
        )
        .await
    }

    async fn write(
        &self,
        id: &str,
        expression: &str,
        condition: &str,
        values: &[(&str, i64)],
    ) -> Result<Write, RateLimitError> {
        let values: HashMap<String, AttributeValue> = values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), AttributeValue::N(v.to_string())))
            .collect();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("jobId", AttributeValue::S(id.to_owned()))
            .update_expression(expression)
            .condition_expression(condition)
            .expression_attribute_names("#ttl", crate::store::TTL_ATTRIBUTE)
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Write::Done),
            Err(err) => match err.as_service_error() {
                Some(e) if e.is_conditional_check_failed_exception() => {
                    let seen = match e {
                        aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => c
                            .item()
                            .and_then(|item| item.get("tat"))
                            .and_then(|v| v.as_n().ok())
                            .and_then(|n| n.parse().ok()),
                        _ => None,
                    };
                    Ok(Write::Refused(seen))
                }
                _ => Err(RateLimitError(DisplayErrorContext(err).to_string())),
            },
        }
    }
}

/// The refusal of a start whose bucket is at `tat`: when `cost` tokens are back, and how many
/// are there now.
fn limited(tat: i64, latest: i64, now: EpochMs, interval: i64, burst: i64) -> Decision {
    let wait = (tat - latest).max(1) as u64;
    let interval = interval.max(1);
    let used = ((tat - now).max(0) + interval - 1) / interval;
    Decision::Limited {
        retry_after: Duration::from_millis(wait),
        fits: (burst - used).clamp(0, burst) as u32,
    }
}

/// The record's TTL (epoch seconds): an hour after its bucket would be full again.
fn expiry(full_at: EpochMs) -> i64 {
    full_at / 1000 + 3600
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_are_kept_apart_by_kind_and_hashed() {
        let sub = Caller::Subject("127.0.0.1".into()).record_id();
        let ip = Caller::SourceIp("127.0.0.1".into()).record_id();
        assert_ne!(sub, ip);
        assert!(sub.starts_with("rate#") && !sub.contains("127.0.0.1"));
        assert_eq!(sub.len(), "rate#".len() + 64);
    }

    #[test]
    fn a_refusal_says_when_the_tokens_are_back_and_how_many_fit_now() {
        // 10 a minute (6 s each), burst 10; the bucket is 8 tokens down (tat 48 s ahead).
        let now = 1_000_000;
        let (interval, burst) = (6_000, 10);
        let cost = 5;
        let latest = now + interval * (burst - cost);
        match limited(now + 48_000, latest, now, interval, burst) {
            Decision::Limited { retry_after, fits } => {
                assert_eq!(fits, 2);
                assert_eq!(retry_after, Duration::from_millis(18_000));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_interval_spreads_a_minute_over_the_limit() {
        let limit = Limit {
            per_minute: 10,
            burst: 10,
        };
        assert_eq!(limit.interval_ms(), 6_000);
    }
}
