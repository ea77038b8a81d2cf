// Batches on the browser page against a real `make dev` (started by scripts/web-e2e.sh), in
// Debian's headless Chromium driven by playwright-core: files ticked in the list start ONE batch
// (`file_ids`), whose card shows a total bar and a bar per file; the saved files carry the
// origin's bytes; a missing file fails with its error code while the others stay downloadable;
// a zip batch offers one archive, checked by Python's zipfile in this process; Cancel cancels
// the batch. make dev's catalog: ids % 4 == 1 are 2 MiB in about 3 s, 2 is 24 MiB over ~30 s,
// 3 is 64 MiB over ~2 min, ids >= 900000 do not exist at the origin.
//
// Environment as for page.test.mjs: HAUL_WEB_URL, HAUL_ORIGIN_URL, HAUL_E2E_ARTIFACTS, CHROMIUM.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { after, before, test } from "node:test";

import { chromium } from "playwright-core";

const PAGE = required("HAUL_WEB_URL");
const ORIGIN = required("HAUL_ORIGIN_URL").replace(/\/+$/, "");
const ARTIFACTS = process.env.HAUL_E2E_ARTIFACTS ?? "target/web-e2e";
const STORE_KEY = "haul.jobs.v1";
const FILES = [1, 5, 9, 13, 17, 2, 3, 900002];

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run scripts/web-e2e.sh)`);
  return value;
}

let browser;
let page;
const pageErrors = [];
const apiRequests = [];

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 960, height: 1200 } });
  page = await context.newPage();
  page.setDefaultTimeout(30_000);
  page.on("pageerror", (error) => pageErrors.push(error));
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.pathname.startsWith("/v1/")) apiRequests.push({ at: Date.now(), method: request.method(), path: url.pathname });
  });
  await page.goto(`${PAGE}?files=${FILES.join(",")}`);
  await page.locator('li.file[data-file-id="1"]').waitFor();
});

after(async () => {
  await browser?.close();
});

async function shot(name) {
  await page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
}

/** Ticks `fileIds` (in the list's order, the order the batch gets them; and "as one zip" when
 *  `zip`), starts the batch, and answers its job id. */
async function startBatch(fileIds, { zip = false } = {}) {
  for (const id of fileIds) await page.locator(`li.file[data-file-id="${id}"] [data-action="select"]`).check();
  await page.locator("#batch-zip").setChecked(zip);
  const button = page.locator('#batch-controls [data-action="batch"]');
  assert.equal(await button.innerText(), `Download ${fileIds.length} files as one batch`);
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/v1/download/initiate") && r.request().method() === "POST"),
    button.click(),
  ]);
  const sent = JSON.parse(response.request().postData() ?? "{}");
  assert.deepEqual(sent, zip ? { file_ids: fileIds, bundle: "zip" } : { file_ids: fileIds }, "one initiate with every ticked file");
  assert.equal(response.status(), 202, `initiate: ${await response.text()}`);
  const body = await response.json();
  assert.equal(body.totalFileIds, fileIds.length);
  await card(body.jobId).waitFor();
  // The selection is cleared for the next batch.
  for (const id of fileIds) assert.equal(await page.locator(`li.file[data-file-id="${id}"] [data-action="select"]`).isChecked(), false);
  return body.jobId;
}

function card(jobId) {
  return page.locator(`li.job[data-job-id="${jobId}"]`);
}

function fileRow(jobId, fileId) {
  return card(jobId).locator(`li.batch-file[data-file-id="${fileId}"]`);
}

/** Waits until the batch's card shows `status` with every file in one of `fileStates`. */
async function waitBatch(jobId, status, { timeout = 90_000 } = {}) {
  try {
    await page.waitForFunction(
      ([id, want]) => document.querySelector(`li.job[data-job-id="${id}"]`)?.dataset.status === want,
      [jobId, status],
      { timeout, polling: 100 },
    );
  } catch (error) {
    const text = (await card(jobId).count()) ? await card(jobId).innerText() : "(no card)";
    throw new Error(`batch ${jobId} did not reach ${status}: card says ${JSON.stringify(text)}`, { cause: error });
  }
}

/** What the card shows per file: status, bar value, error text, link. */
async function rows(jobId) {
  return card(jobId).evaluate((c) =>
    [...c.querySelectorAll("li.batch-file")].map((row) => ({
      fileId: Number(row.dataset.fileId),
      status: row.dataset.status,
      value: Number(row.querySelector("progress")?.value ?? -1),
      error: row.querySelector('[data-role="error"]')?.textContent ?? null,
      href: row.querySelector('[data-action="save"]')?.getAttribute("href") ?? null,
    })),
  );
}

async function apiStatus(jobId) {
  const response = await fetch(new URL(`/v1/download/status/${jobId}`, PAGE));
  return { code: response.status, body: await response.json() };
}

async function originBytes(fileId) {
  const response = await fetch(`${ORIGIN}/files/${fileId}`);
  assert.equal(response.status, 200);
  return Buffer.from(await response.arrayBuffer());
}

const sha256 = (buffer) => createHash("sha256").update(buffer).digest("hex");

/** Clicks a save link and answers the saved file (path, name). */
async function save(link) {
  const [file] = await Promise.all([page.waitForEvent("download"), link.click()]);
  const path = await file.path();
  assert.ok(path, `download failed: ${await file.failure()}`);
  return { path, name: file.suggestedFilename() };
}

async function saveFileAndCheck(jobId, fileId) {
  const link = fileRow(jobId, fileId).locator('[data-action="save"]');
  assert.match((await link.getAttribute("href")) ?? "", /X-Amz-Signature=/, `presigned link for file ${fileId}`);
  const { path, name } = await save(link);
  assert.equal(sha256(readFileSync(path)), sha256(await originBytes(fileId)), `bytes of file ${fileId}`);
  return name;
}

test("three ticked files make one batch with a bar each; each completes and is saved with the origin's bytes", { timeout: 180_000 }, async () => {
  const initiatesBefore = apiRequests.filter((r) => r.path.endsWith("/initiate")).length;
  const jobId = await startBatch([1, 5, 9]);
  assert.equal(apiRequests.filter((r) => r.path.endsWith("/initiate")).length, initiatesBefore + 1, "one initiate for the batch");
  assert.equal(await page.locator("li.job").count(), 1, "one card");
  assert.equal(await card(jobId).getAttribute("data-kind"), "batch");
  assert.deepEqual((await rows(jobId)).map((r) => r.fileId), [1, 5, 9], "a bar per file, in the order ticked");
  assert.equal(await card(jobId).locator('progress[data-role="total"]').count(), 1, "a total bar");
  await shot("b1-batch-started");

  // A reload picks the batch up again (no new job).
  await page.reload();
  await card(jobId).waitFor();
  assert.equal(apiRequests.filter((r) => r.path.endsWith("/initiate")).length, initiatesBefore + 1, "a reload starts no job");
  assert.deepEqual(JSON.parse(await page.evaluate((k) => localStorage.getItem(k), STORE_KEY)).find((s) => s.jobId === jobId)?.fileIds, [1, 5, 9]);

  await waitBatch(jobId, "completed");
  const shown = await rows(jobId);
  assert.deepEqual(shown.map((r) => [r.fileId, r.status, r.value, r.error]), [
    [1, "completed", 100, null],
    [5, "completed", 100, null],
    [9, "completed", 100, null],
  ]);
  assert.equal(Number(await card(jobId).locator('progress[data-role="total"]').evaluate((p) => p.value)), 100);
  assert.equal(await card(jobId).getAttribute("data-files-done"), "3");
  assert.equal(await card(jobId).getAttribute("data-files-total"), "3");
  assert.match(await card(jobId).locator('[data-role="details"]').first().innerText(), /3 of 3 files · 6\.0 MiB of 6\.0 MiB/);
  assert.equal(await card(jobId).locator('[data-action="cancel"]').count(), 0, "no Cancel once completed");
  assert.equal(await card(jobId).locator('[data-action="save-archive"]').count(), 0, "no archive without zip");
  await shot("b2-batch-completed");

  const view = (await apiStatus(jobId)).body;
  for (const fileId of [1, 5, 9]) {
    const name = await saveFileAndCheck(jobId, fileId);
    assert.equal(name, view.files.find((f) => f.fileId === fileId).result.fileName);
  }
});

test("a batch with a missing file: that file failed with origin_not_found, the others downloadable", { timeout: 180_000 }, async () => {
  const jobId = await startBatch([13, 17, 900002]); // the list's order
  await waitBatch(jobId, "completed");
  const shown = await rows(jobId);
  assert.deepEqual(shown.map((r) => [r.fileId, r.status]), [
    [13, "completed"],
    [17, "completed"],
    [900002, "failed"],
  ]);
  const missing = shown.find((r) => r.fileId === 900002);
  assert.match(missing.error ?? "", /origin_not_found/);
  assert.equal(missing.href, null, "no link for the failed file");
  assert.match(await card(jobId).locator('[data-role="details"]').first().innerText(), /1 failed/);
  const view = (await apiStatus(jobId)).body;
  assert.equal(view.failedFiles, 1);
  assert.equal(view.completedFiles, 2);
  await saveFileAndCheck(jobId, 13);
  await saveFileAndCheck(jobId, 17);
  await shot("b3-batch-one-missing");
  missingBatch = jobId;
});

let missingBatch = null;

// The per-file download route is what the page links to when a file's presigned URL is about to
// expire.
test("GET /v1/download/{jobId}/files/{fileId} redirects to a completed file, 409 for a failed one", { timeout: 30_000 }, async () => {
  assert.ok(missingBatch, "the missing-file batch ran");
  const routed = await fetch(new URL(`/v1/download/${missingBatch}/files/17`, PAGE));
  assert.equal(routed.status, 200, `the route redirects to the file: ${routed.status}`);
  assert.equal(sha256(Buffer.from(await routed.arrayBuffer())), sha256(await originBytes(17)));
  const failed = await fetch(new URL(`/v1/download/${missingBatch}/files/900002`, PAGE), { redirect: "manual" });
  assert.equal(failed.status, 409);
});

test("a zip batch offers one archive: a valid zip of the selected files", { timeout: 240_000 }, async () => {
  const files = [1, 5, 9];
  const jobId = await startBatch(files, { zip: true });
  assert.equal(await card(jobId).locator('[data-role="bundle"]').innerText(), "zip");
  await waitBatch(jobId, "completed", { timeout: 150_000 });
  const archive = card(jobId).locator('[data-action="save-archive"]');
  assert.equal(await archive.count(), 1, "one archive link");
  const view = (await apiStatus(jobId)).body;
  assert.equal(view.bundle, "zip");
  assert.equal(view.result.contentType, "application/zip");
  const { path, name } = await save(archive);
  assert.equal(name, view.result.fileName);
  assert.match(name, /\.zip$/);

  // Read it back with Python's zipfile: testzip() checks every entry's CRC-32.
  const py = [
    "import hashlib, json, sys, zipfile",
    "z = zipfile.ZipFile(sys.argv[1])",
    "bad = z.testzip()",
    "print(json.dumps({'bad': bad, 'entries': [[i.filename, hashlib.sha256(z.read(i)).hexdigest()] for i in z.infolist()]}))",
  ].join("\n");
  const run = spawnSync("python3", ["-c", py, path], { encoding: "utf8" });
  assert.equal(run.status, 0, `python3 zipfile: ${run.stderr}`);
  const read = JSON.parse(run.stdout);
  assert.equal(read.bad, null, "every entry's CRC-32 is right");
  assert.equal(read.entries.length, files.length, `one entry per file: ${JSON.stringify(read.entries)}`);
  const want = await Promise.all(files.map(async (id) => sha256(await originBytes(id))));
  assert.deepEqual(read.entries.map(([, digest]) => digest).sort(), [...want].sort(), "the entries carry the origin's bytes");
  assert.deepEqual(
    read.entries.map(([entry]) => entry).sort(),
    view.files.map((f) => f.result.fileName).sort(),
    "the entries are named as the files",
  );
  await shot("b4-zip-batch");
});

test("Cancel cancels the batch and its card", { timeout: 120_000 }, async () => {
  const jobId = await startBatch([2, 3]); // 24 MiB and 64 MiB: still running when cancelled
  await waitBatch(jobId, "running", { timeout: 60_000 });
  await card(jobId).locator('[data-action="cancel"]').click();
  await waitBatch(jobId, "cancelled", { timeout: 15_000 });
  assert.equal(await card(jobId).locator('[data-action="cancel"]').count(), 0, "no Cancel on a cancelled batch");
  assert.equal(await card(jobId).locator('[data-action="retry"]').count(), 1, "Retry offered");
  const view = (await apiStatus(jobId)).body;
  assert.equal(view.status, "cancelled");
  assert.deepEqual(view.files.map((f) => f.status), ["cancelled", "cancelled"], "every unfinished file cancelled");
  // The card's files follow (the last view, from the DELETE's answer or the stream).
  await page.waitForFunction(
    (id) => [...document.querySelectorAll(`li.job[data-job-id="${id}"] li.batch-file`)].every((r) => r.dataset.status === "cancelled"),
    jobId,
    { timeout: 15_000, polling: 100 },
  ).catch(async (error) => {
    throw new Error(`files not shown cancelled: ${JSON.stringify(await rows(jobId))}`, { cause: error });
  });
  await shot("b5-batch-cancelled");
  assert.deepEqual(pageErrors, [], "uncaught errors in the page");
});
