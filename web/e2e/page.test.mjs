// The browser page against a real `make dev` (started by scripts/web-e2e.sh), in Debian's
// headless Chromium driven by playwright-core. The tests share one page and run in order, so
// the last screenshot shows every kind of job at once. Jobs are followed over the live stream
// (`/v1/download/{jobId}/events`, EventSource) with polling as the fallback: both paths are
// tested, and a reconnect mid-job.
//
// Environment: HAUL_WEB_URL (the page, same origin as the API through make dev's proxy),
// HAUL_ORIGIN_URL (the dev origin, for the reference bytes), HAUL_E2E_ARTIFACTS (screenshots),
// CHROMIUM (the browser binary, default /usr/bin/chromium).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { connect, createServer } from "node:net";
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
/** Every request the page sent to the API, with when (and, for the stream, the request). */
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
  watch(page);
  await page.goto(PAGE);
  await page.locator('li.file[data-file-id="1"]').waitFor();
});

/** Records the page's uncaught errors and its API requests. */
function watch(p) {
  p.on("pageerror", (error) => pageErrors.push(error));
  p.on("request", (request) => {
    const url = new URL(request.url());
    if (url.pathname.startsWith("/v1/")) apiRequests.push({ at: Date.now(), method: request.method(), path: url.pathname, request });
  });
}

/**
 * A TCP relay on a free loopback port to 127.0.0.1:`targetPort`. `cut()` drops every connection
 * through it and stops listening (new connections are refused); `open()` listens again on the
 * same port.
 */
function tcpRelay(targetPort) {
  const sockets = new Set();
  let server = null;
  let port = 0;
  const onClient = (client) => {
    const upstream = connect(targetPort, "127.0.0.1");
    sockets.add(client);
    sockets.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const s of [client, upstream]) {
      s.on("error", drop);
      s.on("close", drop);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  };
  return {
    get port() {
      return port;
    },
    open: () =>
      new Promise((resolve, reject) => {
        server = createServer(onClient);
        server.once("error", reject);
        server.listen(port, "127.0.0.1", () => {
          port = server.address().port;
          resolve();
        });
      }),
    cut: () => {
      server?.close();
      server = null;
      for (const s of [...sockets]) s.destroy();
    },
  };
}

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

/** The API requests for one job's status polls and for its stream. */
function polls(jobId, since = 0) {
  return apiRequests.filter((r) => r.at >= since && r.path === `/v1/download/status/${jobId}`);
}
function streams(jobId, since = 0) {
  return apiRequests.filter((r) => r.at >= since && r.path === `/v1/download/${jobId}/events`);
}

/** Records every state the job's card shows (status, progress, transport) from now on. */
async function recordCard(jobId) {
  await page.evaluate((id) => {
    const history = (window.__haulHistory ??= {});
    const list = (history[id] = []);
    const record = () => {
      const el = document.querySelector(`li.job[data-job-id="${id}"]`);
      if (!el) return;
      const entry = { status: el.dataset.status, value: Number(el.querySelector("progress")?.value ?? 0), transport: el.dataset.transport ?? null };
      const last = list[list.length - 1];
      if (!last || last.status !== entry.status || last.value !== entry.value || last.transport !== entry.transport) list.push(entry);
    };
    new MutationObserver(record).observe(document.getElementById("jobs"), { subtree: true, childList: true, attributes: true });
    record();
  }, jobId);
}

const RANK = { starting: 0, queued: 1, running: 2, completed: 3, failed: 3, cancelled: 3, expired: 3 };

/** The card's recorded states never went backwards (status, then percent within a status). */
async function assertNeverBackwards(jobId) {
  const history = await page.evaluate((id) => window.__haulHistory[id], jobId);
  assert.ok(history.length > 0, "states recorded");
  for (let i = 1; i < history.length; i += 1) {
    const [a, b] = [history[i - 1], history[i]];
    const back = RANK[b.status] < RANK[a.status] || (a.status === b.status && b.value < a.value);
    assert.ok(!back, `job ${jobId}: the card went from ${JSON.stringify(a)} back to ${JSON.stringify(b)}; all: ${JSON.stringify(history)}`);
  }
  return history;
}

/** Saves the completed job's file through its card's link and checks the origin's bytes. */
async function saveAndCheck(jobId, fileId) {
  const save = card(jobId).locator('[data-action="save"]');
  const href = await save.getAttribute("href");
  assert.ok(href && /X-Amz-Signature=/.test(href), `presigned link for job ${jobId}: ${href}`);
  const [file] = await Promise.all([page.waitForEvent("download"), save.click()]);
  const path = await file.path();
  assert.ok(path, `download of file ${fileId} failed: ${await file.failure()}`);
  const got = createHash("sha256").update(readFileSync(path)).digest("hex");
  assert.equal(got, await sha256OfOrigin(fileId), `bytes of file ${fileId}`);
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
  // The stream is closed while hidden (as polling pauses) and opened again when visible.
  assert.ok(
    apiRequests.some((r) => r.at >= shownAt && (r.path.includes("/status/") || r.path.endsWith("/events"))),
    "following resumed at once when visible",
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

test("a job followed over the live stream: one EventSource, no polls, completed and saved", { timeout: 90_000 }, async () => {
  const since = Date.now();
  const [accepted] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/v1/download/initiate") && r.request().method() === "POST"),
    page.locator('li.file[data-file-id="4"] [data-action="download"]').click(), // 8 MiB in about 10 s
  ]);
  const body = await accepted.json();
  assert.ok(typeof body.eventsUrl === "string" && body.eventsUrl.endsWith(`/v1/download/${body.jobId}/events`), `202 names the stream: ${JSON.stringify(body)}`);
  const jobId = body.jobId;
  await card(jobId).waitFor();
  await recordCard(jobId);
  await waitStatus(jobId, "running", { minPercent: 1, timeout: 60_000 });
  const stream = streams(jobId, since);
  assert.equal(stream.length, 1, "one /events request");
  const answer = await stream[0].request.response();
  assert.equal(answer?.status(), 200);
  assert.match(answer.headers()["content-type"] ?? "", /^text\/event-stream/);
  assert.match((await stream[0].request.allHeaders()).accept ?? "", /text\/event-stream/);
  await waitStatus(jobId, "completed", { timeout: 60_000 });
  assert.equal(await card(jobId).getAttribute("data-transport"), "stream");
  assert.deepEqual(polls(jobId, since).map((r) => r.path), [], "no status polls while the stream worked");
  assert.equal(streams(jobId, since).length, 1, "closed on the terminal event, not reconnected");
  const history = await assertNeverBackwards(jobId);
  assert.ok(history.filter((h) => h.status === "running").length >= 2, `progress arrived in steps: ${JSON.stringify(history)}`);
  await saveAndCheck(jobId, 4);
  await shot("3-streamed");
});

test("the stream refused (502): the page polls and the job completes", { timeout: 90_000 }, async () => {
  const refused = [];
  await page.route("**/v1/download/*/events", (route) => {
    refused.push(route.request().url());
    return route.fulfill({ status: 502, contentType: "text/plain", body: "bad gateway" });
  });
  try {
    const since = Date.now();
    const jobId = await download(1); // 2 MiB in about 3 s
    await recordCard(jobId);
    await waitStatus(jobId, "completed", { timeout: 60_000 });
    assert.equal(refused.length, 1, `the stream was tried once, then not again: ${refused}`);
    assert.ok(polls(jobId, since).length >= 2, "polled instead");
    assert.equal(await card(jobId).getAttribute("data-transport"), "poll");
    await assertNeverBackwards(jobId);
    await saveAndCheck(jobId, 1);
  } finally {
    await page.unroute("**/v1/download/*/events");
  }
});

test("the stream unreachable (network error): polling takes over after the reconnect bound", { timeout: 90_000 }, async () => {
  const aborted = [];
  await page.route("**/v1/download/*/events", (route) => {
    aborted.push(Date.now());
    return route.abort("connectionrefused");
  });
  try {
    const since = Date.now();
    const jobId = await download(5); // 2 MiB in about 3 s
    await recordCard(jobId);
    await waitStatus(jobId, "completed", { timeout: 60_000 });
    const firstPoll = polls(jobId, since)[0];
    assert.ok(firstPoll, "polled in the end");
    // EventSource kept retrying by itself (a network error is transient to it) and the page
    // waited its 15 s bound before polling; never both at once.
    assert.ok(aborted.length >= 2, `EventSource retried: ${aborted.length} attempts`);
    assert.ok(firstPoll.at - since >= 14_000, `polling began ${firstPoll.at - since} ms after the start`);
    assert.ok(aborted.every((at) => at < firstPoll.at), "no stream attempt after polling began");
    assert.equal(await card(jobId).getAttribute("data-transport"), "poll");
    await assertNeverBackwards(jobId);
  } finally {
    await page.unroute("**/v1/download/*/events");
  }
});

test("a reconnect mid-job: the connection drops, EventSource resumes with Last-Event-ID, nothing goes back", { timeout: 150_000 }, async (t) => {
  // The network is cut by a TCP relay between the browser and make dev's page port: it drops
  // every open connection (the stream breaks mid-answer) and refuses new ones for 5 s. CDP's
  // Network.emulateNetworkConditions {offline: true} was tried first: Chromium 156 keeps
  // established answers flowing under it (the stream went on), so it cannot cut a stream.
  const relay = tcpRelay(Number(new URL(PAGE).port));
  await relay.open();
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 960, height: 1000 } });
  const mainPage = page;
  page = await context.newPage();
  page.setDefaultTimeout(30_000);
  watch(page);
  try {
    await page.goto(`http://127.0.0.1:${relay.port}/`);
    const since = Date.now();
    const jobId = await download(2); // 24 MiB in about 30 s
    await recordCard(jobId);
    await waitStatus(jobId, "running", { minPercent: 10, timeout: 60_000 });
    assert.equal(streams(jobId, since).length, 1);
    const before = Number(await card(jobId).locator("progress").evaluate((p) => p.value));

    relay.cut();
    const cutAt = Date.now();
    await page.waitForTimeout(5000);
    assert.match(await card(jobId).innerText(), /reconnecting/i, "the card says it is reconnecting");
    await relay.open();
    const backAt = Date.now();
    await waitStatus(jobId, "completed", { timeout: 90_000 });

    const all = streams(jobId, since);
    assert.ok(all.length >= 2, `a second /events request: ${all.length}`);
    const again = [];
    for (const r of all.slice(1)) {
      const answer = await r.request.response().catch(() => null);
      const headers = answer ? await r.request.allHeaders() : {};
      again.push({ at: r.at, lastEventId: headers["last-event-id"] ?? null, status: answer?.status() ?? null });
    }
    t.diagnostic(`cut at +${cutAt - since} ms, back at +${backAt - since} ms; reconnects: ${JSON.stringify(again.map((r) => ({ ...r, at: r.at - since })))}`);
    assert.ok(again.every((r) => r.at >= cutAt), `no reconnect before the cut: ${JSON.stringify(again)}`);
    const resumed = again.filter((r) => r.status === 200);
    assert.ok(resumed.length >= 1 && resumed[0].at >= backAt - 100, `a reconnect answered 200 once the network was back: ${JSON.stringify(again)}`);
    assert.ok(resumed.every((r) => /^\d+$/.test(r.lastEventId ?? "")), `the reconnect carries Last-Event-ID: ${JSON.stringify(again)}`);
    assert.deepEqual(polls(jobId, since).map((r) => r.path), [], "the stream recovered: no fallback to polling");
    assert.equal(await card(jobId).getAttribute("data-transport"), "stream");
    const history = await assertNeverBackwards(jobId);
    t.diagnostic(`card states: ${history.map((h) => `${h.status}:${h.value}`).join(" ")}`);
    assert.ok(history.some((h) => h.status === "running" && h.value > before), `progress after the reconnect: ${JSON.stringify(history)}`);
    assert.doesNotMatch(await card(jobId).innerText(), /reconnecting/i, "the note is gone");
    await saveAndCheck(jobId, 2);
    await shot("3-reconnected");
  } finally {
    page = mainPage;
    relay.cut();
    await context.close();
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
  await shot("4-cancelled");
});

test("a failed job shows its error, and Retry retries the same job", { timeout: 120_000 }, async () => {
  const missing = await download(900001); // not at the origin: fails with origin_not_found
  await waitStatus(missing, "failed");
  const error = await card(missing).locator('[data-role="error"]').innerText();
  assert.match(error, /origin_not_found/);
  await shot("5-failed");

  await recordCard(missing);
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith(`/v1/download/${missing}/retry`)),
    card(missing).locator('[data-action="retry"]').click(),
  ]);
  assert.equal(response.status(), 202);
  assert.equal((await response.json()).jobId, missing, "Retry keeps the job");
  // The same card follows it again: back to work, then failed again (the file is still missing).
  await page.waitForFunction(
    (id) => {
      const states = (window.__haulHistory[id] ?? []).map((s) => s.status);
      const back = states.findIndex((s) => s !== "failed");
      return back >= 0 && states.slice(back).includes("failed");
    },
    missing,
    { timeout: 60_000, polling: 100 },
  );
  const view = (await apiStatus(missing)).body;
  assert.equal(view.redrives, 1, JSON.stringify(view));
  assert.equal(view.fileId, 900001);
  const stored = await storedJobIds();
  assert.ok(stored.includes(missing), `stored jobs: ${stored}`);
  assert.equal(await page.locator(`[data-job-id="${missing}"]`).count(), 1, "one card for the job");
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
  await shot("6-overview");
  assert.deepEqual(pageErrors, [], "uncaught errors in the page");
});
