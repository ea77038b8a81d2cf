//! The status index's sharded key (shared/src/store/shard.rs): every write puts the job on its
//! own shard of its status, never on the status alone, and cleanup's listing reads every shard.

use aws_sdk_dynamodb::types::AttributeValue;
use haul::clock::now_ms;
use haul::store::{Progress, STATUS_INDEX, STATUS_SHARD_ATTRIBUTE, status_shard};
use haul::{FileId, Job, JobId, JobStatus};
use haul_tests::{TestApp, spawn_app};

async fn dynamodb() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&haul::services::sdk_config().await)
}

/// The `statusShard` attribute of the stored record.
async fn stored_shard(app: &TestApp, client: &aws_sdk_dynamodb::Client, id: JobId) -> String {
    let item = client
        .get_item()
        .table_name(&app.resources.table)
        .key("jobId", AttributeValue::S(id.to_string()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the job is stored");
    item[STATUS_SHARD_ATTRIBUTE].as_s().unwrap().clone()
}

/// Jobs the index holds under `key`.
async fn index_count(app: &TestApp, client: &aws_sdk_dynamodb::Client, key: &str) -> i32 {
    client
        .query()
        .table_name(&app.resources.table)
        .index_name(STATUS_INDEX)
        .key_condition_expression("#k = :k")
        .expression_attribute_names("#k", STATUS_SHARD_ATTRIBUTE)
        .expression_attribute_values(":k", AttributeValue::S(key.to_owned()))
        .send()
        .await
        .unwrap()
        .count
}

#[tokio::test]
async fn progress_writes_land_on_the_jobs_shard_never_on_the_bare_status() {
    let app = spawn_app().await;
    let client = dynamodb().await;
    let jobs = &app.services.jobs;
    let now = now_ms();
    let job = Job::new_queued(JobId::new_random(), FileId::new(7).unwrap(), None, now);
    jobs.create(&job).await.unwrap();
    let queued_key = status_shard(JobStatus::Queued, job.id);
    assert_eq!(stored_shard(&app, &client, job.id).await, queued_key);

    let claimed = jobs.claim(job.id, now, now + 1).await.unwrap();
    let progress = Progress {
        bytes_done: 1024,
        bytes_total: Some(4096),
        bytes_per_second: None,
    };
    jobs.record_progress(job.id, claimed.attempts, progress, now + 2)
        .await
        .unwrap();
    let running_key = status_shard(JobStatus::Running, job.id);
    assert!(running_key.starts_with("running#"), "{running_key}");
    assert_eq!(stored_shard(&app, &client, job.id).await, running_key);
    assert_eq!(index_count(&app, &client, &running_key).await, 1);
    assert_eq!(index_count(&app, &client, &queued_key).await, 0);
    // The key every running job shared before sharding: nothing may land there.
    assert_eq!(index_count(&app, &client, "running").await, 0);

    // Cleanup's listing finds it through its shard.
    let stale = jobs
        .list_stale(JobStatus::Running, now + 10, 500)
        .await
        .unwrap();
    assert_eq!(
        stale.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        [job.id]
    );
}

#[tokio::test]
async fn stale_listings_read_every_shard_and_keep_to_their_limit() {
    let app = spawn_app().await;
    let jobs = &app.services.jobs;
    let now = now_ms();
    let mut ids = Vec::new();
    for i in 0..40 {
        let job = Job::new_queued(JobId::new_random(), FileId::new(1).unwrap(), None, now + i);
        jobs.create(&job).await.unwrap();
        ids.push(job.id);
    }
    let all = jobs
        .list_stale(JobStatus::Queued, now + 1_000, 500)
        .await
        .unwrap();
    let mut found: Vec<JobId> = all.jobs.iter().map(|j| j.id).collect();
    assert_eq!(found.len(), 40);
    found.sort_by_key(|id| id.to_string());
    ids.sort_by_key(|id| id.to_string());
    assert_eq!(found, ids);
    // Oldest first, within the limit.
    let some = jobs
        .list_stale(JobStatus::Queued, now + 1_000, 10)
        .await
        .unwrap();
    assert_eq!(some.jobs.len(), 10);
    assert!(
        some.jobs
            .windows(2)
            .all(|w| w[0].updated_at <= w[1].updated_at)
    );
    // Only what is older than the cutoff.
    let older = jobs
        .list_stale(JobStatus::Queued, now + 5, 500)
        .await
        .unwrap();
    assert_eq!(older.jobs.len(), 5);
}

#[tokio::test]
async fn a_record_from_before_sharding_gets_its_key_on_its_next_write() {
    let app = spawn_app().await;
    let client = dynamodb().await;
    let jobs = &app.services.jobs;
    let now = now_ms();
    let job = Job::new_queued(JobId::new_random(), FileId::new(3).unwrap(), None, now);
    jobs.create(&job).await.unwrap();
    // As a record written by the release before: no index key.
    client
        .update_item()
        .table_name(&app.resources.table)
        .key("jobId", AttributeValue::S(job.id.to_string()))
        .update_expression("REMOVE #k")
        .expression_attribute_names("#k", STATUS_SHARD_ATTRIBUTE)
        .send()
        .await
        .unwrap();
    let queued = jobs
        .list_stale(JobStatus::Queued, now + 10, 500)
        .await
        .unwrap();
    assert!(queued.jobs.is_empty(), "not in the sharded index yet");

    // Cleanup's re-drive claim is a write like any other.
    jobs.touch_queued(job.id, now, now + 1).await.unwrap();
    assert_eq!(
        stored_shard(&app, &client, job.id).await,
        status_shard(JobStatus::Queued, job.id)
    );
    let queued = jobs
        .list_stale(JobStatus::Queued, now + 10, 500)
        .await
        .unwrap();
    assert_eq!(queued.jobs.len(), 1);
}
