// The browser page against a real `make dev` (started by scripts/web-e2e.sh), in Debian's
// headless Chromium driven by playwright-core. The tests share one page and run in order, so
// the last screenshot shows every kind of job at once.
//
// Environment: HAUL_WEB_URL (the page, same origin as the API through make dev's proxy),
// HAUL_ORIGIN_URL (the dev origin, for the reference bytes), HAUL_E2E_ARTIFACTS (screenshots),
// CHROMIUM (the browser binary, default /usr/bin/chromium).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { after, before, test } from "node:test";

import { chromium } from "playwright-core";

const PAGE = required("HAUL_WEB_URL");
const ORIGIN = required("HAUL_ORIGIN_URL").replace(/\/+$/, "");
const ARTIFACTS = process.env.HAUL_E2E_ARTIFACTS ?? "target/web-e2e";
const STORE_KEY = "haul.jobs.v1";

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run scripts/web-e2e.sh)`);
  return value;
}

let browser;
let page;
const pageErrors = [];
/** Every request the page sent to the API, with when. */
const apiRequests = [];

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  // A new context is a fresh, empty profile: no localStorage from an earlier run.
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 960, height: 1000 } });
  page = await context.newPage();
  page.setDefaultTimeout(30_000);
  page.on("pageerror", (error) => pageErrors.push(error));
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.pathname.startsWith("/v1/")) apiRequests.push({ at: Date.now(), method: request.method(), path: url.pathname });
  });
  await page.goto(PAGE);
  await page.locator('li.file[data-file-id="1"]').waitFor();
});

after(async () => {
  await browser?.close();
});

async function shot(name) {
  await page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
}

/** Clicks Download on a file and answers the new job's id (from the API's 202). */
async function download(fileId) {
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/v1/download/initiate") && r.request().method() === "POST"),
    page.locator(`li.file[data-file-id="${fileId}"] [data-action="download"]`).click(),
  ]);
  assert.equal(response.status(), 202, `initiate for file ${fileId}`);
  const { jobId } = await response.json();
  await card(jobId).waitFor();
  return jobId;
}

function card(jobId) {
  return page.locator(`li.job[data-job-id="${jobId}"]`);
}

/** Waits until the job's card shows `status` (and, optionally, at least `minPercent`). */
async function waitStatus(jobId, status, { timeout = 60_000, minPercent = 0 } = {}) {
  try {
    await page.waitForFunction(
      ([id, want, min]) => {
        const el = document.querySelector(`li.job[data-job-id="${id}"]`);
        return el?.dataset.status === want && (el.querySelector("progress")?.value ?? 0) >= min;
      },
      [jobId, status, minPercent],
      { timeout, polling: 100 },
    );
  } catch (error) {
    const text = (await card(jobId).count()) ? await card(jobId).innerText() : "(no card)";
    throw new Error(`job ${jobId} did not reach ${status} (${minPercent}%): card says ${JSON.stringify(text)}`, { cause: error });
  }
}

async function storedJobIds() {
  const raw = await page.evaluate((key) => localStorage.getItem(key), STORE_KEY);
  return JSON.parse(raw ?? "[]").map((j) => j.jobId);
}

async function sha256OfOrigin(fileId) {
  const response = await fetch(`${ORIGIN}/files/${fileId}`);
  assert.equal(response.status, 200);
  return createHash("sha256").update(Buffer.from(await response.arrayBuffer())).digest("hex");
}

async function setHidden(hidden) {
  await page.evaluate((value) => {
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => (value ? "hidden" : "visible") });
    Object.defineProperty(document, "hidden", { configurable: true, get: () => value });
    document.dispatchEvent(new Event("visibilitychange"));
  }, hidden);
}

async function apiStatus(jobId) {
  const response = await fetch(new URL(`/v1/download/status/${jobId}`, PAGE));
  return { code: response.status, body: await response.json() };
}

test("two downloads survive a reload, pause while hidden, and arrive with the origin's bytes", { timeout: 180_000 }, async () => {
  const small = await download(1); // 2 MiB in about 3 s
  const medium = await download(4); // 8 MiB in about 10 s
  assert.notEqual(small, medium);
  await waitStatus(medium, "running", { minPercent: 1 });
  await shot("1-two-downloads-running");
  assert.deepEqual((await storedJobIds()).sort(), [small, medium].sort());

  // Reload while the medium one is mid-way.
  const before = Number(await card(medium).locator("progress").evaluate((p) => p.value));
  assert.ok(before < 100, `file 4 already done before the reload (${before}%)`);
  const initiatesBefore = apiRequests.filter((r) => r.path.endsWith("/initiate")).length;
  await page.reload();
  await card(small).waitFor();
  await card(medium).waitFor();
  assert.equal(apiRequests.filter((r) => r.path.endsWith("/initiate")).length, initiatesBefore, "a reload starts no job");

  // A hidden tab sends nothing; it polls as soon as it is visible again.
  await waitStatus(medium, "running");
  await setHidden(true);
  const hiddenAt = Date.now();
  await page.waitForTimeout(4000);
  const whileHidden = apiRequests.filter((r) => r.at > hiddenAt + 100);
  assert.deepEqual(whileHidden, [], "requests while hidden");
  const shownAt = Date.now();
  await setHidden(false);
  await page.waitForTimeout(1000);
  assert.ok(
    apiRequests.some((r) => r.at >= shownAt && r.path.includes("/status/")),
    "polling resumed at once when visible",
  );

  await waitStatus(small, "completed", { timeout: 90_000 });
  await waitStatus(medium, "completed", { timeout: 90_000 });
  await shot("2-both-completed-after-reload");

  for (const [jobId, fileId] of [
    [small, 1],
    [medium, 4],
  ]) {
    const save = card(jobId).locator('[data-action="save"]');
    const href = await save.getAttribute("href");
    assert.ok(href && /X-Amz-Signature=/.test(href), `presigned link for job ${jobId}: ${href}`);
    const [file] = await Promise.all([page.waitForEvent("download"), save.click()]);
    const path = await file.path();
    assert.ok(path, `download of file ${fileId} failed: ${await file.failure()}`);
    const got = createHash("sha256").update(readFileSync(path)).digest("hex");
    assert.equal(got, await sha256OfOrigin(fileId), `bytes of file ${fileId}`);
    const view = await apiStatus(jobId);
    assert.equal(file.suggestedFilename(), view.body.result.fileName);
  }
});

test("cancel stops a running job", { timeout: 120_000 }, async () => {
  const slow = await download(3); // 64 MiB over about 2 minutes
  await waitStatus(slow, "running");
  await card(slow).locator('[data-action="cancel"]').click();
  await waitStatus(slow, "cancelled", { timeout: 15_000 });
  assert.equal((await apiStatus(slow)).body.status, "cancelled");
  assert.equal(await card(slow).locator('[data-action="cancel"]').count(), 0, "no Cancel on a cancelled job");
  assert.equal(await card(slow).locator('[data-action="retry"]').count(), 1, "Retry offered");
  await shot("3-cancelled");
});

test("a failed job shows its error, and Retry starts a new job", { timeout: 120_000 }, async () => {
  const missing = await download(900001); // not at the origin: fails with origin_not_found
  await waitStatus(missing, "failed");
  const error = await card(missing).locator('[data-role="error"]').innerText();
  assert.match(error, /origin_not_found/);
  await shot("4-failed");

  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/v1/download/initiate")),
    card(missing).locator('[data-action="retry"]').click(),
  ]);
  assert.equal(response.status(), 202);
  const retried = (await response.json()).jobId;
  assert.notEqual(retried, missing, "Retry makes a new job");
  await card(missing).waitFor({ state: "detached" });
  await waitStatus(retried, "failed");
  const stored = await storedJobIds();
  assert.ok(stored.includes(retried) && !stored.includes(missing), `stored jobs: ${stored}`);
  assert.equal((await apiStatus(retried)).body.fileId, 900001);
});

test("a job the server no longer knows is reported after a reload", { timeout: 60_000 }, async () => {
  const ghost = "00000000-0000-4000-8000-000000000000";
  await page.evaluate(
    ([key, id]) => {
      const list = JSON.parse(localStorage.getItem(key) ?? "[]");
      list.push({ jobId: id, fileId: 5 });
      localStorage.setItem(key, JSON.stringify(list));
    },
    [STORE_KEY, ghost],
  );
  await page.reload();
  await waitStatus(ghost, "unknown");
  assert.match(await card(ghost).locator('[data-role="error"]').innerText(), /job_not_found/);
  await card(ghost).locator('[data-action="remove"]').click();
  await card(ghost).waitFor({ state: "detached" });
  assert.ok(!(await storedJobIds()).includes(ghost));
});

test("overview: jobs in every state at once", { timeout: 90_000 }, async () => {
  const running = await download(2); // 24 MiB over about 30 s
  await waitStatus(running, "running", { minPercent: 15, timeout: 60_000 });
  await shot("5-overview");
  assert.deepEqual(pageErrors, [], "uncaught errors in the page");
});
