use std::time::{Duration, Instant};

use haul_tests::harness::AppOptions;
use haul_tests::{OriginBehavior, spawn_app, spawn_app_with};
use lambda_http::http::{Method, StatusCode};

use crate::sha256_hex;

const MIB: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_goes_from_initiate_through_the_queue_to_a_presigned_url_with_the_origin_bytes()
{
    // 12 MiB in 256 KiB chunks paced at 15 ms: about 0.7 s, three multipart parts of 5 MiB.
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            size: 12 * MIB,
            chunk: 256 * 1024,
            chunk_delay: Duration::from_millis(15),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;

    let accepted = app.initiate(4242).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    let id = accepted.body["jobId"].as_str().unwrap().to_owned();
    assert_eq!(
        accepted.header("location"),
        Some(format!("/v1/download/status/{id}").as_str())
    );
    assert_eq!(accepted.header("cache-control"), Some("no-store"));
    assert!(accepted.header("retry-after").is_some());
    assert_eq!(accepted.body["status"], "queued");
    assert_eq!(
        accepted.body["statusUrl"],
        format!("/v1/download/status/{id}")
    );
    assert_eq!(accepted.body["downloadUrl"], format!("/v1/download/{id}"));
    assert!(accepted.body["nextPollInMs"].as_u64().unwrap() > 0);
    let job_id = id.parse().unwrap();

    let queued = app.status(job_id).await;
    assert_eq!(queued.body["status"], "queued");
    assert_eq!(queued.body["result"], serde_json::Value::Null);

    // The worker runs on the message really received from the queue, while we poll.
    let worker = async {
        let outcomes = app.deliver(5).await;
        assert_eq!(outcomes, vec![haul_worker::Outcome::Ack]);
    };
    let poller = async {
        let mut seen_mid_transfer = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = app.status(job_id).await;
            let body = &status.body;
            if body["status"] == "running" {
                assert!(status.header("retry-after").is_some());
                let done = body["progress"]["bytesDone"].as_u64().unwrap();
                if done > 0 && done < 12 * MIB && seen_mid_transfer.is_none() {
                    assert_eq!(body["progress"]["bytesTotal"], 12 * MIB);
                    let percent = body["progress"]["percent"].as_u64().unwrap();
                    assert!(percent < 100, "{body}");
                    if body["etaSeconds"].is_u64() {
                        assert!(body["progress"]["bytesPerSecond"].as_u64() > Some(0));
                        let retry: u64 = status.header("retry-after").unwrap().parse().unwrap();
                        assert!((1..=15).contains(&retry), "{retry}");
                    }
                    seen_mid_transfer = Some(done);
                }
            }
            if body["status"] == "completed" {
                return (seen_mid_transfer, status);
            }
            assert!(Instant::now() < deadline, "no completion: {body}");
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    };
    let ((), (mid, done)) = tokio::join!(worker, poller);
    assert!(mid.is_some(), "status never showed progress mid-transfer");

    assert_eq!(done.header("cache-control"), Some("no-store"));
    assert!(done.header("retry-after").is_none());
    let body = &done.body;
    assert_eq!(body["attempts"], 1);
    assert_eq!(body["progress"]["percent"], 100);
    assert_eq!(body["result"]["size"], 12 * MIB);
    assert_eq!(body["result"]["fileName"], "file-4242.bin");
    assert_eq!(body["result"]["contentType"], "application/octet-stream");
    for field in ["createdAt", "startedAt", "updatedAt", "completedAt"] {
        assert!(
            body[field].as_str().is_some_and(|t| t.ends_with('Z')),
            "{field}"
        );
    }
    let url = body["result"]["url"].as_str().unwrap();

    let fetched = app.http.get(url).send().await.unwrap();
    assert_eq!(fetched.status(), 200);
    let disposition = fetched
        .headers()
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    let bytes = fetched.bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, 12 * MIB);
    assert_eq!(sha256_hex(&bytes), sha256_hex(&app.origin.expected(4242)));
    // Three 5 MiB-or-less parts, uploaded concurrently, each with a CRC32C S3 verified.
    let checksum = body["result"]["checksumCrc32c"]
        .as_str()
        .unwrap_or_default();
    assert!(checksum.ends_with("-3"), "composite checksum: {checksum:?}");

    // A URL whose signature was tampered with is refused by S3.
    let (head, signature) = url.split_once("X-Amz-Signature=").unwrap();
    let flipped: String = signature
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 0 {
                if c == '0' { '1' } else { '0' }
            } else {
                c
            }
        })
        .collect();
    let tampered = app
        .http
        .get(format!("{head}X-Amz-Signature={flipped}"))
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), 403);

    // Every poll mints a new URL.
    let again = app.status(job_id).await;
    assert_ne!(again.body["result"]["url"], body["result"]["url"]);
}

/// The job id is the API's only capability without an authorizer: a presigned URL (seen in
/// a proxy log, a shared link) must not reveal it, in any spelling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_presigned_url_reveals_the_job_id() {
    let app = spawn_app().await;
    let mut keys = std::collections::HashSet::new();
    for file_id in [41, 42] {
        let id = app.start_job(file_id).await;
        let done = app.work_until_done(id, Duration::from_secs(30)).await;
        assert_eq!(done["status"], "completed", "{done}");
        let redirect = app.download(id).await;
        let located = redirect.header("location").unwrap_or_default().to_owned();
        for url in [done["result"]["url"].as_str().unwrap(), located.as_str()] {
            let lower = url.to_ascii_lowercase();
            for spelling in [id.to_string(), id.to_string().replace('-', "")] {
                assert!(!lower.contains(&spelling), "{url} reveals {spelling}");
            }
        }
        let stored = app.services.jobs.get(id).await.unwrap().expect("the job");
        let key = stored
            .artifact_key
            .trim_start_matches("artifacts/")
            .to_owned();
        assert!(key.len() >= 32, "at least 128 bits: {key}");
        assert!(keys.insert(key), "every job draws its own key");
    }
    assert_eq!(app.object_keys().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_download_route_redirects_to_a_fresh_presigned_url_once_completed() {
    let app = spawn_app().await;
    let id = app.start_job(7).await;

    let early = app.download(id).await;
    assert_eq!(early.status, StatusCode::CONFLICT);
    assert_eq!(early.body["code"], "job_not_ready");
    assert_eq!(early.body["jobStatus"], "queued");

    let done = app.work_until_done(id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "completed");

    let redirect = app.download(id).await;
    assert_eq!(redirect.status, StatusCode::FOUND);
    let location = redirect.header("location").unwrap();
    let bytes = app.fetch(location).await;
    assert_eq!(sha256_hex(&bytes), sha256_hex(&app.origin.expected(7)));
    // A single PUT: S3's checksum is the plain CRC32C of the bytes.
    assert_eq!(
        done["result"]["checksumCrc32c"],
        crate::crc32c_base64(&bytes)
    );
}

/// The first presign goes through the SDK and teaches the direct signer; the ones after are
/// signed directly, and S3 (with signature validation on) accepts them, names included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_after_the_first_are_signed_directly_and_s3_accepts_them() {
    let app = spawn_app().await;
    let id = app.start_job(31).await;
    let done = app.work_until_done(id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "completed");
    let stored = app.services.jobs.get(id).await.unwrap().expect("the job");
    let key = stored.artifact_key;
    let artifacts = &app.services.artifacts;
    let ttl = Duration::from_secs(60);

    let first = app.status(id).await.body["result"]["url"].clone();
    assert!(first.is_string(), "{done}");
    assert!(
        artifacts.presigns_directly(),
        "the SDK's URL was not reproduced"
    );

    for name in ["file-31.bin", "résumé final (2).pdf", "a\"b;c%20d+e.txt"] {
        let signed = artifacts
            .presign_get(&key, name, ttl, haul::clock::now_ms())
            .await
            .unwrap();
        let fetched = app.http.get(&signed.url).send().await.unwrap();
        assert_eq!(fetched.status(), 200, "{name}: {}", signed.url);
        let disposition = fetched
            .headers()
            .get("content-disposition")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        assert_eq!(
            disposition.as_deref(),
            Some(haul::artifacts::content_disposition(name).as_str())
        );
        let bytes = fetched.bytes().await.unwrap();
        assert_eq!(sha256_hex(&bytes), sha256_hex(&app.origin.expected(31)));
    }

    // Still a real signature: another key with the same query is refused.
    let signed = artifacts
        .presign_get(&key, "x.bin", ttl, haul::clock::now_ms())
        .await
        .unwrap();
    let other = signed.url.replace(&key, &format!("{key}x"));
    let refused = app.http.get(&other).send().await.unwrap();
    assert_eq!(refused.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_file_completes_as_an_empty_object() {
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            size: 0,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let id = app.start_job(3).await;
    let done = app.work_until_done(id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["size"], 0);
    let url = done["result"]["url"].as_str().unwrap();
    let bytes = app.fetch(url).await;
    assert!(bytes.is_empty());
}

/// One download can be followed from the browser to the worker: the client's W3C trace id
/// is answered back, kept on the job and carried by the worker's log lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_traceparent_is_answered_back_kept_on_the_job_and_logged_by_the_worker() {
    let app = spawn_app().await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let accepted = app
        .call(
            Method::POST,
            "/v1/download/initiate",
            &[
                ("content-type", "application/json"),
                ("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01")),
            ],
            r#"{"file_id": 31}"#,
        )
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:?}", accepted.body);
    let answered = accepted
        .header("traceparent")
        .expect("a traceparent answer");
    assert!(answered.starts_with(&format!("00-{trace}-")), "{answered}");
    assert!(!answered.contains("00f067aa0ba902b7"), "a span of its own");
    let id = accepted.body["jobId"].as_str().unwrap().parse().unwrap();

    let logs = haul_tests::logs::capture();
    let done = app.work_until_done(id, Duration::from_secs(20)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["traceId"], trace);
    let worker_lines: Vec<String> = logs
        .text()
        .lines()
        .filter(|l| l.contains("job completed"))
        .map(str::to_owned)
        .collect();
    assert_eq!(worker_lines.len(), 1, "{}", logs.text());
    assert!(worker_lines[0].contains(trace), "{}", worker_lines[0]);

    // No (or a malformed) traceparent starts a new trace rather than failing.
    let fresh = app
        .call(
            Method::POST,
            "/v1/download/initiate",
            &[
                ("content-type", "application/json"),
                ("traceparent", "garbage"),
            ],
            r#"{"file_id": 32}"#,
        )
        .await;
    assert_eq!(fresh.status, StatusCode::ACCEPTED);
    let new_trace = fresh.header("traceparent").expect("a new trace");
    assert!(!new_trace.contains(trace));
    let id = fresh.body["jobId"].as_str().unwrap().parse().unwrap();
    let status = app.status(id).await.body;
    assert_eq!(status["traceId"].as_str(), new_trace.get(3..35));
}
