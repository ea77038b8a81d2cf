//! `cargo xtask backfill-shards <table>`: gives every job record written before the status
//! index was sharded its index key (`statusShard`, shared/src/store/shard.rs), so cleanup's
//! sharded listings see it. Live jobs get the key on their next write anyway; this is for the
//! records nothing writes again on its own (completed jobs waiting for expiry, queued jobs
//! waiting for a re-drive). Run it once against a deployed table after the deploy that adds
//! `statusShard-updatedAt`, before the one that removes `status-updatedAt`
//! (docs/operations.md). Safe to run twice, and while the functions run: each write is
//! conditional on the record still lacking the key and still having the status it was read
//! with. Reads the whole table once (a Scan).

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use haul::store::{STATUS_SHARD_ATTRIBUTE, status_shard};
use haul::{JobId, JobStatus};

use crate::BoxError;

/// What a backfill did.
#[derive(Debug, Default)]
struct Counts {
    written: u64,
    /// Records that changed meanwhile (their own write set the key) or are not jobs.
    skipped: u64,
}

pub async fn run(args: &[String]) -> Result<(), BoxError> {
    let table = args
        .first()
        .ok_or("usage: cargo xtask backfill-shards <jobs table>")?;
    let client = Client::new(&haul::services::sdk_config().await);
    let mut counts = Counts::default();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .filter_expression("attribute_not_exists(#shard) AND attribute_exists(#status)")
            .projection_expression("jobId, #status")
            .expression_attribute_names("#shard", STATUS_SHARD_ATTRIBUTE)
            .expression_attribute_names("#status", "status")
            .set_exclusive_start_key(start)
            .send()
            .await?;
        for item in page.items() {
            backfill_one(&client, table, item, &mut counts).await?;
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    println!(
        "backfill-shards: {} records given their shard, {} skipped",
        counts.written, counts.skipped
    );
    Ok(())
}

async fn backfill_one(
    client: &Client,
    table: &str,
    item: &std::collections::HashMap<String, AttributeValue>,
    counts: &mut Counts,
) -> Result<(), BoxError> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok());
    let parsed = text("jobId")
        .and_then(|id| id.parse::<JobId>().ok())
        .zip(text("status").and_then(|s| s.parse::<JobStatus>().ok()));
    let Some((id, status)) = parsed else {
        counts.skipped += 1;
        return Ok(());
    };
    let result = client
        .update_item()
        .table_name(table)
        .key("jobId", AttributeValue::S(id.to_string()))
        .update_expression("SET #shard = :shard")
        .condition_expression("#status = :status AND attribute_not_exists(#shard)")
        .expression_attribute_names("#shard", STATUS_SHARD_ATTRIBUTE)
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":shard", AttributeValue::S(status_shard(status, id)))
        .expression_attribute_values(":status", AttributeValue::S(status.as_str().to_owned()))
        .send()
        .await;
    match result {
        Ok(_) => counts.written += 1,
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
        {
            counts.skipped += 1;
        }
        Err(err) => {
            return Err(aws_sdk_dynamodb::error::DisplayErrorContext(err)
                .to_string()
                .into());
        }
    }
    Ok(())
}
