//! Creates the AWS resources haul needs on the local stack: the jobs table (with the status
//! index cleanup queries), the work queues (one per priority) with their dead-letter queue,
//! and the bucket.
//! Shapes come from `template.yaml`, so local and deployed resources cannot drift apart.

use crate::template::{KeyPart, Template};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone)]
pub struct Resources {
    pub table: String,
    /// The normal-priority work queue (`JOBS_QUEUE_URL`).
    pub queue_url: String,
    /// The high- and low-priority work queues (`JOBS_QUEUE_URL_HIGH`, `JOBS_QUEUE_URL_LOW`).
    pub high_queue_url: String,
    pub low_queue_url: String,
    /// The dead-letter queue of the three work queues.
    pub dlq_url: String,
    pub bucket: String,
    /// The notifier's queue (the pipe's target) and its dead-letter queue.
    pub notify_queue_url: String,
    pub notify_dlq_url: String,
}

#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub visibility_timeout_secs: u32,
    pub max_receive_count: u32,
}

pub struct Provisioner {
    pub dynamo: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
}

impl Provisioner {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        let s3 = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build();
        Self {
            dynamo: aws_sdk_dynamodb::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            s3: aws_sdk_s3::Client::from_conf(s3),
        }
    }

    /// Creates (or finds) every resource named after `prefix`. Idempotent.
    pub async fn ensure(&self, prefix: &str, queue: &QueueSettings) -> Result<Resources, BoxError> {
        let table = format!("{prefix}-jobs");
        let bucket = format!("{prefix}-artifacts");
        self.ensure_table(&table).await?;
        let dlq_url = self
            .ensure_queue(&format!("{prefix}-jobs-dlq"), None)
            .await?;
        let dlq_arn = self.queue_arn(&dlq_url).await?;
        let queue_url = self
            .ensure_queue(&format!("{prefix}-jobs"), Some((queue, dlq_arn.as_str())))
            .await?;
        let (high_queue_url, low_queue_url) =
            self.ensure_priority_queues(prefix, queue, &dlq_arn).await?;
        self.ensure_bucket(&bucket).await?;
        let notify_dlq_url = self
            .ensure_queue(&format!("{prefix}-notify-dlq"), None)
            .await?;
        let notify_dlq_arn = self.queue_arn(&notify_dlq_url).await?;
        let notify_queue_url = self
            .ensure_queue(
                &format!("{prefix}-notify"),
                Some((queue, notify_dlq_arn.as_str())),
            )
            .await?;
        Ok(Resources {
            table,
            queue_url,
            high_queue_url,
            low_queue_url,
            dlq_url,
            bucket,
            notify_queue_url,
            notify_dlq_url,
        })
    }

    /// Creates the jobs table exactly as `template.yaml` declares it (keys, indexes, TTL).
    async fn ensure_table(&self, table: &str) -> Result<(), BoxError> {
        let spec = Template::load()?.jobs_table()?;
        let key = |part: &KeyPart| {
            KeySchemaElement::builder()
                .attribute_name(&part.name)
                .key_type(KeyType::from(part.kind.as_str()))
                .build()
        };
        let mut request = self
            .dynamo
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest);
        for part in &spec.keys {
            request = request.key_schema(key(part)?);
        }
        for (name, kind) in &spec.attributes {
            request = request.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::from(kind.as_str()))
                    .build()?,
            );
        }
        for index in &spec.indexes {
            let mut gsi = GlobalSecondaryIndex::builder()
                .index_name(&index.name)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(index.projection.as_str()))
                        .build(),
                );
            for part in &index.keys {
                gsi = gsi.key_schema(key(part)?);
            }
            request = request.global_secondary_indexes(gsi.build()?);
        }
        if let Some(view) = &spec.stream_view_type {
            request = request.stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::from(view.as_str()))
                    .build()?,
            );
        }
        match request.send().await {
            Ok(_) => {}
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) => {}
            Err(err) => {
                return Err(aws_sdk_dynamodb::error::DisplayErrorContext(err)
                    .to_string()
                    .into());
            }
        }
        if let Some(attribute) = spec.ttl_attribute {
            // DynamoDB Local records the setting; deleting expired items is AWS's job.
            let _ = self
                .dynamo
                .update_time_to_live()
                .table_name(table)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name(attribute)
                        .build()?,
                )
                .send()
                .await;
        }
        Ok(())
    }

    async fn ensure_queue(
        &self,
        name: &str,
        redrive: Option<(&QueueSettings, &str)>,
    ) -> Result<String, BoxError> {
        let mut request = self.sqs.create_queue().queue_name(name);
        if let Some((settings, dlq_arn)) = redrive {
            request = request
                .attributes(
                    QueueAttributeName::VisibilityTimeout,
                    settings.visibility_timeout_secs.to_string(),
                )
                .attributes(
                    QueueAttributeName::RedrivePolicy,
                    serde_json::json!({
                        "deadLetterTargetArn": dlq_arn,
                        "maxReceiveCount": settings.max_receive_count,
                    })
                    .to_string(),
                );
        }
        let output = request
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
        Ok(output.queue_url.ok_or("CreateQueue returned no URL")?)
    }

    /// The high- and low-priority queues, with the normal queue's settings and dead-letter
    /// queue.
    async fn ensure_priority_queues(
        &self,
        prefix: &str,
        queue: &QueueSettings,
        dlq_arn: &str,
    ) -> Result<(String, String), BoxError> {
        let high = self
            .ensure_queue(&format!("{prefix}-jobs-high"), Some((queue, dlq_arn)))
            .await?;
        let low = self
            .ensure_queue(&format!("{prefix}-jobs-low"), Some((queue, dlq_arn)))
            .await?;
        Ok((high, low))
    }

    pub async fn queue_arn(&self, url: &str) -> Result<String, BoxError> {
        let output = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
        output
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .ok_or_else(|| "queue has no ARN".into())
    }

    async fn ensure_bucket(&self, bucket: &str) -> Result<(), BoxError> {
        match self.s3.create_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(()),
            Err(err)
                if err.as_service_error().is_some_and(|e| {
                    e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()
                }) =>
            {
                Ok(())
            }
            Err(err) => Err(aws_sdk_s3::error::DisplayErrorContext(err)
                .to_string()
                .into()),
        }
    }
}
