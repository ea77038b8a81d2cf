//! Unit tests of the batch's pure parts: its status view as the server sends it, and the
//! report and exit code made from the files' outcomes.

use serde_json::json;

use crate::api::{StatusView, parse_view};
use crate::batch_report::*;
use crate::error::Exit;

fn saved(file_id: u64) -> Outcome {
    Outcome::Saved {
        file_id,
        saved: Some(SavedFile {
            path: format!("out/file-{file_id}.bin"),
            size: 2 << 20,
            file_name: Some(format!("file-{file_id}.bin")),
            checksum: Some("Czbl4g==".into()),
            checksum_kind: "whole",
            detail: "CRC32C Czbl4g==".into(),
        }),
    }
}

fn failed(file_id: u64, stage: Stage, exit: Exit, code: &str) -> Outcome {
    Outcome::Failed {
        file_id,
        stage,
        exit,
        code: code.into(),
        message: "why".into(),
    }
}

fn batch_view() -> StatusView {
    parse_view(&json!({
        "jobId": "0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10", "fileId": null, "sourceUrl": null,
        "status": "completed", "attempts": 0, "bundle": null,
        "progress": {"percent": 100, "bytesDone": 4, "bytesTotal": 4, "bytesPerSecond": null,
                     "filesDone": 3, "filesTotal": 3},
        "totalFileIds": 3, "completedFiles": 2, "failedFiles": 1, "result": null, "error": null,
        "files": [],
    }))
    .unwrap()
}

#[test]
fn a_zip_batch_whose_archive_failed_saves_its_files_one_by_one() {
    let view = |status: &str, error: serde_json::Value| {
        parse_view(&json!({
            "jobId": "0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10", "fileId": null,
            "status": status, "bundle": "zip", "error": error, "files": [],
        }))
        .unwrap()
    };
    assert!(crate::batch::archive_wanted(&view(
        "completed",
        json!(null)
    )));
    let failed = json!({"code": "bundle_failed", "message": "file 1 is no longer stored"});
    assert!(!crate::batch::archive_wanted(&view("failed", failed)));
    assert!(
        !crate::batch::archive_wanted(&batch_view()),
        "no bundle asked for"
    );
}

#[test]
fn all_saved_is_success() {
    assert!(conclusion(&[saved(1), saved(5), saved(9)]).is_none());
    let in_zip = Outcome::Saved {
        file_id: 1,
        saved: None,
    };
    assert!(conclusion(&[in_zip]).is_none());
}

#[test]
fn some_failed_is_partial_and_names_them() {
    let outcomes = [
        saved(1),
        failed(900001, Stage::Server, Exit::JobFailed, "origin_not_found"),
        saved(9),
    ];
    let (exit, code, message) = conclusion(&outcomes).unwrap();
    assert_eq!(
        (exit, code, exit.code()),
        (Exit::Partial, "batch_incomplete", 9)
    );
    assert!(message.contains("900001 (origin_not_found)"), "{message}");
    assert!(message.starts_with("1 of 3 files failed"), "{message}");
    // A file that failed here (verification) is as much a failure.
    let outcomes = [
        saved(1),
        failed(5, Stage::Local, Exit::Verification, "verification_failed"),
    ];
    assert_eq!(conclusion(&outcomes).unwrap().0, Exit::Partial);
}

#[test]
fn nothing_saved_takes_the_failures_class() {
    let server = [
        failed(900001, Stage::Server, Exit::JobFailed, "origin_not_found"),
        failed(900002, Stage::Server, Exit::JobFailed, "origin_not_found"),
    ];
    let (exit, code, _) = conclusion(&server).unwrap();
    assert_eq!((exit, code), (Exit::JobFailed, "batch_files_failed"));
    let mixed = [
        failed(900001, Stage::Server, Exit::JobFailed, "origin_not_found"),
        failed(5, Stage::Local, Exit::Verification, "verification_failed"),
        failed(9, Stage::Local, Exit::Network, "download_failed"),
    ];
    let (exit, code, _) = conclusion(&mixed).unwrap();
    assert_eq!((exit, code), (Exit::Verification, "batch_download_failed"));
}

#[test]
fn only_local_failures_are_worth_continuing() {
    assert!(!worth_continuing(&[saved(1)]));
    assert!(!worth_continuing(&[
        saved(1),
        failed(2, Stage::Server, Exit::JobFailed, "origin_not_found")
    ]));
    assert!(worth_continuing(&[
        saved(1),
        failed(2, Stage::Local, Exit::Network, "download_failed")
    ]));
}

#[test]
fn names_are_safe_and_unique() {
    let mut names = Names::default();
    assert_eq!(names.name(1, Some("file-1.bin")), "file-1.bin");
    assert_eq!(names.name(2, None), "file-2.bin");
    assert_eq!(names.name(3, Some("../file-1.bin")), "3-file-1.bin");
    assert_eq!(names.name(4, Some("a.txt")), "a.txt");
    assert_eq!(names.name(5, Some("a.txt")), "5-a.txt");
}

#[test]
fn server_failures_carry_the_files_error() {
    let view = parse_view(&json!({
        "jobId": "0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10", "fileId": null, "status": "failed",
        "files": [
            {"fileId": 900001, "status": "failed",
             "progress": {"percent": 0, "bytesDone": 0, "bytesTotal": null, "bytesPerSecond": null},
             "result": null,
             "error": {"code": "origin_not_found", "message": "404", "retryable": false}},
            {"fileId": 7, "status": "cancelled", "progress": {}, "result": null, "error": null},
        ],
    }))
    .unwrap();
    let files = view.files.unwrap();
    match server_failure(&files[0]) {
        Outcome::Failed {
            file_id,
            stage,
            exit,
            code,
            ..
        } => {
            assert_eq!(
                (file_id, stage, exit),
                (900001, Stage::Server, Exit::JobFailed)
            );
            assert_eq!(code, "origin_not_found");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(server_failure(&files[1]),
        Outcome::Failed { code, .. } if code == "file_cancelled"));
}

#[test]
fn the_report_in_json_and_text() {
    let view = batch_view();
    let ctx = Context {
        view: &view,
        origin: "started",
        followed: "stream",
        total_seconds: 4.2,
    };
    let ok = report(&ctx, &[saved(1), saved(5)], None).unwrap();
    assert_eq!(ok.json["status"], "completed");
    assert_eq!(ok.json["filesSaved"], 2);
    assert_eq!(ok.json["files"][1]["path"], "out/file-5.bin");
    assert_eq!(ok.json["files"][1]["verified"]["checksum"], "whole");
    assert!(ok.text.contains("saved out/file-1.bin"), "{}", ok.text);
    assert!(ok.text.ends_with("2 of 2 files saved"), "{}", ok.text);

    let outcomes = [
        saved(1),
        failed(900001, Stage::Server, Exit::JobFailed, "origin_not_found"),
    ];
    let err = report(&ctx, &outcomes, None).unwrap_err();
    assert_eq!(err.exit.code(), 9);
    let printed = err.report.as_ref().unwrap();
    assert_eq!(printed.json["status"], "partial");
    assert_eq!(printed.json["error"]["exitCode"], 9);
    assert_eq!(printed.json["files"][1]["status"], "failed");
    assert_eq!(
        printed.json["files"][1]["error"]["code"],
        "origin_not_found"
    );
    assert_eq!(printed.json["files"][1]["error"]["stage"], "server");
    assert!(
        printed
            .text
            .contains("FAILED file 900001: origin_not_found"),
        "{}",
        printed.text
    );
    assert!(printed.text.ends_with("1 of 2 files saved, 1 failed"));
}

#[test]
fn a_batch_view_parses() {
    // As the contract (and shared/src/view/batch.rs) gives it.
    let view = parse_view(&json!({
        "jobId": "0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10", "fileId": null, "sourceUrl": null,
        "status": "running", "attempts": 0, "etaSeconds": null, "retriesRemaining": 2,
        "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:01Z",
        "progress": {"percent": 33, "bytesDone": 2097152, "bytesTotal": 6291456,
                     "bytesPerSecond": 700000, "filesDone": 1, "filesTotal": 3},
        "totalFileIds": 3, "completedFiles": 1, "failedFiles": 0, "bundle": "zip",
        "result": null, "error": null,
        "eventsUrl": "/v1/download/0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10/events",
        "files": [
            {"fileId": 1, "status": "completed",
             "progress": {"percent": 100, "bytesDone": 2097152, "bytesTotal": 2097152, "bytesPerSecond": null},
             "result": {"url": "http://127.0.0.1:4566/b/k?X-Amz-Signature=x", "expiresAt": "2026-01-01T01:00:00Z",
                        "size": 2097152, "contentType": "application/octet-stream",
                        "fileName": "file-1.bin", "checksumCrc32c": "Czbl4g=="},
             "error": null},
            {"fileId": 5, "status": "running",
             "progress": {"percent": 0, "bytesDone": 0, "bytesTotal": null, "bytesPerSecond": null},
             "result": null, "error": null},
            {"fileId": 900001, "status": "queued",
             "progress": {"percent": 0, "bytesDone": 0, "bytesTotal": null, "bytesPerSecond": null},
             "result": null, "error": {"code": "origin_not_found", "message": "404", "retryable": true}},
        ],
    }))
    .unwrap();
    assert!(view.is_batch());
    assert_eq!(view.file_id, None);
    assert_eq!(
        (view.total_file_ids, view.completed_files, view.failed_files),
        (Some(3), Some(1), Some(0))
    );
    assert_eq!(view.bundle.as_deref(), Some("zip"));
    assert_eq!(
        (view.progress.files_done, view.progress.files_total),
        (Some(1), Some(3))
    );
    let files = view.files.as_ref().unwrap();
    assert_eq!(
        files.iter().map(|f| f.file_id).collect::<Vec<_>>(),
        [1, 5, 900001]
    );
    let result = files[0].result.as_ref().unwrap();
    assert_eq!(
        (result.size, result.file_name.as_deref()),
        (2097152, Some("file-1.bin"))
    );
    assert_eq!(files[2].error.as_ref().unwrap().code, "origin_not_found");
    assert!(view.end_error().is_none());
    // A single job's view is not a batch.
    let single = parse_view(&json!({"jobId": "x", "fileId": 7, "status": "queued"})).unwrap();
    assert!(!single.is_batch());
    assert_eq!(single.file_id, Some(7));
}
