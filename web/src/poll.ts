// haul's client side in one small module: start a download job, poll it until it finishes,
// cancel it. No dependencies and no DOM access beyond `fetch`, `AbortSignal` and (by default)
// `document.visibilityState`, so any frontend can use it as it is.
//
//   const api = { baseUrl: "" };                       // same origin, or "https://api.example.com"
//   const accepted = await startDownload(api, 70000);
//   const final = await pollJob(api, accepted.jobId, { onProgress: (v) => render(v), signal });
//   if (final.status === "completed") location.href = final.result!.url;
//
// Polling follows the server's `Retry-After`, backs off exponentially with full jitter on
// network errors, 429 and 5xx, pauses while the tab is hidden and polls again as soon as it is
// visible, and stops (rejecting with the signal's reason) when the signal aborts.

export type JobStatus = "queued" | "running" | "completed" | "failed" | "cancelled" | "expired";

export const TERMINAL: ReadonlySet<JobStatus> = new Set(["completed", "failed", "cancelled", "expired"]);

export interface Progress {
  percent: number;
  bytesDone: number;
  bytesTotal: number | null;
  bytesPerSecond: number | null;
  /** A batch's: files that ended (completed or failed) and files in all. */
  filesDone?: number;
  filesTotal?: number;
}

export interface JobResult {
  /** Presigned GET, minted for the poll that returned it; valid until `expiresAt`. */
  url: string;
  expiresAt: string;
  size: number;
  contentType: string;
  fileName: string;
  checksumCrc32c: string | null;
}

export interface JobError {
  code: string;
  message: string;
}

/** One file of a batch, in the status view's `files`. */
export interface BatchFileView {
  fileId: number;
  status: JobStatus;
  progress: Progress;
  /** Presigned GET of this file once it completed. */
  result: JobResult | null;
  error: JobError | null;
}

/** The body of `GET /v1/download/status/{jobId}`. A batch (`file_ids`) has `fileId: null`
 *  and the batch members; `result` is then the archive of a `bundle: "zip"` batch. */
export interface StatusView {
  jobId: string;
  fileId: number | null;
  status: JobStatus;
  progress: Progress;
  etaSeconds: number | null;
  attempts: number;
  createdAt: string;
  startedAt: string | null;
  updatedAt: string;
  completedAt: string | null;
  result: JobResult | null;
  error: JobError | null;
  /** The job's live stream (a URL reference: resolve it against the API's base URL); absent
   *  when the API offers none. See ./events.js. */
  eventsUrl?: string;
  /** A batch's: its files in the order given at initiate, and how they ended. */
  files?: BatchFileView[];
  totalFileIds?: number;
  completedFiles?: number;
  failedFiles?: number;
  bundle?: "zip" | null;
}

/** The body of the 202 from `POST /v1/download/initiate`. */
export interface Accepted {
  jobId: string;
  status: JobStatus;
  statusUrl: string;
  downloadUrl: string;
  nextPollInMs: number;
  createdAt: string;
  /** As in StatusView. */
  eventsUrl?: string;
  /** A batch's number of files. */
  totalFileIds?: number;
}

export interface Api {
  /** Where the API lives, without a trailing slash; "" means the page's own origin. */
  baseUrl: string;
  /** Sent with every request, e.g. `{ authorization: "Bearer <token>" }` behind the JWT authorizer. */
  headers?: Record<string, string>;
  /** Replaces the global `fetch` (tests, instrumentation). */
  fetch?: typeof fetch;
}

/** An answer the API gave on purpose (an RFC 9457 problem); retrying the same request will not help. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly problem: Record<string, unknown>;
  constructor(status: number, problem: Record<string, unknown>) {
    const code = typeof problem.code === "string" ? problem.code : `http_${status}`;
    const detail = typeof problem.detail === "string" ? problem.detail : typeof problem.title === "string" ? problem.title : `HTTP ${status}`;
    super(`${code}: ${detail}`);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.problem = problem;
  }
}

/** A failure worth retrying: the network, a 429 or a 5xx. `retryAfterMs` when the server said. */
export class TransientError extends Error {
  readonly status: number | null;
  readonly retryAfterMs: number | null;
  constructor(message: string, status: number | null, retryAfterMs: number | null) {
    super(message);
    this.name = "TransientError";
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

/** Is the page hidden, and tell me when it shows again. The default reads `document`. */
export interface Visibility {
  hidden(): boolean;
  /** Calls `listener` on every change; returns the function that unsubscribes. */
  subscribe(listener: () => void): () => void;
}

export interface BackoffOptions {
  /** First backoff step (ms). */
  baseMs?: number;
  /** Longest backoff (ms). */
  capMs?: number;
  /** Source of randomness in [0, 1). */
  random?: () => number;
}

export interface PollOptions extends BackoffOptions {
  /** Called with every status answer, the final one included. */
  onProgress?: (view: StatusView) => void;
  /** Called before each wait after a transient failure, with the error and the delay. */
  onRetry?: (error: TransientError, delayMs: number, failures: number) => void;
  signal?: AbortSignal;
  /** Delay when the answer has no Retry-After (ms). */
  defaultDelayMs?: number;
  /** Bounds for any delay taken from Retry-After (ms). */
  minDelayMs?: number;
  maxDelayMs?: number;
  /** Give up after this many transient failures in a row (default: never). */
  maxFailures?: number;
  visibility?: Visibility | null;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Current time in ms, for HTTP-date Retry-After values. */
  now?: () => number;
}

const DEFAULTS = {
  baseMs: 1000,
  capMs: 30_000,
  defaultDelayMs: 2000,
  minDelayMs: 500,
  maxDelayMs: 60_000,
};

/** `Retry-After` in milliseconds: delta-seconds or an HTTP-date; null when absent or unreadable. */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | null {
  if (value == null) return null;
  const text = value.trim();
  if (text === "") return null;
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return null;
  return Math.max(0, at - now);
}

/**
 * Exponential backoff with full jitter: a uniform delay in [0, min(cap, base * 2^(failures-1))],
 * never below a tenth of the base (so a burst of failures does not hammer the server).
 */
export function backoffDelay(failures: number, options: BackoffOptions = {}): number {
  const base = options.baseMs ?? DEFAULTS.baseMs;
  const cap = options.capMs ?? DEFAULTS.capMs;
  const random = options.random ?? Math.random;
  const exponent = Math.min(Math.max(failures, 1) - 1, 30);
  const ceiling = Math.min(cap, base * 2 ** exponent);
  return Math.max(base / 10, Math.floor(random() * ceiling));
}

function clamp(ms: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, ms));
}

function abortReason(signal: AbortSignal | undefined): unknown {
  if (signal?.reason !== undefined) return signal.reason;
  return new DOMException("The operation was aborted.", "AbortError");
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortReason(signal));
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, Math.max(0, ms));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The page's visibility, or null outside a browser (polling then never pauses). */
export function documentVisibility(): Visibility | null {
  if (typeof document === "undefined") return null;
  return {
    hidden: () => document.visibilityState === "hidden",
    subscribe: (listener) => {
      document.addEventListener("visibilitychange", listener);
      return () => document.removeEventListener("visibilitychange", listener);
    },
  };
}

/** Resolves at once when visible, else when the page becomes visible; rejects on abort. */
export function whenVisible(visibility: Visibility | null, signal?: AbortSignal): Promise<void> {
  if (!visibility || !visibility.hidden()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortReason(signal));
      return;
    }
    const done = () => {
      unsubscribe();
      signal?.removeEventListener("abort", onAbort);
    };
    const unsubscribe = visibility.subscribe(() => {
      if (!visibility.hidden()) {
        done();
        resolve();
      }
    });
    const onAbort = () => {
      done();
      reject(abortReason(signal));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Waits `ms`, but wakes early when the page goes hidden and then waits for it to be visible
 * again: a hidden tab sends no requests, and a tab that comes back polls at once.
 */
async function waitTurn(ms: number, visibility: Visibility | null, signal: AbortSignal | undefined, pause: (ms: number, signal?: AbortSignal) => Promise<void>): Promise<void> {
  if (visibility && !visibility.hidden()) {
    // Race the timer against the tab going hidden.
    const inner = new AbortController();
    const relay = () => inner.abort(abortReason(signal));
    signal?.addEventListener("abort", relay, { once: true });
    let wentHidden = false;
    const unsubscribe = visibility.subscribe(() => {
      if (visibility.hidden()) {
        wentHidden = true;
        inner.abort(new DOMException("hidden", "AbortError"));
      }
    });
    try {
      await pause(ms, inner.signal);
    } catch (error) {
      if (!wentHidden) throw error;
    } finally {
      unsubscribe();
      signal?.removeEventListener("abort", relay);
    }
    if (signal?.aborted) throw abortReason(signal);
  } else if (!visibility) {
    await pause(ms, signal);
  }
  await whenVisible(visibility, signal);
}

function url(api: Api, path: string): string {
  return `${api.baseUrl.replace(/\/+$/, "")}${path}`;
}

async function readProblem(response: Response): Promise<Record<string, unknown>> {
  try {
    const body: unknown = await response.json();
    if (body && typeof body === "object") return body as Record<string, unknown>;
  } catch {
    // not JSON: fall through
  }
  return { title: response.statusText };
}

/**
 * One request: resolves with the response for 2xx/3xx, throws ApiError for a 4xx other than
 * 408/429, TransientError for the network, 408, 429 and 5xx; the signal's reason on abort.
 */
async function request(api: Api, path: string, init: RequestInit, now: () => number): Promise<Response> {
  const doFetch = api.fetch ?? globalThis.fetch.bind(globalThis);
  let response: Response;
  try {
    const headers = { ...api.headers, ...(init.headers as Record<string, string> | undefined) };
    response = await doFetch(url(api, path), { cache: "no-store", ...init, headers });
  } catch (error) {
    if (init.signal?.aborted) throw abortReason(init.signal);
    throw new TransientError(`network error: ${error instanceof Error ? error.message : String(error)}`, null, null);
  }
  if (response.ok) return response;
  const retryAfterMs = parseRetryAfter(response.headers.get("retry-after"), now());
  if (response.status >= 500 || response.status === 429 || response.status === 408) {
    const problem = await readProblem(response);
    const what = typeof problem.code === "string" ? `${problem.code} (HTTP ${response.status})` : `HTTP ${response.status}`;
    throw new TransientError(what, response.status, retryAfterMs);
  }
  throw new ApiError(response.status, await readProblem(response));
}

/** Runs `attempt` until it succeeds, backing off on TransientError; anything else is thrown. */
async function withRetries<T>(attempt: () => Promise<T>, options: PollOptions): Promise<T> {
  const pause = options.sleep ?? sleep;
  let failures = 0;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (!(error instanceof TransientError)) throw error;
      failures += 1;
      if (options.maxFailures !== undefined && failures >= options.maxFailures) throw error;
      const delay = error.retryAfterMs ?? backoffDelay(failures, options);
      options.onRetry?.(error, delay, failures);
      await pause(delay, options.signal);
    }
  }
}

export interface StartOptions {
  /**
   * Sent as `Idempotency-Key`: the same key and file make the API answer with the job it already
   * started instead of a second one, so this call can be retried safely. Default: a new UUID.
   */
  idempotencyKey?: string;
  signal?: AbortSignal;
  /** Transient failures to retry (with the same key) before giving up. Default 4. */
  maxFailures?: number;
  random?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** A fresh idempotency key (a UUID v4, also outside secure contexts). */
export function newIdempotencyKey(): string {
  const c = globalThis.crypto;
  if (typeof c?.randomUUID === "function") return c.randomUUID();
  const bytes = new Uint8Array(16);
  c.getRandomValues(bytes);
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x40;
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** `POST /v1/download/initiate`: starts a job for `fileId` and resolves with the 202's body. */
export async function startDownload(api: Api, fileId: number, options: StartOptions = {}): Promise<Accepted> {
  return initiate(api, { file_id: fileId }, options);
}

export type Priority = "high" | "normal" | "low";

export interface BatchOptions extends StartOptions {
  /** `"zip"`: once the files completed, one archive of them is the batch's `result`. */
  bundle?: "zip" | null;
  /** Sent only when given (an API without priorities refuses the member with a 400). */
  priority?: Priority | null;
}

/** The body `startBatch` sends: `file_ids`, and `bundle` and `priority` only when asked for. */
export function batchBody(fileIds: readonly number[], options: { bundle?: "zip" | null; priority?: Priority | null } = {}): Record<string, unknown> {
  const body: Record<string, unknown> = { file_ids: [...fileIds] };
  if (options.bundle) body.bundle = options.bundle;
  if (options.priority) body.priority = options.priority;
  return body;
}

/**
 * `POST /v1/download/initiate` with `file_ids`: one batch job for several files (1 to 100
 * distinct ids), optionally bundled into one zip. Resolves with the 202's body
 * (`totalFileIds` included); follow it like any job: its status view has `files`.
 */
export async function startBatch(api: Api, fileIds: readonly number[], options: BatchOptions = {}): Promise<Accepted> {
  return initiate(api, batchBody(fileIds, options), options);
}

async function initiate(api: Api, body: Record<string, unknown>, options: StartOptions): Promise<Accepted> {
  const key = options.idempotencyKey ?? newIdempotencyKey();
  const init: RequestInit = {
    method: "POST",
    headers: { "content-type": "application/json", "idempotency-key": key },
    body: JSON.stringify(body),
  };
  if (options.signal) init.signal = options.signal;
  return withRetries(
    async () => (await request(api, "/v1/download/initiate", init, Date.now)).json() as Promise<Accepted>,
    { ...options, maxFailures: options.maxFailures ?? 4 },
  );
}

/** One `GET /v1/download/status/{jobId}`: the view and the delay the server asks for. */
export async function getStatus(api: Api, jobId: string, options: { signal?: AbortSignal; now?: () => number } = {}): Promise<{ view: StatusView; retryAfterMs: number | null }> {
  const now = options.now ?? Date.now;
  const init: RequestInit = { method: "GET", headers: { accept: "application/json" } };
  if (options.signal) init.signal = options.signal;
  const response = await request(api, `/v1/download/status/${encodeURIComponent(jobId)}`, init, now);
  const view = (await response.json()) as StatusView;
  return { view, retryAfterMs: parseRetryAfter(response.headers.get("retry-after"), now()) };
}

/**
 * Polls a job until it is completed, failed, cancelled or expired, and resolves with that last
 * view. Rejects with ApiError when the API refuses (e.g. 404 `job_not_found`), with the last
 * TransientError after `maxFailures` transient failures in a row, and with the signal's reason
 * when it aborts.
 */
export async function pollJob(api: Api, jobId: string, options: PollOptions = {}): Promise<StatusView> {
  const visibility = options.visibility === undefined ? documentVisibility() : options.visibility;
  const pause = options.sleep ?? sleep;
  const now = options.now ?? Date.now;
  const min = options.minDelayMs ?? DEFAULTS.minDelayMs;
  const max = options.maxDelayMs ?? DEFAULTS.maxDelayMs;
  const fallback = options.defaultDelayMs ?? DEFAULTS.defaultDelayMs;
  const signal = options.signal;
  let failures = 0;
  for (;;) {
    if (signal?.aborted) throw abortReason(signal);
    await whenVisible(visibility, signal);
    let delay: number;
    try {
      const statusOptions: { signal?: AbortSignal; now?: () => number } = { now };
      if (signal) statusOptions.signal = signal;
      const { view, retryAfterMs } = await getStatus(api, jobId, statusOptions);
      failures = 0;
      options.onProgress?.(view);
      if (TERMINAL.has(view.status)) return view;
      delay = clamp(retryAfterMs ?? fallback, min, max);
    } catch (error) {
      if (!(error instanceof TransientError)) throw error;
      failures += 1;
      if (options.maxFailures !== undefined && failures >= options.maxFailures) throw error;
      delay = error.retryAfterMs !== null ? clamp(error.retryAfterMs, min, max) : backoffDelay(failures, options);
      options.onRetry?.(error, delay, failures);
    }
    await waitTurn(delay, visibility, signal, pause);
  }
}

/** `DELETE /v1/download/{jobId}`: resolves with the job, now cancelled. */
export async function cancelDownload(api: Api, jobId: string, options: { signal?: AbortSignal } = {}): Promise<StatusView> {
  const init: RequestInit = { method: "DELETE" };
  if (options.signal) init.signal = options.signal;
  const response = await withRetries(() => request(api, `/v1/download/${encodeURIComponent(jobId)}`, init, Date.now), { maxFailures: 3 });
  return (await response.json()) as StatusView;
}

/**
 * `POST /v1/download/{jobId}/retry`: starts a failed job again, as the same job (it resumes
 * what the failed run stored where the origin allows). Resolves with the 202's body, like a
 * start. Rejects with an ApiError `job_not_failed` (and `jobStatus`) for a job in any other
 * state, `batch_not_retryable` for a failed batch.
 */
export async function retryDownload(api: Api, jobId: string, options: { signal?: AbortSignal } = {}): Promise<Accepted> {
  const init: RequestInit = { method: "POST" };
  if (options.signal) init.signal = options.signal;
  const response = await withRetries(() => request(api, `/v1/download/${encodeURIComponent(jobId)}/retry`, init, Date.now), { maxFailures: 3 });
  return (await response.json()) as Accepted;
}

/** `GET /v1/download/{jobId}/files/{fileId}`: redirects to a freshly presigned URL of one file
 *  of a batch once that file completed. */
export function fileRoute(api: Api, jobId: string, fileId: number): string {
  return url(api, `/v1/download/${encodeURIComponent(jobId)}/files/${encodeURIComponent(String(fileId))}`);
}

/** `GET /v1/download/{jobId}`: redirects to a freshly presigned URL once the job completed
 *  (for a batch: its zip archive). */
export function downloadRoute(api: Api, jobId: string): string {
  return url(api, `/v1/download/${encodeURIComponent(jobId)}`);
}
