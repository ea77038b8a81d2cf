//! The queues' oldest-message age, from CloudWatch's `AWS/SQS` `ApproximateAgeOfOldestMessage`
//! (the largest value of the last five minutes, per queue), in one `GetMetricData` call.
//!
//! Called over CloudWatch's query protocol and signed with `aws-sigv4` directly, rather than
//! with the CloudWatch SDK crate: that crate switches on a feature of `aws-smithy-types` that
//! every other SDK client in the workspace would then be built with (and rebuilt for), for one
//! call made by one tool. The local stack has no CloudWatch: there the age is `unknown`.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use haul::priority::Priority;

use crate::calls::CallLog;
use crate::stack::{PerPriority, Resources};

/// Where and as whom CloudWatch is called.
#[derive(Debug, Clone)]
pub struct CloudWatch {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub credentials: Option<SharedCredentialsProvider>,
    pub http: reqwest::Client,
    pub log: Option<CallLog>,
}

impl CloudWatch {
    /// From the SDK's settings: `AWS_ENDPOINT_URL_CLOUDWATCH`, else `AWS_ENDPOINT_URL`, else
    /// the region's endpoint.
    pub fn from_sdk(sdk: &aws_config::SdkConfig, log: Option<&CallLog>) -> Self {
        let endpoint = std::env::var("AWS_ENDPOINT_URL_CLOUDWATCH")
            .ok()
            .or_else(|| sdk.endpoint_url().map(str::to_owned))
            .filter(|e| !e.is_empty());
        Self {
            endpoint,
            region: sdk.region().map(|r| r.to_string()),
            credentials: sdk.credentials_provider(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            log: log.cloned(),
        }
    }
}

/// The three work queues' oldest-message ages in seconds (`None` for a queue CloudWatch has
/// no recent value for), or why they could not be read.
pub async fn oldest_ages(
    cloudwatch: &CloudWatch,
    resources: &Resources,
) -> Result<PerPriority<Option<u64>>, String> {
    let region = cloudwatch.region.clone().ok_or("no AWS region set")?;
    let endpoint = cloudwatch
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("https://monitoring.{region}.amazonaws.com"));
    let body = request_body(resources, SystemTime::now());
    if let Some(log) = &cloudwatch.log {
        log.note("cloudwatch:GetMetricData");
    }
    let url = format!("{}/", endpoint.trim_end_matches('/'));
    let headers = signed_headers(cloudwatch, &region, &url, &body).await?;
    let mut request = cloudwatch.http.post(&url).body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("CloudWatch at {endpoint} did not answer: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        let why = between(&text, "<Message>", "</Message>").unwrap_or(status.as_str());
        return Err(format!("CloudWatch answered {status}: {why}"));
    }
    Ok(PerPriority {
        high: latest_value(&text, Priority::High),
        normal: latest_value(&text, Priority::Normal),
        low: latest_value(&text, Priority::Low),
    })
}

const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

async fn signed_headers(
    cloudwatch: &CloudWatch,
    region: &str,
    url: &str,
    body: &str,
) -> Result<Vec<(String, String)>, String> {
    let credentials = cloudwatch
        .credentials
        .as_ref()
        .ok_or("no AWS credentials")?
        .provide_credentials()
        .await
        .map_err(|e| format!("no AWS credentials: {e}"))?;
    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("monitoring")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let headers = [("content-type", CONTENT_TYPE)];
    let signable = SignableRequest::new(
        "POST",
        url,
        headers.into_iter(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let mut out: Vec<(String, String)> = instructions
        .headers()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    out.push(("content-type".into(), CONTENT_TYPE.into()));
    Ok(out)
}

/// `GetMetricData` for the three queues, one query each, named after its priority.
fn request_body(resources: &Resources, now: SystemTime) -> String {
    let end = haul::clock::rfc3339(epoch_ms(now));
    let start = haul::clock::rfc3339(epoch_ms(now) - 5 * 60 * 1000);
    let mut pairs: Vec<(String, String)> = vec![
        ("Action".into(), "GetMetricData".into()),
        ("Version".into(), "2010-08-01".into()),
        ("StartTime".into(), start),
        ("EndTime".into(), end),
        ("ScanBy".into(), "TimestampDescending".into()),
    ];
    for (n, priority) in Priority::ALL.into_iter().enumerate() {
        let queue = resources.queues.of(priority);
        let name = queue
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(queue);
        let q = format!("MetricDataQueries.member.{}", n + 1);
        let stat = format!("{q}.MetricStat");
        for (key, value) in [
            (format!("{q}.Id"), priority.as_str().to_owned()),
            (format!("{stat}.Metric.Namespace"), "AWS/SQS".into()),
            (
                format!("{stat}.Metric.MetricName"),
                "ApproximateAgeOfOldestMessage".into(),
            ),
            (
                format!("{stat}.Metric.Dimensions.member.1.Name"),
                "QueueName".into(),
            ),
            (
                format!("{stat}.Metric.Dimensions.member.1.Value"),
                name.into(),
            ),
            (format!("{stat}.Period"), "60".into()),
            (format!("{stat}.Stat"), "Maximum".into()),
        ] {
            pairs.push((key, value));
        }
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn epoch_ms(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Form encoding: everything but unreserved characters, percent-encoded.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(&text[start..end])
}

/// The newest value of the result with `Id` = the priority (results come newest first).
fn latest_value(xml: &str, priority: Priority) -> Option<u64> {
    let id = format!("<Id>{}</Id>", priority.as_str());
    let result = &xml[xml.find(&id)?..];
    let result = &result[..result.find("</MetricDataResults>").unwrap_or(result.len())];
    let next = result[id.len()..]
        .find("<Id>")
        .map_or(result.len(), |i| i + id.len());
    let values = between(&result[..next], "<Values>", "</Values>")?;
    let value: f64 = between(values, "<member>", "</member>")?
        .trim()
        .parse()
        .ok()?;
    (value.is_finite() && value >= 0.0).then_some(value.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_queue_takes_the_newest_value_of_its_own_result() {
        let xml = "<GetMetricDataResponse><GetMetricDataResult><MetricDataResults>\
            <member><Id>high</Id><StatusCode>Complete</StatusCode><Timestamps/><Values/></member>\
            <member><Id>normal</Id><Values><member>612.0</member><member>580.0</member></Values></member>\
            <member><Id>low</Id><Values><member>3.4</member></Values></member>\
            </MetricDataResults></GetMetricDataResult></GetMetricDataResponse>";
        assert_eq!(latest_value(xml, Priority::High), None);
        assert_eq!(latest_value(xml, Priority::Normal), Some(612));
        assert_eq!(latest_value(xml, Priority::Low), Some(3));
    }

    #[test]
    fn the_query_names_each_queue_by_its_name() {
        let mut outputs = std::collections::HashMap::new();
        for key in crate::stack::output::ALL {
            outputs.insert(
                key.to_owned(),
                format!("https://sqs.eu-west-1.amazonaws.com/1/{key}"),
            );
        }
        let resources = Resources::from_outputs(&outputs).unwrap();
        let body = request_body(
            &resources,
            SystemTime::UNIX_EPOCH + Duration::from_secs(600),
        );
        assert!(
            body.starts_with("Action=GetMetricData&Version=2010-08-01&"),
            "{body}"
        );
        assert!(body.contains(
            "MetricDataQueries.member.1.MetricStat.Metric.Dimensions.member.1.Value=JobsQueueHighUrl"
        ));
        assert!(body.contains("MetricDataQueries.member.2.Id=normal"));
        assert!(body.contains("Namespace=AWS%2FSQS"));
        assert!(body.contains("StartTime=1970-01-01T00%3A05%3A00"), "{body}");
    }
}
