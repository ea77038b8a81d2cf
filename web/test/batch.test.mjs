// Unit tests of the batch card's decisions (web/dist/batch.js) and of starting a batch
// (startBatch in web/dist/poll.js): bars per file and in total, failed files with their error
// code, links per completed file, the zip's one link, when Cancel is offered.
import assert from "node:assert/strict";
import { test } from "node:test";

import { batchModel, batchSummary, saveLink, selectedFileIds, EXPIRY_MARGIN_MS } from "../dist/batch.js";
import { batchBody, fileRoute, startBatch } from "../dist/poll.js";

const JOB = "5d1f8f2a-3b7e-4c1d-9a55-0f6e2b8c7d11";
const API = { baseUrl: "" };
const NOW = Date.parse("2026-01-01T00:00:00Z");
const LATER = "2026-01-01T01:00:00Z";

function result(name, size = 2097152, expiresAt = LATER) {
  return { url: `https://s3.example/${name}?X-Amz-Signature=abc`, expiresAt, size, contentType: "application/octet-stream", fileName: name, checksumCrc32c: null };
}

function file(fileId, status, percent = 0, extra = {}) {
  return {
    fileId,
    status,
    progress: { percent, bytesDone: percent * 1000, bytesTotal: 100_000, bytesPerSecond: null },
    result: status === "completed" ? result(`file-${fileId}.bin`) : null,
    error: null,
    ...extra,
  };
}

function batch(status, files, extra = {}) {
  const ended = files.filter((f) => f.status === "completed" || f.status === "failed").length;
  return {
    jobId: JOB,
    fileId: null,
    sourceUrl: null,
    status,
    progress: { percent: 40, bytesDone: 120_000, bytesTotal: 300_000, bytesPerSecond: 5000, filesDone: ended, filesTotal: files.length },
    etaSeconds: null,
    attempts: 1,
    createdAt: "2026-01-01T00:00:00Z",
    startedAt: null,
    updatedAt: "2026-01-01T00:00:00Z",
    completedAt: null,
    result: null,
    error: null,
    totalFileIds: files.length,
    completedFiles: files.filter((f) => f.status === "completed").length,
    failedFiles: files.filter((f) => f.status === "failed").length,
    bundle: null,
    files,
    ...extra,
  };
}

test("before the first view: a starting row per file, nothing to save, Cancel offered", () => {
  const m = batchModel(API, JOB, [1, 5, 9], null, { bundle: "zip", now: NOW });
  assert.equal(m.status, "starting");
  assert.deepEqual(m.files.map((f) => [f.fileId, f.status, f.percent, f.save]), [
    [1, "starting", 0, null],
    [5, "starting", 0, null],
    [9, "starting", 0, null],
  ]);
  assert.equal(m.filesTotal, 3);
  assert.equal(m.filesDone, 0);
  assert.equal(m.bundle, "zip");
  assert.equal(m.archive, null);
  assert.equal(m.cancellable, true);
});

test("a running batch: a bar per file in the view's order, and the total from progress", () => {
  const v = batch("running", [file(9, "running", 55), file(1, "completed", 100), file(5, "queued")]);
  const m = batchModel(API, JOB, [1, 5, 9], v, { now: NOW });
  assert.deepEqual(m.files.map((f) => [f.fileId, f.status, f.percent]), [
    [9, "running", 55],
    [1, "completed", 100],
    [5, "queued", 0],
  ]);
  assert.equal(m.percent, 40);
  assert.equal(m.filesDone, 1);
  assert.equal(m.filesTotal, 3);
  assert.equal(m.bytesDone, 120_000);
  assert.equal(m.bytesTotal, 300_000);
  assert.equal(m.bytesPerSecond, 5000);
  assert.equal(m.cancellable, true);
  assert.equal(m.zipping, false);
  // Only the completed file has a link, to its presigned URL.
  assert.equal(m.files[0].save, null);
  assert.equal(m.files[1].save.href, "https://s3.example/file-1.bin?X-Amz-Signature=abc");
  assert.equal(m.files[1].save.fileName, "file-1.bin");
  assert.equal(m.files[2].save, null);
  assert.equal(batchSummary(m, (n) => `${n}B`), "40% · 1 of 3 files · 120000B of 300000B · 5000B/s");
});

test("a completed batch with a failed file: the file's error code, the others downloadable, no Cancel", () => {
  const missing = file(900001, "failed", 0, { error: { code: "origin_not_found", message: "The origin has no such file", retryable: false }, progress: { percent: 0, bytesDone: 0, bytesTotal: null, bytesPerSecond: null } });
  const v = batch("completed", [file(1, "completed"), missing, file(5, "completed")], { progress: { percent: 100, bytesDone: 4, bytesTotal: null, bytesPerSecond: 7, filesDone: 3, filesTotal: 3 } });
  const m = batchModel(API, JOB, [1, 900001, 5], v, { now: NOW });
  assert.equal(m.status, "completed");
  assert.equal(m.percent, 100);
  assert.equal(m.cancellable, false);
  assert.equal(m.bytesPerSecond, null, "no rate once ended");
  assert.equal(m.failedFiles, 1);
  assert.equal(m.completedFiles, 2);
  const failed = m.files.find((f) => f.fileId === 900001);
  assert.equal(failed.status, "failed");
  assert.equal(failed.errorCode, "origin_not_found");
  assert.equal(failed.save, null);
  assert.deepEqual(m.files.filter((f) => f.save).map((f) => f.fileId), [1, 5]);
  assert.equal(m.archive, null, "no archive without bundle");
  assert.equal(batchSummary(m, String), "100% · 3 of 3 files · 4 · 1 failed", "an unknown total once ended: the bytes done alone");
});

test("a zip batch: writing the zip once every file ended, then one archive link", () => {
  const files = [file(1, "completed"), file(5, "completed")];
  const writing = batchModel(API, JOB, [1, 5], batch("running", files, { bundle: "zip" }), { now: NOW });
  assert.equal(writing.zipping, true);
  assert.equal(writing.archive, null);
  assert.equal(writing.cancellable, true);
  assert.match(batchSummary(writing, String), /writing the zip/);

  const archive = result("batch-5d1f8f2a.zip", 4194500);
  const done = batchModel(API, JOB, [1, 5], batch("completed", files, { bundle: "zip", result: archive }), { now: NOW });
  assert.equal(done.zipping, false);
  assert.deepEqual(done.archive, { href: archive.url, fileName: "batch-5d1f8f2a.zip", size: 4194500 });

  // A zip batch still running its files is not "writing the zip".
  const busy = batchModel(API, JOB, [1, 5], batch("running", [file(1, "completed"), file(5, "running", 10)], { bundle: "zip" }), { now: NOW });
  assert.equal(busy.zipping, false);
  // Every file failed: nothing to zip.
  const none = batchModel(API, JOB, [1], batch("running", [file(1, "failed")], { bundle: "zip" }), { now: NOW });
  assert.equal(none.zipping, false);
});

test("links about to expire go through the API's redirecting routes", () => {
  const soon = new Date(NOW + EXPIRY_MARGIN_MS - 1).toISOString();
  const f = file(7, "completed");
  f.result = result("seven.bin", 10, soon);
  const v = batch("completed", [f], { bundle: "zip", result: result("batch-x.zip", 20, soon) });
  const m = batchModel({ baseUrl: "https://api.example" }, JOB, [7], v, { now: NOW });
  assert.equal(m.files[0].save.href, `https://api.example/v1/download/${JOB}/files/7`);
  assert.equal(m.archive.href, `https://api.example/v1/download/${JOB}`);
  assert.equal(fileRoute(API, JOB, 7), `/v1/download/${JOB}/files/7`);
  assert.equal(saveLink(result("a", 1, LATER), "/route", NOW).href, "https://s3.example/a?X-Amz-Signature=abc");
});

test("a cancelled batch: no Cancel, its files as the view says", () => {
  const v = batch("cancelled", [file(1, "completed"), file(3, "cancelled", 12)]);
  const m = batchModel(API, JOB, [1, 3], v, { now: NOW });
  assert.equal(m.cancellable, false);
  assert.deepEqual(m.files.map((f) => f.status), ["completed", "cancelled"]);
  assert.ok(m.files[0].save, "a file that completed before the cancel stays downloadable");
  // A view without files (e.g. an older server) falls back to the ids, in the batch's state.
  const bare = batchModel(API, JOB, [1, 3], { ...v, files: undefined }, { now: NOW });
  assert.deepEqual(bare.files.map((f) => [f.fileId, f.status]), [
    [1, "cancelled"],
    [3, "cancelled"],
  ]);
});

test("every file failed: the batch's own error code", () => {
  const v = batch("failed", [file(900001, "failed")], { error: { code: "batch_files_failed", message: "every file failed" } });
  const m = batchModel(API, JOB, [900001], v, { now: NOW });
  assert.equal(m.errorCode, "batch_files_failed");
  assert.equal(m.cancellable, false);
  assert.equal(m.percent, 40, "the view's percent, not 100");
});

test("the selection: the list's order, no duplicates, at most 100", () => {
  assert.deepEqual(selectedFileIds([1, 5, 4, 2], new Set([2, 1])), [1, 2]);
  assert.deepEqual(selectedFileIds([3, 3, 4], new Set([3, 4])), [3, 4]);
  assert.deepEqual(selectedFileIds([1, 2], new Set()), []);
  const many = Array.from({ length: 150 }, (_, i) => i + 1);
  assert.equal(selectedFileIds(many, new Set(many)).length, 100);
});

test("startBatch sends file_ids, and bundle and priority only when asked for, with an idempotency key", async () => {
  assert.deepEqual(batchBody([1, 2, 3]), { file_ids: [1, 2, 3] });
  assert.deepEqual(batchBody([4], { bundle: "zip" }), { file_ids: [4], bundle: "zip" });
  assert.deepEqual(batchBody([4], { bundle: null, priority: "high" }), { file_ids: [4], priority: "high" });

  const sent = [];
  const accepted = { jobId: JOB, status: "queued", statusUrl: "s", downloadUrl: "d", nextPollInMs: 1000, createdAt: "c", totalFileIds: 2 };
  const api = {
    baseUrl: "https://api.example",
    fetch: async (url, init) => {
      sent.push({ url, init });
      if (sent.length === 1) return new Response("{}", { status: 503 });
      return new Response(JSON.stringify(accepted), { status: 202, headers: { "content-type": "application/json" } });
    },
  };
  const got = await startBatch(api, [1, 2], { bundle: "zip", sleep: async () => {}, random: () => 0 });
  assert.deepEqual(got, accepted);
  assert.equal(sent.length, 2, "a 503 is retried");
  assert.equal(sent[0].url, "https://api.example/v1/download/initiate");
  assert.equal(sent[0].init.method, "POST");
  assert.deepEqual(JSON.parse(sent[0].init.body), { file_ids: [1, 2], bundle: "zip" });
  const key = sent[0].init.headers["idempotency-key"];
  assert.match(key, /^[0-9a-f-]{36}$/);
  assert.equal(sent[1].init.headers["idempotency-key"], key, "the retry reuses the key");
});
