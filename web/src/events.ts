// Following a job over the live stream (`GET /v1/download/{jobId}/events`, Server-Sent Events),
// with polling (./poll.js) as the fallback. Like poll.ts: no dependencies, no DOM beyond
// `EventSource` and (by default) `document.visibilityState`.
//
//   const accepted = await startDownload(api, 70000);
//   const final = await followJob(api, accepted.jobId, { eventsUrl: accepted.eventsUrl, onProgress: render, signal });
//
// The stream is used when the 202 or a status view names one (`eventsUrl`) and the browser can
// open it; else the job is polled. A job is followed by one of the two at a time, never both:
//   - each `status` event's data is the same status view polling gets; on a terminal status the
//     stream is closed (`es.close()`), or EventSource would reconnect to a stream that is over;
//   - a stream EventSource gives up on (readyState CLOSED: a non-200 answer such as 404 or 502,
//     or a 204) falls back to polling at once; a transient break (readyState CONNECTING) is left
//     to EventSource, which reconnects by itself with `Last-Event-ID`, unless it cannot do so
//     within `reconnectTimeoutMs` (15 s): then polling takes over;
//   - once a job fell back to polling it stays there (no flapping between the two);
//   - a job that is polled (resumed after a reload: no `eventsUrl` known yet) switches to the
//     stream as soon as a status view names one;
//   - a view never replaces a newer one (`supersedes`), so a late answer cannot move the bar back;
//   - while the tab is hidden the stream is closed, and opened again when it shows (the first
//     event of a new stream is the job's current state), as polling pauses while hidden.

import { TERMINAL, documentVisibility, pollJob, type Api, type JobStatus, type PollOptions, type StatusView, type Visibility } from "./poll.js";

/** How a job is followed. */
export type Transport = "stream" | "poll";

/** The part of `EventSource` used here (tests pass a fake). */
export interface EventSourceLike {
  readonly readyState: number;
  close(): void;
  addEventListener(type: string, listener: (event: MessageEvent<string>) => void): void;
  removeEventListener(type: string, listener: (event: MessageEvent<string>) => void): void;
}

export type EventSourceConstructor = new (url: string) => EventSourceLike;

/** EventSource.CONNECTING and EventSource.CLOSED (OPEN is 1). */
export const CONNECTING = 0;
export const CLOSED = 2;

export const DEFAULT_RECONNECT_TIMEOUT_MS = 15_000;

export interface TransportChoice {
  transport: Transport;
  reason: string;
}

/**
 * Stream or poll, and why. `headers` are the API's extra request headers: EventSource cannot
 * send request headers (no `Authorization: Bearer …`; only cookies, with `withCredentials`), so
 * a page that needs one polls.
 */
export function chooseTransport(input: {
  eventsUrl: string | null | undefined;
  hasEventSource: boolean;
  headers?: Record<string, string> | undefined;
  streamFailed?: boolean;
}): TransportChoice {
  if (!input.eventsUrl) return { transport: "poll", reason: "the API offers no stream (no eventsUrl)" };
  if (!input.hasEventSource) return { transport: "poll", reason: "this browser has no EventSource" };
  const names = Object.keys(input.headers ?? {});
  if (names.length > 0) {
    const which = names.some((n) => n.toLowerCase() === "authorization") ? "an Authorization header" : `headers (${names.join(", ")})`;
    return { transport: "poll", reason: `requests need ${which}, which EventSource cannot send` };
  }
  if (input.streamFailed) return { transport: "poll", reason: "the stream failed for this job" };
  return { transport: "stream", reason: "the API offers a stream" };
}

/**
 * `eventsUrl` resolved against the API's base URL (absolute on AWS, a path in make dev);
 * an empty base means the page's own origin.
 */
export function resolveEventsUrl(eventsUrl: string, baseUrl: string, pageHref?: string): string {
  const page = pageHref ?? (typeof location !== "undefined" ? location.href : undefined);
  const base = baseUrl === "" ? page : page === undefined ? baseUrl : new URL(baseUrl, page).href;
  if (base === undefined) return new URL(eventsUrl).href; // absolute, or this throws
  return new URL(eventsUrl, base).href;
}

const STATUSES: ReadonlySet<string> = new Set<JobStatus>(["queued", "running", "completed", "failed", "cancelled", "expired"]);

/** A `status` event's data as a status view of `jobId`, or null when it is not one. */
export function parseStatusEvent(data: string, jobId: string): StatusView | null {
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return null;
  }
  if (!value || typeof value !== "object") return null;
  const view = value as Partial<StatusView>;
  if (view.jobId !== jobId || typeof view.status !== "string" || !STATUSES.has(view.status)) return null;
  if (!view.progress || typeof view.progress !== "object" || typeof view.progress.percent !== "number") return null;
  return view as StatusView;
}

function rank(status: JobStatus): number {
  if (TERMINAL.has(status)) return 2;
  return status === "running" ? 1 : 0;
}

/**
 * Does `next` carry news over `current`? Never after a terminal state (except the same one
 * again, e.g. with a fresh presigned URL), never an older write (`updatedAt`), and at the same
 * write never a lower status or percent.
 */
export function supersedes(current: StatusView | null, next: StatusView): boolean {
  if (current === null) return true;
  const then = Date.parse(current.updatedAt);
  const now = Date.parse(next.updatedAt);
  const older = !Number.isNaN(then) && !Number.isNaN(now) && now < then;
  if (TERMINAL.has(current.status)) return next.status === current.status && !older;
  if (older) return false;
  if (now === then || Number.isNaN(now) || Number.isNaN(then)) {
    if (rank(next.status) < rank(current.status)) return false;
    if (next.status === current.status && next.progress.percent < current.progress.percent) return false;
  }
  return true;
}

export interface FollowOptions extends PollOptions {
  /** From the 202 or a status view; absent: poll (and switch when a view names a stream). */
  eventsUrl?: string | null | undefined;
  /** Default `globalThis.EventSource`; null forces polling. */
  EventSource?: EventSourceConstructor | null;
  /** How long EventSource may try to reconnect (or first connect) before polling takes over. */
  reconnectTimeoutMs?: number;
  /** For resolving a relative `eventsUrl` when `api.baseUrl` is "" (default `location.href`). */
  pageHref?: string;
  /** Called when the job is followed by the stream or by polling from now on, with why. */
  onTransport?: (transport: Transport, reason: string) => void;
  /** A note about the stream's connection (e.g. reconnecting), null when it is fine again. */
  onNote?: (note: string | null) => void;
}

type StreamOutcome = { kind: "terminal" } | { kind: "fallback"; reason: string } | { kind: "hidden" };

function abortReason(signal: AbortSignal | undefined): unknown {
  if (signal?.reason !== undefined) return signal.reason;
  return new DOMException("The operation was aborted.", "AbortError");
}

/** Resolves at once when visible, else when the page shows again; rejects on abort. */
function visible(visibility: Visibility | null, signal: AbortSignal | undefined): Promise<void> {
  if (!visibility || !visibility.hidden()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      unsubscribe();
      reject(abortReason(signal));
    };
    const unsubscribe = visibility.subscribe(() => {
      if (!visibility.hidden()) {
        unsubscribe();
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }
    });
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Follows a job to its end over the stream or by polling (see the top of this file) and
 * resolves with its final view. `onProgress` gets every view that is news (see `supersedes`).
 * Rejects like `pollJob`: ApiError when the API refuses, the signal's reason on abort.
 */
export async function followJob(api: Api, jobId: string, options: FollowOptions = {}): Promise<StatusView> {
  const signal = options.signal;
  const visibility = options.visibility === undefined ? documentVisibility() : options.visibility;
  const Source = options.EventSource === undefined ? ((globalThis as { EventSource?: EventSourceConstructor }).EventSource ?? null) : options.EventSource;
  const reconnectTimeoutMs = options.reconnectTimeoutMs ?? DEFAULT_RECONNECT_TIMEOUT_MS;
  let latest: StatusView | null = null;
  let eventsUrl = options.eventsUrl ?? null;
  let streamFailed = false;
  let announced: Transport | null = null;

  const deliver = (view: StatusView) => {
    if (!supersedes(latest, view)) return;
    latest = view;
    options.onProgress?.(view);
  };
  const announce = (transport: Transport, reason: string) => {
    if (announced === transport) return;
    announced = transport;
    options.onTransport?.(transport, reason);
  };
  const choose = (url: string | null) =>
    chooseTransport({ eventsUrl: url, hasEventSource: Source !== null, headers: api.headers, streamFailed });

  /** One EventSource, until the job ends, the stream is given up, the tab hides or abort. */
  const stream = (url: string, Opened: EventSourceConstructor): Promise<StreamOutcome> =>
    new Promise((resolve, reject) => {
      const es = new Opened(url);
      let timer: ReturnType<typeof setTimeout> | null = null;
      let settled = false;
      const disarm = () => {
        if (timer !== null) clearTimeout(timer);
        timer = null;
      };
      const arm = () => {
        if (timer === null) {
          timer = setTimeout(() => settle({ kind: "fallback", reason: `the stream did not connect within ${Math.round(reconnectTimeoutMs / 1000)} s` }), reconnectTimeoutMs);
        }
      };
      const onOpen = () => {
        disarm();
        options.onNote?.(null);
      };
      const onStatus = (event: MessageEvent<string>) => {
        if (settled) return;
        disarm();
        const view = parseStatusEvent(event.data, jobId);
        if (!view) return;
        deliver(view);
        if (TERMINAL.has(view.status)) settle({ kind: "terminal" });
      };
      const onError = () => {
        if (settled) return;
        if (es.readyState === CLOSED) {
          settle({ kind: "fallback", reason: "the stream was refused or ended for good" });
        } else {
          // CONNECTING: EventSource reconnects by itself after `retry:`, sending Last-Event-ID.
          options.onNote?.("Live updates interrupted; reconnecting.");
          arm();
        }
      };
      const onAbort = () => {
        settle(null);
        reject(abortReason(signal));
      };
      const unsubscribe = visibility?.subscribe(() => {
        if (visibility.hidden()) settle({ kind: "hidden" });
      });
      function settle(outcome: StreamOutcome | null) {
        if (settled) return;
        settled = true;
        disarm();
        es.close();
        es.removeEventListener("open", onOpen);
        es.removeEventListener("status", onStatus);
        es.removeEventListener("error", onError);
        signal?.removeEventListener("abort", onAbort);
        unsubscribe?.();
        if (outcome) resolve(outcome);
      }
      es.addEventListener("open", onOpen);
      es.addEventListener("status", onStatus);
      es.addEventListener("error", onError);
      signal?.addEventListener("abort", onAbort, { once: true });
      arm(); // the first connection is bounded too
    });

  for (;;) {
    if (signal?.aborted) throw abortReason(signal);
    const choice = choose(eventsUrl);
    if (choice.transport === "stream" && eventsUrl !== null && Source !== null) {
      await visible(visibility, signal);
      let url: string;
      try {
        url = resolveEventsUrl(eventsUrl, api.baseUrl, options.pageHref);
      } catch {
        streamFailed = true;
        continue;
      }
      announce("stream", choice.reason);
      const outcome = await stream(url, Source);
      const last = latest as StatusView | null;
      if (outcome.kind === "terminal" && last !== null) return last;
      if (outcome.kind === "fallback") {
        streamFailed = true;
        options.onNote?.(null);
        announce("poll", outcome.reason);
      }
      continue;
    }

    announce("poll", choice.reason);
    // Poll; a view that names a stream (a job resumed after a reload) hands over to it.
    const inner = new AbortController();
    const relay = () => inner.abort(abortReason(signal));
    signal?.addEventListener("abort", relay, { once: true });
    let switchTo: string | null = null;
    try {
      const final = await pollJob(api, jobId, {
        ...options,
        visibility,
        signal: inner.signal,
        onProgress: (view) => {
          if (inner.signal.aborted) return;
          deliver(view);
          if (!TERMINAL.has(view.status) && view.eventsUrl && choose(view.eventsUrl).transport === "stream") {
            switchTo = view.eventsUrl;
            inner.abort(new DOMException("switching to the stream", "AbortError"));
          }
        },
      });
      const last = latest as StatusView | null; // set by `deliver`, which TS cannot see
      return last !== null && TERMINAL.has(last.status) ? last : final;
    } catch (error) {
      if (signal?.aborted) throw abortReason(signal);
      if (switchTo === null) throw error;
      eventsUrl = switchTo;
    } finally {
      signal?.removeEventListener("abort", relay);
    }
  }
}
