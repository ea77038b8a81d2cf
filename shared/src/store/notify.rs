//! The writes of webhook deliveries: a claim per attempt and the attempt's outcome, each a
//! conditional update of the event's own map (`webhook_<status>`) and nothing else, so they
//! never race the job's own writes (and leave `updatedAt`, which cleanup reads, alone).

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use super::codec::{delivery_from, delivery_value, from_item, n, s};
use super::{JobStore, StoreError, dynamo};
use crate::clock::EpochMs;
use crate::job::JobId;
use crate::webhook::{Delivery, DeliveryState, WebhookEvent};

impl JobStore {
    /// Claims the next attempt of `event`'s delivery, from the record as last seen: it lands
    /// only if nobody claimed since (same attempt count, still pending, no live lease), so two
    /// copies of one event never attempt at once. Returns the claimed record; `Conflict` when
    /// another copy got there first.
    pub async fn claim_delivery(
        &self,
        id: JobId,
        event: WebhookEvent,
        seen: &Delivery,
        lease_until: EpochMs,
        now: EpochMs,
    ) -> Result<Delivery, StoreError> {
        let claimed = Delivery {
            state: DeliveryState::Pending,
            attempts: seen.attempts + 1,
            lease_until: Some(lease_until),
            next_attempt_at: None,
            token: uuid::Uuid::new_v4().to_string(),
            ..seen.clone()
        };
        let (condition, mut values) = if seen.attempts == 0 && seen.token.is_empty() {
            (
                "attribute_exists(jobId) AND attribute_not_exists(#w)",
                vec![],
            )
        } else {
            (
                "#w.#attempts = :seen AND #w.#state = :pending \
                 AND (attribute_not_exists(#w.#lease) OR #w.#lease < :now)",
                vec![
                    (":seen", n(seen.attempts)),
                    (":pending", s(DeliveryState::Pending.as_str())),
                    (":now", n(now)),
                ],
            )
        };
        values.push((":rec", delivery_value(&claimed)));
        self.write_delivery(id, event, &claimed, condition, values)
            .await
    }

    /// Records how the claimed attempt ended. Fenced by the claim (its attempt number and
    /// token), so a stale attempt cannot overwrite a newer one; repeating it is harmless.
    pub async fn settle_delivery(
        &self,
        id: JobId,
        event: WebhookEvent,
        claimed: &Delivery,
        outcome: Delivery,
    ) -> Result<Delivery, StoreError> {
        let settled = Delivery {
            attempts: claimed.attempts,
            token: claimed.token.clone(),
            lease_until: None,
            ..outcome
        };
        let condition = "#w.#attempts = :mine AND #w.#token = :token";
        let values = vec![
            (":rec", delivery_value(&settled)),
            (":mine", n(claimed.attempts)),
            (":token", s(&claimed.token)),
        ];
        self.write_delivery(id, event, &settled, condition, values)
            .await
    }

    /// Opens `event`'s delivery again, for an operator's replay: a settled record (delivered
    /// or failed) is removed, so the notifier takes the event as new (a first attempt, the
    /// whole schedule, the same `webhook-id`, which lets a receiver that has it already
    /// drop it). A pending record is left as it is: an attempt or a wait is under way, and a
    /// replayed message joins it (an extra copy is dropped by the claim). Returns whether a
    /// settled record was removed; `NotFound` when there is no such job.
    pub async fn reopen_delivery(
        &self,
        id: JobId,
        event: WebhookEvent,
    ) -> Result<bool, StoreError> {
        let removed = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("jobId", s(id.to_string()))
            .update_expression("REMOVE #w")
            .condition_expression("attribute_exists(jobId) AND #w.#state <> :pending")
            .expression_attribute_names("#w", event.attribute())
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":pending", s(DeliveryState::Pending.as_str()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match removed {
            Ok(_) => Ok(true),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(e)) => match e.item() {
                    // Pending, or never started: nothing to open.
                    Some(_) => Ok(false),
                    None => Err(StoreError::NotFound),
                },
                _ => Err(dynamo(err)),
            },
        }
    }

    async fn write_delivery(
        &self,
        id: JobId,
        event: WebhookEvent,
        record: &Delivery,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<Delivery, StoreError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("jobId", s(id.to_string()))
            .update_expression("SET #w = :rec")
            .condition_expression(condition)
            .expression_attribute_names("#w", event.attribute())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (name, placeholder) in [
            ("attempts", "#attempts"),
            ("state", "#state"),
            ("leaseUntil", "#lease"),
            ("token", "#token"),
        ] {
            if condition.contains(placeholder) {
                request = request.expression_attribute_names(placeholder, name);
            }
        }
        for (placeholder, value) in values {
            request = request.expression_attribute_values(placeholder, value);
        }
        match request.send().await {
            Ok(_) => Ok(record.clone()),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(e)) => {
                    let Some(found) = e.item() else {
                        return Err(StoreError::NotFound);
                    };
                    // A retried write whose first answer was lost finds its own record.
                    let current = found.get(&event.attribute()).and_then(delivery_from);
                    if current.as_ref() == Some(record) {
                        return Ok(record.clone());
                    }
                    Err(StoreError::Conflict(Box::new(from_item(found)?)))
                }
                _ => Err(dynamo(err)),
            },
        }
    }
}
