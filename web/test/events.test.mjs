// Unit tests of the live-stream follower (run on the compiled web/dist/events.js) with a fake
// EventSource and a scripted fetch: the choice between stream and polling, the fallbacks, the
// hand-over from polling to the stream, never both at once, and no view moving backwards.
import assert from "node:assert/strict";
import { test } from "node:test";

import { CLOSED, CONNECTING, chooseTransport, followJob, parseStatusEvent, resolveEventsUrl, supersedes } from "../dist/events.js";

const JOB = "0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10";
const EVENTS = `/v1/download/${JOB}/events`;

let clock = Date.parse("2026-01-01T00:00:00Z");
function view(status, percent = 0, extra = {}) {
  clock += 1000;
  return {
    jobId: JOB,
    fileId: 1,
    status,
    progress: { percent, bytesDone: percent, bytesTotal: 100, bytesPerSecond: null },
    etaSeconds: null,
    attempts: 1,
    createdAt: "2026-01-01T00:00:00Z",
    startedAt: null,
    updatedAt: new Date(clock).toISOString(),
    completedAt: null,
    result: status === "completed" ? { url: "http://s3.test/f?X-Amz-Signature=x", expiresAt: "2026-01-02T00:00:00Z", size: 100, contentType: "x", fileName: "f", checksumCrc32c: null } : null,
    error: null,
    ...extra,
  };
}

function json(body, status = 200, headers = {}) {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
}

/** A fetch that answers from a script; `active` counts requests in flight. */
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

/** A fake EventSource class; `opened` lists every instance, `live()` those not closed. */
function fakeEventSource() {
  const opened = [];
  class FakeEventSource {
    constructor(url) {
      this.url = url;
      this.readyState = CONNECTING;
      this.listeners = new Map();
      this.closed = false;
      opened.push(this);
    }
    addEventListener(type, fn) {
      if (!this.listeners.has(type)) this.listeners.set(type, new Set());
      this.listeners.get(type).add(fn);
    }
    removeEventListener(type, fn) {
      this.listeners.get(type)?.delete(fn);
    }
    close() {
      this.readyState = CLOSED;
      this.closed = true;
    }
    emit(type, event = {}) {
      for (const fn of [...(this.listeners.get(type) ?? [])]) fn(event);
    }
    open() {
      this.readyState = 1;
      this.emit("open");
    }
    status(v, id = 1) {
      this.emit("status", { data: JSON.stringify(v), lastEventId: String(id) });
    }
    fail(readyState) {
      this.readyState = readyState;
      this.emit("error");
    }
  }
  return { FakeEventSource, opened, live: () => opened.filter((e) => !e.closed) };
}

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));
const instantSleep = async (_ms, signal) => {
  if (signal?.aborted) throw signal.reason;
};

test("chooseTransport: stream only with an eventsUrl, an EventSource, no headers and no failure", () => {
  const ok = { eventsUrl: EVENTS, hasEventSource: true };
  assert.equal(chooseTransport(ok).transport, "stream");
  assert.equal(chooseTransport({ ...ok, eventsUrl: undefined }).transport, "poll");
  assert.equal(chooseTransport({ ...ok, eventsUrl: "" }).transport, "poll");
  assert.equal(chooseTransport({ ...ok, hasEventSource: false }).transport, "poll");
  const auth = chooseTransport({ ...ok, headers: { Authorization: "Bearer t" } });
  assert.equal(auth.transport, "poll");
  assert.match(auth.reason, /Authorization/);
  assert.equal(chooseTransport({ ...ok, headers: {} }).transport, "stream");
  assert.equal(chooseTransport({ ...ok, streamFailed: true }).transport, "poll");
});

test("resolveEventsUrl: relative against the API base or the page, absolute as it is", () => {
  assert.equal(resolveEventsUrl(EVENTS, "", "http://127.0.0.1:9200/"), `http://127.0.0.1:9200${EVENTS}`);
  assert.equal(resolveEventsUrl(EVENTS, "https://api.example.com", "http://127.0.0.1:9200/"), `https://api.example.com${EVENTS}`);
  const aws = `https://abc.lambda-url.eu-west-1.on.aws${EVENTS}`;
  assert.equal(resolveEventsUrl(aws, "https://api.example.com", "http://127.0.0.1:9200/"), aws);
  assert.equal(resolveEventsUrl(aws, ""), aws);
  assert.throws(() => resolveEventsUrl(EVENTS, ""), TypeError);
});

test("parseStatusEvent accepts this job's status views only", () => {
  const v = view("running", 40);
  assert.deepEqual(parseStatusEvent(JSON.stringify(v), JOB), v);
  assert.equal(parseStatusEvent("not json", JOB), null);
  assert.equal(parseStatusEvent("null", JOB), null);
  assert.equal(parseStatusEvent(JSON.stringify({ ...v, jobId: "other" }), JOB), null);
  assert.equal(parseStatusEvent(JSON.stringify({ ...v, status: "weird" }), JOB), null);
  assert.equal(parseStatusEvent(JSON.stringify({ ...v, progress: null }), JOB), null);
});

test("supersedes: never back from a terminal state, an older write or a lower percent", () => {
  const queued = view("queued");
  const running = view("running", 30);
  const done = view("completed", 100);
  assert.equal(supersedes(null, queued), true);
  assert.equal(supersedes(queued, running), true);
  assert.equal(supersedes(running, queued), false, "older write");
  assert.equal(supersedes(done, running), false);
  assert.equal(supersedes(done, { ...view("running", 100) }), false, "nothing after a terminal state");
  assert.equal(supersedes(done, { ...done, updatedAt: done.updatedAt }), true, "the same end again (fresh URL)");
  assert.equal(supersedes(done, view("failed")), false);
  assert.equal(supersedes(running, { ...running, progress: { ...running.progress, percent: 20 } }), false, "same write, lower percent");
  assert.equal(supersedes(running, { ...running, status: "queued" }), false, "same write, lower status");
  // A later write may legitimately go back (e.g. a retried attempt starts over).
  assert.equal(supersedes(running, view("running", 5, { attempts: 2 })), true);
});

test("followJob streams: every status event is shown, the terminal one closes the stream, no polls", { timeout: 5000 }, async (t) => {
  const { FakeEventSource, opened, live } = fakeEventSource();
  const { fetch, calls } = scripted([]);
  const seen = [];
  const transports = [];
  const done = followJob({ baseUrl: "", fetch }, JOB, {
    signal: t.signal,
    eventsUrl: EVENTS,
    EventSource: FakeEventSource,
    pageHref: "http://127.0.0.1:9200/",
    visibility: null,
    onProgress: (v) => seen.push(`${v.status}:${v.progress.percent}`),
    onTransport: (t) => transports.push(t),
  });
  await tick();
  assert.equal(opened.length, 1);
  assert.equal(opened[0].url, `http://127.0.0.1:9200${EVENTS}`);
  const es = opened[0];
  es.open();
  es.status(view("queued"), 1);
  es.status(view("running", 40), 2);
  es.status({ ...view("running", 50), jobId: "someone-else" }, 3); // ignored
  es.status(view("running", 80), 4);
  const last = view("completed", 100);
  es.status(last, 5);
  const final = await done;
  assert.deepEqual(final, last);
  assert.deepEqual(seen, ["queued:0", "running:40", "running:80", "completed:100"]);
  assert.equal(es.closed, true, "es.close() on the terminal event");
  assert.equal(live().length, 0);
  assert.equal(calls.length, 0, "no status polls while the stream works");
  assert.deepEqual(transports, ["stream"]);
});

test("followJob polls without eventsUrl, without EventSource, and with an Authorization header", { timeout: 5000 }, async (t) => {
  for (const [api, options] of [
    [{ baseUrl: "" }, {}],
    [{ baseUrl: "" }, { eventsUrl: EVENTS, EventSource: null }],
    [{ baseUrl: "", headers: { authorization: "Bearer t" } }, { eventsUrl: EVENTS }],
  ]) {
    const { FakeEventSource, opened } = fakeEventSource();
    const { fetch, calls } = scripted([() => json(view("running", 10)), () => json(view("completed", 100))]);
    const transports = [];
    const final = await followJob({ ...api, fetch }, JOB, {
      EventSource: FakeEventSource,
      signal: t.signal,
      ...options,
      pageHref: "http://127.0.0.1:9200/",
      visibility: null,
      sleep: instantSleep,
      onTransport: (t) => transports.push(t),
    });
    assert.equal(final.status, "completed");
    assert.equal(calls.length, 2);
    assert.equal(opened.length, 0, "no EventSource opened");
    assert.deepEqual(transports, ["poll"]);
  }
});

test("followJob falls back to polling at once when the stream is refused (readyState CLOSED)", { timeout: 5000 }, async (t) => {
  const { FakeEventSource, opened, live } = fakeEventSource();
  const { fetch, calls } = scripted([() => json(view("running", 60)), () => json(view("completed", 100))]);
  const transports = [];
  const seen = [];
  const done = followJob({ baseUrl: "", fetch }, JOB, {
    signal: t.signal,
    eventsUrl: EVENTS,
    EventSource: FakeEventSource,
    pageHref: "http://127.0.0.1:9200/",
    visibility: null,
    sleep: instantSleep,
    onProgress: (v) => seen.push(`${v.status}:${v.progress.percent}`),
    onTransport: (t, why) => transports.push([t, why]),
  });
  await tick();
  assert.equal(calls.length, 0, "no poll while the stream is tried");
  opened[0].fail(CLOSED); // e.g. a 502 or a 404 answer
  const final = await done;
  assert.equal(final.status, "completed");
  assert.equal(live().length, 0);
  assert.equal(opened.length, 1, "not reopened after falling back, even though views name a stream");
  assert.deepEqual(seen, ["running:60", "completed:100"]);
  assert.deepEqual(transports.map(([t]) => t), ["stream", "poll"]);
  assert.match(transports[1][1], /refused/);
});

test("followJob lets EventSource reconnect by itself, and falls back when it cannot within the bound", { timeout: 5000 }, async (t) => {
  // Reconnects in time: no polling.
  {
    const { FakeEventSource, opened } = fakeEventSource();
    const { fetch, calls } = scripted([]);
    const notes = [];
    const done = followJob({ baseUrl: "", fetch }, JOB, {
      signal: t.signal,
      eventsUrl: EVENTS,
      EventSource: FakeEventSource,
      pageHref: "http://127.0.0.1:9200/",
      visibility: null,
      reconnectTimeoutMs: 80,
      onNote: (n) => notes.push(n),
    });
    await tick();
    const es = opened[0];
    es.open();
    es.status(view("running", 20), 3);
    es.fail(CONNECTING);
    await tick(40);
    es.open(); // reconnected (the browser sent Last-Event-ID: 3)
    await tick(80); // past the bound: the timer was disarmed
    es.status(view("running", 70), 5);
    es.status(view("completed", 100), 6);
    assert.equal((await done).status, "completed");
    assert.equal(calls.length, 0);
    assert.equal(opened.length, 1, "the same EventSource reconnected");
    assert.deepEqual(notes, [null, "Live updates interrupted; reconnecting.", null]);
  }
  // Cannot reconnect: after the bound the stream is closed, then polling takes over.
  {
    const { FakeEventSource, opened, live } = fakeEventSource();
    let streamsWhenPolled = null;
    const answers = [
      () => {
        streamsWhenPolled = live().length;
        return json(view("running", 50));
      },
      () => json(view("completed", 100)),
    ];
    const { fetch, calls } = scripted(answers);
    const started = Date.now();
    const done = followJob({ baseUrl: "", fetch }, JOB, {
      signal: t.signal,
      eventsUrl: EVENTS,
      EventSource: FakeEventSource,
      pageHref: "http://127.0.0.1:9200/",
      visibility: null,
      reconnectTimeoutMs: 60,
      sleep: instantSleep,
    });
    await tick();
    opened[0].open();
    opened[0].status(view("running", 30), 2);
    opened[0].fail(CONNECTING);
    await tick(20);
    opened[0].fail(CONNECTING); // a second failed attempt does not restart the bound
    assert.equal(calls.length, 0, "no poll while EventSource may still reconnect");
    const final = await done;
    assert.ok(Date.now() - started >= 60);
    assert.equal(final.status, "completed");
    assert.equal(streamsWhenPolled, 0, "the stream was closed before the first poll");
    assert.equal(calls.length, 2);
  }
  // A first connection that never opens is bounded too.
  {
    const { FakeEventSource, live } = fakeEventSource();
    const { fetch, calls } = scripted([() => json(view("completed", 100))]);
    const final = await followJob({ baseUrl: "", fetch }, JOB, {
      signal: t.signal,
      eventsUrl: EVENTS,
      EventSource: FakeEventSource,
      pageHref: "http://127.0.0.1:9200/",
      visibility: null,
      reconnectTimeoutMs: 30,
      sleep: instantSleep,
    });
    assert.equal(final.status, "completed");
    assert.equal(calls.length, 1);
    assert.equal(live().length, 0);
  }
});

test("followJob hands a polled job over to the stream when a view names one, and never runs both", { timeout: 5000 }, async (t) => {
  const { FakeEventSource, opened, live } = fakeEventSource();
  const { fetch, calls } = scripted([() => json(view("queued")), () => json(view("running", 10, { eventsUrl: EVENTS }))]);
  const seen = [];
  const transports = [];
  const done = followJob({ baseUrl: "http://api.test", fetch }, JOB, {
    signal: t.signal,
    EventSource: FakeEventSource,
    visibility: null,
    sleep: instantSleep,
    onProgress: (v) => seen.push(`${v.status}:${v.progress.percent}`),
    onTransport: (t) => transports.push(t),
  });
  await tick(20);
  assert.equal(calls.length, 2, "polling stopped when the stream was named");
  assert.equal(opened.length, 1);
  assert.equal(opened[0].url, `http://api.test${EVENTS}`);
  opened[0].open();
  opened[0].status(view("running", 10), 4); // the current state, as the new stream starts with it
  opened[0].status(view("completed", 100), 5);
  assert.equal((await done).status, "completed");
  assert.equal(calls.length, 2);
  assert.equal(live().length, 0);
  assert.deepEqual(seen, ["queued:0", "running:10", "running:10", "completed:100"]);
  assert.deepEqual(transports, ["poll", "stream"]);
});

test("followJob never shows an older view, whichever path brings it", { timeout: 5000 }, async (t) => {
  const { FakeEventSource, opened } = fakeEventSource();
  const stale = view("running", 40); // written before the stream's views
  const { fetch } = scripted([() => json(stale), () => json(view("completed", 100))]);
  const percents = [];
  const done = followJob({ baseUrl: "", fetch }, JOB, {
    signal: t.signal,
    eventsUrl: EVENTS,
    EventSource: FakeEventSource,
    pageHref: "http://127.0.0.1:9200/",
    visibility: null,
    sleep: instantSleep,
    onProgress: (v) => percents.push(v.progress.percent),
  });
  await tick();
  opened[0].open();
  opened[0].status(view("running", 60), 7);
  opened[0].fail(CLOSED);
  await done;
  assert.deepEqual(percents, [60, 100], "the poll's older 40% was not shown");
});

test("followJob closes the stream on abort and while the tab is hidden, and opens a new one when it shows", { timeout: 5000 }, async (t) => {
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
  const { FakeEventSource, opened, live } = fakeEventSource();
  const { fetch, calls } = scripted([]);
  const done = followJob({ baseUrl: "", fetch }, JOB, {
    signal: t.signal,
    eventsUrl: EVENTS,
    EventSource: FakeEventSource,
    pageHref: "http://127.0.0.1:9200/",
    visibility,
    reconnectTimeoutMs: 30,
  });
  await tick();
  opened[0].open();
  opened[0].status(view("running", 20));
  setHidden(true);
  assert.equal(live().length, 0, "closed while hidden");
  await tick(60); // longer than the reconnect bound: no fallback while hidden
  assert.equal(opened.length, 1);
  assert.equal(calls.length, 0);
  setHidden(false);
  await tick();
  assert.equal(opened.length, 2, "a new stream when visible");
  opened[1].open();
  opened[1].status(view("completed", 100));
  assert.equal((await done).status, "completed");
  assert.equal(live().length, 0);

  const controller = new AbortController();
  const second = fakeEventSource();
  const aborted = followJob({ baseUrl: "", fetch }, JOB, {
    eventsUrl: EVENTS,
    EventSource: second.FakeEventSource,
    pageHref: "http://127.0.0.1:9200/",
    visibility: null,
    signal: controller.signal,
  });
  await tick();
  assert.equal(second.live().length, 1);
  controller.abort(new Error("removed"));
  await assert.rejects(aborted, /removed/);
  assert.equal(second.live().length, 0);
});
