// The page: a list of files with Download buttons, one card per job with its progress, and the
// jobs' ids kept in localStorage so that a reload or a reopened tab picks them up again. All the
// talking to the API goes through ./poll.js, and ./events.js follows a job over the live stream
// when the API offers one (polling otherwise, and as the fallback).

import {
  ApiError,
  TERMINAL,
  TransientError,
  cancelDownload,
  downloadRoute,
  startDownload,
  type Api,
  type StatusView,
} from "./poll.js";
import { followJob, supersedes, type Transport } from "./events.js";

const STORE_KEY = "haul.jobs.v1";
const API_KEY = "haul.apiBaseUrl";

interface Stored {
  jobId: string;
  fileId: number;
}

interface Entry extends Stored {
  view: StatusView | null;
  /** Why the job can no longer be polled (e.g. it is gone), or a retry note. */
  problem: string | null;
  note: string | null;
  /** How the job is (or was last) followed: its live stream or polling. */
  transport: Transport | null;
  controller: AbortController | null;
  card: HTMLElement;
}

// ---------- configuration ----------

function apiBaseUrl(): string {
  const params = new URLSearchParams(location.search);
  const fromQuery = params.get("api");
  try {
    if (fromQuery !== null) {
      if (fromQuery === "") localStorage.removeItem(API_KEY);
      else localStorage.setItem(API_KEY, fromQuery);
    }
    const saved = localStorage.getItem(API_KEY);
    if (saved) return saved.replace(/\/+$/, "");
  } catch {
    // storage unavailable: use the default
  }
  const meta = document.querySelector<HTMLMetaElement>('meta[name="haul-api-base"]')?.content ?? "";
  return meta.trim().replace(/\/+$/, "");
}

function fileIds(): number[] {
  const params = new URLSearchParams(location.search);
  const text = params.get("files") ?? document.querySelector<HTMLMetaElement>('meta[name="haul-files"]')?.content ?? "";
  return text
    .split(",")
    .map((s) => Number(s.trim()))
    .filter((n) => Number.isSafeInteger(n) && n > 0);
}

// ---------- storage ----------

function loadStored(): Stored[] {
  try {
    const parsed: unknown = JSON.parse(localStorage.getItem(STORE_KEY) ?? "[]");
    if (!Array.isArray(parsed)) return [];
    return parsed.filter(
      (x): x is Stored => !!x && typeof x === "object" && typeof (x as Stored).jobId === "string" && Number.isSafeInteger((x as Stored).fileId),
    );
  } catch {
    return [];
  }
}

function saveStored(): void {
  const list: Stored[] = [...entries.values()].map(({ jobId, fileId }) => ({ jobId, fileId }));
  try {
    localStorage.setItem(STORE_KEY, JSON.stringify(list));
  } catch {
    // private mode or quota: the page still works, it just will not resume
  }
}

// ---------- formatting ----------

function bytes(n: number | null | undefined): string {
  if (n == null) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---------- state and rendering ----------

const api: Api = { baseUrl: apiBaseUrl() };
const entries = new Map<string, Entry>();
const jobsList = document.getElementById("jobs") as HTMLOListElement;
const emptyNote = document.getElementById("no-jobs") as HTMLElement;
const banner = document.getElementById("banner") as HTMLElement;

function showBanner(text: string | null): void {
  banner.hidden = text === null;
  banner.textContent = text ?? "";
}

function describeFailure(view: StatusView): string {
  switch (view.status) {
    case "failed":
      return view.error ? `Failed: ${view.error.message} (${view.error.code})` : "Failed.";
    case "expired":
      return "Expired: the file was kept for its retention period and has been deleted. Retry starts a new download.";
    case "cancelled":
      return "Cancelled.";
    default:
      return "";
  }
}

function render(entry: Entry): void {
  const { card, view } = entry;
  const status = view?.status ?? (entry.problem ? "unknown" : "starting");
  card.dataset.status = status;
  if (entry.transport) card.dataset.transport = entry.transport;
  else delete card.dataset.transport;
  card.replaceChildren();

  const head = el("div", { class: "job-head" });
  head.append(el("span", { class: "job-file" }, `File ${entry.fileId}`), el("span", { class: `badge badge-${status}`, "data-role": "status" }, status));
  head.append(el("code", { class: "job-id", title: "job id" }, entry.jobId));
  card.append(head);

  const percent = view ? (view.status === "completed" ? 100 : view.progress.percent) : 0;
  const bar = el("progress", { max: "100", "aria-label": `File ${entry.fileId} progress` });
  bar.value = percent;
  card.append(bar);

  const parts: string[] = [];
  if (view) {
    parts.push(`${percent}%`);
    const p = view.progress;
    if (view.status === "completed" && view.result) parts.push(bytes(view.result.size));
    else if (p.bytesDone > 0 || p.bytesTotal) parts.push(`${bytes(p.bytesDone)} of ${bytes(p.bytesTotal)}`);
    if (!TERMINAL.has(view.status)) {
      if (p.bytesPerSecond) parts.push(`${bytes(p.bytesPerSecond)}/s`);
      if (view.etaSeconds != null) parts.push(`ETA ${duration(view.etaSeconds)}`);
      if (view.attempts > 1) parts.push(`attempt ${view.attempts}`);
    }
  }
  card.append(el("div", { class: "job-details", "data-role": "details" }, parts.join(" · ")));

  const failure = entry.problem ?? (view ? describeFailure(view) : "");
  if (failure) card.append(el("div", { class: "job-error", role: "alert", "data-role": "error" }, failure));
  if (entry.note) card.append(el("div", { class: "job-note", "data-role": "note" }, entry.note));

  const actions = el("div", { class: "job-actions" });
  const finished = entry.problem !== null || (view !== null && TERMINAL.has(view.status));
  if (!finished) {
    const cancel = el("button", { type: "button", "data-action": "cancel" }, "Cancel");
    cancel.addEventListener("click", () => void onCancel(entry, cancel));
    actions.append(cancel);
  }
  if (view?.status === "completed" && view.result) {
    const result = view.result;
    const link = el("a", { class: "button primary", "data-action": "save", href: result.url, download: result.fileName }, `Save ${result.fileName}`);
    link.addEventListener("click", () => {
      // Presigned URLs expire; the API's download route redirects to a fresh one.
      if (Date.parse(result.expiresAt) - Date.now() < 30_000) link.href = downloadRoute(api, entry.jobId);
    });
    actions.append(link);
  }
  if (finished && view?.status !== "completed") {
    const retry = el("button", { type: "button", "data-action": "retry" }, "Retry");
    retry.addEventListener("click", () => void onRetry(entry, retry));
    actions.append(retry);
  }
  if (finished) {
    const remove = el("button", { type: "button", class: "quiet", "data-action": "remove" }, "Remove");
    remove.addEventListener("click", () => removeEntry(entry));
    actions.append(remove);
  }
  card.append(actions);
  emptyNote.hidden = entries.size > 0;
}

function addEntry(stored: Stored, before: Element | null = jobsList.firstElementChild): Entry {
  const card = el("li", { class: "job", "data-job-id": stored.jobId, "data-file-id": String(stored.fileId) });
  jobsList.insertBefore(card, before);
  const entry: Entry = { ...stored, view: null, problem: null, note: null, transport: null, controller: null, card };
  entries.set(entry.jobId, entry);
  render(entry);
  return entry;
}

function removeEntry(entry: Entry): void {
  entry.controller?.abort();
  entries.delete(entry.jobId);
  entry.card.remove();
  saveStored();
  emptyNote.hidden = entries.size > 0;
}

/**
 * Follows a job until it ends: over its live stream when there is one (`eventsUrl` from the 202,
 * or from a status view for a job resumed after a reload), else by polling. Note that a page
 * whose API needs an Authorization header (api.headers) always polls: EventSource cannot send
 * request headers.
 */
async function follow(entry: Entry, eventsUrl?: string): Promise<void> {
  entry.controller?.abort();
  const controller = new AbortController();
  entry.controller = controller;
  try {
    const final = await followJob(api, entry.jobId, {
      eventsUrl: eventsUrl ?? null,
      signal: controller.signal,
      onProgress: (view) => {
        entry.view = view;
        entry.note = null;
        render(entry);
      },
      onRetry: (error, delayMs) => {
        entry.note = `Connection problem (${error.message}); trying again in ${duration(delayMs / 1000)}.`;
        render(entry);
      },
      onTransport: (transport, reason) => {
        entry.transport = transport;
        entry.card.dataset.transportReason = reason;
        render(entry);
      },
      onNote: (note) => {
        entry.note = note;
        render(entry);
      },
    });
    if (supersedes(entry.view, final)) entry.view = final;
  } catch (error) {
    if (controller.signal.aborted) return;
    if (error instanceof ApiError && error.code === "job_not_found") {
      entry.problem = "This job no longer exists on the server (job_not_found). Retry starts a new download.";
    } else {
      entry.problem = `Cannot follow this job: ${error instanceof Error ? error.message : String(error)}`;
    }
  } finally {
    if (entry.controller === controller) entry.controller = null;
  }
  render(entry);
}

async function start(fileId: number, before?: Element | null): Promise<Entry | null> {
  try {
    const accepted = await startDownload(api, fileId);
    showBanner(null);
    const entry = addEntry({ jobId: accepted.jobId, fileId }, before);
    saveStored();
    void follow(entry, accepted.eventsUrl);
    return entry;
  } catch (error) {
    const why = error instanceof ApiError || error instanceof TransientError ? error.message : String(error);
    showBanner(`Could not start the download of file ${fileId}: ${why}`);
    return null;
  }
}

async function onCancel(entry: Entry, button: HTMLButtonElement): Promise<void> {
  button.disabled = true;
  try {
    const view = await cancelDownload(api, entry.jobId);
    entry.controller?.abort();
    if (supersedes(entry.view, view)) entry.view = view;
    render(entry);
  } catch (error) {
    if (error instanceof ApiError && error.code === "job_already_finished") {
      // It finished first: the poll loop will show how.
      entry.note = "The job had already finished.";
    } else {
      entry.note = `Cancel failed: ${error instanceof Error ? error.message : String(error)}`;
    }
    button.disabled = false;
    render(entry);
  }
}

async function onRetry(entry: Entry, button: HTMLButtonElement): Promise<void> {
  button.disabled = true;
  const next = await start(entry.fileId, entry.card);
  if (next) removeEntry(entry);
  else button.disabled = false;
}

// ---------- boot ----------

function boot(): void {
  const files = document.getElementById("files") as HTMLUListElement;
  for (const fileId of fileIds()) {
    const row = el("li", { class: "file", "data-file-id": String(fileId) });
    const button = el("button", { type: "button", class: "primary", "data-action": "download" }, "Download");
    button.addEventListener("click", async () => {
      button.disabled = true;
      await start(fileId);
      button.disabled = false;
    });
    row.append(el("span", { class: "file-name" }, `File ${fileId}`), button);
    files.append(row);
  }
  const where = document.getElementById("api-base");
  if (where) where.textContent = api.baseUrl || location.origin;

  // Resume every stored job (stored oldest first; each card goes on top).
  for (const stored of loadStored()) {
    if (entries.has(stored.jobId)) continue;
    void follow(addEntry(stored));
  }
  emptyNote.hidden = entries.size > 0;
}

boot();
