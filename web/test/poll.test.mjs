// Unit tests of the polling module's timing decisions (run on the compiled web/dist/poll.js):
// Retry-After is followed, transient failures back off exponentially with jitter, a hidden tab
// sends nothing until it is visible again, an abort stops everything.
import assert from "node:assert/strict";
import { test } from "node:test";

import { ApiError, backoffDelay, parseRetryAfter, pollJob, retryDownload, startDownload, TransientError } from "../dist/poll.js";

const JOB = "0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10";

function view(status, percent = 0) {
  return {
    jobId: JOB,
    fileId: 1,
    status,
    progress: { percent, bytesDone: percent, bytesTotal: 100, bytesPerSecond: null },
    etaSeconds: null,
    attempts: 1,
    createdAt: "2026-01-01T00:00:00Z",
    startedAt: null,
    updatedAt: "2026-01-01T00:00:00Z",
    completedAt: null,
    result: null,
    error: null,
  };
}

function json(body, status = 200, headers = {}) {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
}

/** A fetch that answers from a script, one entry per call; an Error entry is thrown (network). */
function scripted(answers) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, init });
    const next = answers.shift();
    if (next === undefined) throw new Error(`unexpected request ${url}`);
    if (next instanceof Error) throw next;
    return next();
  };
  return { fetch, calls };
}

/** A sleep that records what it was asked and returns at once (or rejects if aborted). */
function recordingSleep() {
  const delays = [];
  const sleep = async (ms, signal) => {
    delays.push(ms);
    if (signal?.aborted) throw signal.reason;
  };
  return { sleep, delays };
}

test("parseRetryAfter reads seconds and HTTP dates", () => {
  assert.equal(parseRetryAfter("3"), 3000);
  assert.equal(parseRetryAfter(" 0 "), 0);
  assert.equal(parseRetryAfter(null), null);
  assert.equal(parseRetryAfter(""), null);
  assert.equal(parseRetryAfter("soon"), null);
  const now = Date.parse("2026-01-01T00:00:00Z");
  assert.equal(parseRetryAfter("Thu, 01 Jan 2026 00:00:05 GMT", now), 5000);
  assert.equal(parseRetryAfter("Wed, 31 Dec 2025 23:59:00 GMT", now), 0);
});

test("backoffDelay grows exponentially up to the cap, with full jitter", () => {
  const top = () => 0.999999;
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(n, { baseMs: 1000, capMs: 30000, random: top })),
    [999, 1999, 3999, 7999, 15999, 29999, 29999],
  );
  // The jitter spreads the delay over [base/10, ceiling].
  assert.equal(backoffDelay(3, { baseMs: 1000, random: () => 0 }), 100);
  assert.equal(backoffDelay(3, { baseMs: 1000, random: () => 0.5 }), 2000);
  assert.equal(backoffDelay(1000, { baseMs: 1000, capMs: 30000, random: top }), 29999);
});

test("pollJob waits what Retry-After says, within bounds, and resolves with the final view", async () => {
  const { fetch, calls } = scripted([
    () => json(view("queued"), 200, { "retry-after": "2" }),
    () => json(view("running", 40), 200, { "retry-after": "7" }),
    () => json(view("running", 80), 200, { "retry-after": "3600" }),
    () => json(view("running", 90)), // no Retry-After: the default delay
    () => json(view("completed", 100)),
  ]);
  const { sleep, delays } = recordingSleep();
  const seen = [];
  const final = await pollJob({ baseUrl: "http://api.test/", fetch }, JOB, {
    sleep,
    visibility: null,
    onProgress: (v) => seen.push(`${v.status}:${v.progress.percent}`),
  });
  assert.equal(final.status, "completed");
  assert.deepEqual(seen, ["queued:0", "running:40", "running:80", "running:90", "completed:100"]);
  assert.deepEqual(delays, [2000, 7000, 60000, 2000]);
  assert.equal(calls[0].url, `http://api.test/v1/download/status/${JOB}`);
  assert.equal(calls[0].init.cache, "no-store");
});

test("pollJob backs off on network errors and 5xx, and honours a 503's Retry-After", async () => {
  const { fetch } = scripted([
    new TypeError("Failed to fetch"),
    new TypeError("Failed to fetch"),
    () => json({ code: "internal_error" }, 500),
    () => json({ code: "service_unavailable" }, 503, { "retry-after": "4" }),
    () => json(view("running", 50), 200, { "retry-after": "1" }),
    new TypeError("Failed to fetch"), // the failure count starts again after a success
    () => json(view("failed")),
  ]);
  const { sleep, delays } = recordingSleep();
  const retries = [];
  const final = await pollJob({ baseUrl: "", fetch }, JOB, {
    sleep,
    visibility: null,
    random: () => 0.999999,
    baseMs: 1000,
    onRetry: (error, ms, n) => retries.push([error instanceof TransientError, error.status, ms, n]),
  });
  assert.equal(final.status, "failed");
  assert.deepEqual(delays, [999, 1999, 3999, 4000, 1000, 999]);
  assert.deepEqual(retries, [
    [true, null, 999, 1],
    [true, null, 1999, 2],
    [true, 500, 3999, 3],
    [true, 503, 4000, 4],
    [true, null, 999, 1],
  ]);
});

test("pollJob stops on an API refusal and after maxFailures transient failures", async () => {
  const gone = scripted([() => json({ code: "job_not_found", detail: "no job has this id" }, 404)]);
  await assert.rejects(
    pollJob({ baseUrl: "", fetch: gone.fetch }, JOB, { sleep: recordingSleep().sleep, visibility: null }),
    (error) => error instanceof ApiError && error.status === 404 && error.code === "job_not_found",
  );
  const down = scripted([new TypeError("a"), new TypeError("b"), new TypeError("c")]);
  await assert.rejects(
    pollJob({ baseUrl: "", fetch: down.fetch }, JOB, { sleep: recordingSleep().sleep, visibility: null, maxFailures: 3 }),
    (error) => error instanceof TransientError && /c/.test(error.message),
  );
  assert.equal(down.calls.length, 3);
});

test("pollJob sends nothing while the page is hidden and polls at once when it shows", async () => {
  let hidden = false;
  const listeners = new Set();
  const visibility = {
    hidden: () => hidden,
    subscribe: (fn) => {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
  };
  const setHidden = (value) => {
    hidden = value;
    for (const fn of [...listeners]) fn();
  };
  const { fetch, calls } = scripted([
    () => json(view("running", 10), 200, { "retry-after": "5" }),
    () => json(view("completed", 100)),
  ]);
  // A sleep that never ends by itself: only the tab going hidden (or an abort) ends it.
  const sleep = (_ms, signal) =>
    new Promise((_resolve, reject) => signal?.addEventListener("abort", () => reject(signal.reason), { once: true }));
  const done = pollJob({ baseUrl: "", fetch }, JOB, { sleep, visibility });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(calls.length, 1);
  setHidden(true); // wakes the wait, which now waits for visibility
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(calls.length, 1, "no request while hidden");
  assert.ok(listeners.size > 0, "listening for visibilitychange");
  setHidden(false);
  const final = await done;
  assert.equal(final.status, "completed");
  assert.equal(calls.length, 2);
  assert.equal(listeners.size, 0, "listeners removed");
});

test("pollJob rejects with the abort reason, while waiting or while hidden", async () => {
  const { fetch } = scripted([() => json(view("running", 10), 200, { "retry-after": "5" })]);
  const controller = new AbortController();
  const done = pollJob({ baseUrl: "", fetch }, JOB, { signal: controller.signal, visibility: null });
  await new Promise((r) => setTimeout(r, 20));
  controller.abort(new Error("stop"));
  await assert.rejects(done, /stop/);

  const hiddenController = new AbortController();
  const alwaysHidden = { hidden: () => true, subscribe: () => () => {} };
  const hiddenDone = pollJob({ baseUrl: "", fetch: scripted([]).fetch }, JOB, { signal: hiddenController.signal, visibility: alwaysHidden });
  hiddenController.abort(new Error("closed"));
  await assert.rejects(hiddenDone, /closed/);
});

test("startDownload sends the idempotency key and retries with the same key", async () => {
  const accepted = { jobId: JOB, status: "queued", statusUrl: "/s", downloadUrl: "/d", nextPollInMs: 2000, createdAt: "x" };
  const { fetch, calls } = scripted([
    new TypeError("Failed to fetch"),
    () => json({ code: "service_unavailable" }, 503, { "retry-after": "1" }),
    () => json(accepted, 202),
  ]);
  const { sleep, delays } = recordingSleep();
  const got = await startDownload({ baseUrl: "http://api.test", fetch, headers: { authorization: "Bearer t" } }, 7, { idempotencyKey: "key-1", sleep, random: () => 0.5 });
  assert.deepEqual(got, accepted);
  assert.equal(calls.length, 3);
  for (const call of calls) {
    assert.equal(call.init.method, "POST");
    assert.equal(call.init.headers["idempotency-key"], "key-1");
    assert.equal(call.init.headers.authorization, "Bearer t");
    assert.equal(call.init.body, JSON.stringify({ file_id: 7 }));
  }
  assert.deepEqual(delays, [500, 1000]);

  const refused = scripted([() => json({ code: "invalid_field", field: "file_id" }, 400)]);
  await assert.rejects(startDownload({ baseUrl: "", fetch: refused.fetch }, 0), (e) => e instanceof ApiError && e.code === "invalid_field");
  const generated = scripted([() => json(accepted, 202)]);
  await startDownload({ baseUrl: "", fetch: generated.fetch }, 1);
  assert.match(generated.calls[0].init.headers["idempotency-key"], /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

test("retryDownload posts to the job's retry route and reports a job that is not failed", async () => {
  const accepted = { jobId: JOB, status: "queued", statusUrl: "/s", downloadUrl: "/d", nextPollInMs: 2000, createdAt: "x" };
  const { fetch, calls } = scripted([() => json(accepted, 202)]);
  assert.deepEqual(await retryDownload({ baseUrl: "http://api.test", fetch }, JOB), accepted);
  assert.equal(calls[0].url, `http://api.test/v1/download/${JOB}/retry`);
  assert.equal(calls[0].init.method, "POST");

  const refused = scripted([() => json({ code: "job_not_failed", jobStatus: "completed" }, 409)]);
  await assert.rejects(
    retryDownload({ baseUrl: "", fetch: refused.fetch }, JOB),
    (e) => e instanceof ApiError && e.code === "job_not_failed" && e.problem.jobStatus === "completed",
  );
});
