//! `haul status`, `haul cancel`, `haul retry` and `haul list`: a job, or the caller's jobs, as
//! the API shows them, and the text they print.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::Output;
use crate::api::{Api, FileView, StatusView, parse_view};
use crate::error::{CliError, Exit};

/// A job id as the API wants it: a canonical lowercase UUID v4 (any case accepted here).
pub fn parse_job_id(raw: &str) -> Result<String, CliError> {
    let raw = raw.trim();
    let id = uuid::Uuid::try_parse(raw)
        .ok()
        .filter(|id| id.get_version_num() == 4 && raw.len() == 36)
        .ok_or_else(|| {
            CliError::new(
                Exit::Usage,
                "invalid_job_id",
                format!("{raw:?} is not a job id (a UUID v4 such as 0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10)"),
            )
        })?;
    Ok(id.hyphenated().to_string())
}

/// `haul status`: the job as the API shows it.
pub async fn status(api: &Api, raw: &str) -> Result<Output, CliError> {
    let job_id = parse_job_id(raw)?;
    let (view, body, _) = api.status(&job_id).await?;
    Ok(Output {
        json: body,
        text: describe(&view),
    })
}

/// `haul cancel`: cancels a queued or running job; an already cancelled one is fine too.
pub async fn cancel(api: &Api, raw: &str) -> Result<Output, CliError> {
    let job_id = parse_job_id(raw)?;
    let reply = api
        .call(Method::DELETE, &format!("/v1/download/{job_id}"), None, &[])
        .await?;
    if reply.status == StatusCode::CONFLICT {
        let ended = reply
            .body
            .get("jobStatus")
            .and_then(Value::as_str)
            .unwrap_or("finished")
            .to_string();
        if ended == "cancelled" {
            let (view, body, _) = api.status(&job_id).await?;
            return Ok(Output {
                json: body,
                text: format!("job {job_id} was already cancelled\n{}", describe(&view)),
            });
        }
        let mut err = reply
            .ok()
            .err()
            .unwrap_or_else(|| CliError::usage("conflict"));
        err.message = format!("cannot cancel job {job_id}: it is already {ended}");
        return Err(err.with_job(&job_id));
    }
    let body = reply.ok().map_err(|e| e.with_job(&job_id))?;
    let view = parse_view(&body)?;
    Ok(Output {
        json: body,
        text: format!("cancelled job {job_id}\n{}", describe(&view)),
    })
}

/// `haul retry`: starts a failed job again (the same job, resuming what it stored). A job
/// already queued or running again (this retry's earlier try got through, or another one
/// did) is fine too; any other state is refused.
pub async fn retry(api: &Api, raw: &str) -> Result<Output, CliError> {
    let job_id = parse_job_id(raw)?;
    let reply = api
        .call(
            Method::POST,
            &format!("/v1/download/{job_id}/retry"),
            None,
            &[],
        )
        .await?;
    if reply.status == StatusCode::CONFLICT && reply.code() == Some("job_not_failed") {
        let now = reply
            .body
            .get("jobStatus")
            .and_then(Value::as_str)
            .unwrap_or("finished")
            .to_string();
        if now == "queued" || now == "running" {
            let (view, body, _) = api.status(&job_id).await?;
            return Ok(Output {
                json: body,
                text: format!("job {job_id} is already {now}\n{}", describe(&view)),
            });
        }
        let mut err = reply
            .ok()
            .err()
            .unwrap_or_else(|| CliError::usage("conflict"));
        err.message = format!("cannot retry job {job_id}: it is {now}, not failed");
        return Err(err.with_job(&job_id));
    }
    reply.ok().map_err(|e| e.with_job(&job_id))?;
    // The 202 says little; the job's view says what was kept (attempts, redrives).
    let (view, body, _) = api.status(&job_id).await?;
    Ok(Output {
        json: body,
        text: format!(
            "retried job {job_id} (follow it with: haul get --job {job_id})\n{}",
            describe(&view)
        ),
    })
}

/// A human summary of a status answer.
pub fn describe(view: &StatusView) -> String {
    let mut lines = vec![
        format!("job       {}", view.job_id),
        subject_line(view),
        format!("status    {}", status_line(view)),
        format!("attempts  {}", view.attempts),
    ];
    if let Some(redrives) = view.redrives {
        lines.push(format!("retried   {redrives} time(s) after failing"));
    }
    if let Some(priority) = &view.priority {
        lines.push(format!("priority  {priority}"));
    }
    lines.extend(view.files.iter().flatten().map(file_line));
    for (label, value) in [
        ("created", &view.created_at),
        ("started", &view.started_at),
        ("updated", &view.updated_at),
        ("finished", &view.completed_at),
    ] {
        if let Some(value) = value {
            lines.push(format!("{label:<9} {value}"));
        }
    }
    if let Some(result) = &view.result {
        lines.push(format!(
            "file      {} ({}, CRC32C {})",
            result.file_name.as_deref().unwrap_or("?"),
            indicatif::HumanBytes(result.size),
            result.checksum_crc32c.as_deref().unwrap_or("none")
        ));
        lines.push(format!(
            "url       expires {}; `haul get --job {}` fetches it",
            result.expires_at.as_deref().unwrap_or("?"),
            view.job_id
        ));
    }
    if let Some(error) = &view.error {
        lines.push(format!("error     {}: {}", error.code, error.message));
    }
    lines.join("\n")
}

/// What the job fetches: its file, or its batch's files and how they stand.
fn subject_line(view: &StatusView) -> String {
    match (view.file_id, &view.files) {
        (Some(id), _) => format!("file      {id}"),
        (None, Some(files)) => format!(
            "batch     {} files ({} completed, {} failed){}",
            files.len(),
            view.completed_files.unwrap_or_default(),
            view.failed_files.unwrap_or_default(),
            if view.bundle.as_deref() == Some("zip") {
                ", as one zip"
            } else {
                ""
            }
        ),
        (None, None) => "file      -".to_string(),
    }
}

/// One file of a batch: its id, status, and its error, file or progress.
fn file_line(file: &FileView) -> String {
    let what = match (&file.error, &file.result) {
        (Some(error), _) => format!("{}: {}", error.code, error.message),
        (None, Some(result)) => format!(
            "{} ({})",
            result.file_name.as_deref().unwrap_or("?"),
            indicatif::HumanBytes(result.size)
        ),
        (None, None) => format!("{}%", file.progress.percent),
    };
    format!("  file {:<9} {:<9} {what}", file.file_id, file.status)
}

/// The `status` line of [`describe`]: the status, with the amount done (until completed), the
/// rate and the time left where the server gives them.
fn status_line(view: &StatusView) -> String {
    let p = &view.progress;
    let amount = match p.bytes_total {
        Some(total) => format!(
            "{}% ({} of {})",
            p.percent,
            indicatif::HumanBytes(p.bytes_done),
            indicatif::HumanBytes(total)
        ),
        None if p.bytes_done > 0 => indicatif::HumanBytes(p.bytes_done).to_string(),
        None => String::new(),
    };
    let mut status = view.status.clone();
    if !amount.is_empty() && view.status != "completed" {
        status = format!("{status} {amount}");
    }
    if let Some(rate) = p.bytes_per_second {
        status.push_str(&format!(", {}/s", indicatif::HumanBytes(rate)));
    }
    if let Some(eta) = view.eta_seconds {
        status.push_str(&format!(
            ", about {} left",
            crate::ui::compact_duration(eta)
        ));
    }
    status
}

/// `haul list`: the caller's jobs, where the server keeps a history.
pub async fn list(api: &Api, limit: Option<u32>, cursor: Option<&str>) -> Result<Output, CliError> {
    let mut query = Vec::new();
    if let Some(limit) = limit {
        query.push(format!("limit={limit}"));
    }
    if let Some(cursor) = cursor {
        query.push(format!("cursor={}", encode_query(cursor)));
    }
    let path = if query.is_empty() {
        "/v1/downloads".to_string()
    } else {
        format!("/v1/downloads?{}", query.join("&"))
    };
    let reply = api.call(Method::GET, &path, None, &[]).await?;
    if reply.status == StatusCode::NOT_FOUND {
        // `history_disabled` from a server without an authorizer, `route_not_found` from one
        // that predates history.
        let code = reply.code().unwrap_or("route_not_found").to_string();
        return Err(CliError::new(
            Exit::NotFound,
            code,
            format!(
                "history is off on this server ({} keeps a job list only when the API runs \
                 with an authorizer; `haul status <jobId>` still works)",
                api.base()
            ),
        ));
    }
    let body = reply.ok()?;
    Ok(Output {
        text: list_text(&body),
        json: body,
    })
}

/// A page of `GET /v1/downloads` (`{items: [status view…], nextCursor}`) as a table.
pub fn list_text(body: &Value) -> String {
    let items = ["items", "jobs", "downloads", "data"]
        .iter()
        .find_map(|key| body.get(*key).and_then(Value::as_array))
        .or_else(|| body.as_array())
        .cloned()
        .unwrap_or_default();
    let mut lines = vec![format!(
        "{:<36}  {:>8}  {:<9}  {:>4}  created",
        "job", "file", "status", "%"
    )];
    for item in &items {
        let text = |key: &str| {
            item.get(key)
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .unwrap_or_default()
        };
        let percent = item
            .get("progress")
            .and_then(|p| p.get("percent"))
            .map(Value::to_string)
            .unwrap_or_default();
        lines.push(format!(
            "{:<36}  {:>8}  {:<9}  {:>4}  {}",
            text("jobId"),
            text("fileId"),
            text("status"),
            percent,
            text("createdAt")
        ));
    }
    if items.is_empty() {
        lines.push("(no jobs)".into());
    }
    if let Some(next) = ["nextCursor", "cursor", "next"]
        .iter()
        .find_map(|key| body.get(*key).and_then(Value::as_str))
    {
        lines.push(format!("more: haul list --cursor {next}"));
    }
    lines.join("\n")
}

fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_must_be_uuid_v4() {
        let id = "0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10";
        assert_eq!(parse_job_id(id).unwrap(), id);
        assert_eq!(
            parse_job_id(&id.to_uppercase()).unwrap(),
            id,
            "case is normalised"
        );
        for bad in [
            "",
            "nope",
            "0b8a4c4e8f5e4f579d7c2f1f7b6f9a10",
            "0b8a4c4e-8f5e-1f57-9d7c-2f1f7b6f9a10",
            "{0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10}",
        ] {
            let err = parse_job_id(bad).unwrap_err();
            assert_eq!(err.exit, Exit::Usage, "{bad:?}");
        }
    }

    #[test]
    fn job_pages_become_a_table() {
        let page = serde_json::json!({
            "items": [
                {"jobId": "0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10", "fileId": 70000, "status": "running",
                 "progress": {"percent": 40}, "createdAt": "2026-11-25T17:53:47.402Z"},
                {"jobId": "1c8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10", "fileId": 1, "status": "completed",
                 "progress": {"percent": 100}, "createdAt": "2026-11-25T17:50:00.000Z"}
            ],
            "nextCursor": "abc"
        });
        let text = list_text(&page);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[1].starts_with("0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10"));
        assert!(
            lines[1].contains("70000") && lines[1].contains("running") && lines[1].contains("40")
        );
        assert_eq!(lines[3], "more: haul list --cursor abc");
        let empty = list_text(&serde_json::json!({"items": [], "nextCursor": null}));
        assert!(empty.ends_with("(no jobs)"), "{empty}");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode_query("a b&c=d/e"), "a%20b%26c%3Dd%2Fe");
        assert_eq!(encode_query("abc-_.~9"), "abc-_.~9");
    }
}
