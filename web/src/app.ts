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
  retryDownload,
  startBatch,
  startDownload,
  type Api,
  type Priority,
  type StatusView,
} from "./poll.js";
import { followJob, supersedes, type Transport } from "./events.js";
import { batchModel, batchSummary, selectedFileIds, type SaveLink } from "./batch.js";

const STORE_KEY = "haul.jobs.v1";
const API_KEY = "haul.apiBaseUrl";

interface Stored {
  jobId: string;
  /** The file of a single download; null for a batch. */
  fileId: number | null;
  /** A batch's files (`file_ids`), in the order given. */
  fileIds?: number[];
  /** A batch's bundle ("zip": one archive of its files). */
  bundle?: "zip" | null;
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

function isStored(x: unknown): x is Stored {
  if (!x || typeof x !== "object") return false;
  const s = x as Stored;
  if (typeof s.jobId !== "string") return false;
  if (Array.isArray(s.fileIds)) return s.fileIds.length > 0 && s.fileIds.every((id) => Number.isSafeInteger(id));
  return Number.isSafeInteger(s.fileId);
}

function loadStored(): Stored[] {
  try {
    const parsed: unknown = JSON.parse(localStorage.getItem(STORE_KEY) ?? "[]");
    if (!Array.isArray(parsed)) return [];
    return parsed.filter(isStored).map((s) => (Array.isArray(s.fileIds) ? { ...s, fileId: null } : s));
  } catch {
    return [];
  }
}

function saveStored(): void {
  const list: Stored[] = [...entries.values()].map(({ jobId, fileId, fileIds, bundle }) =>
    fileIds ? { jobId, fileId: null, fileIds, bundle: bundle ?? null } : { jobId, fileId },
  );
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
  if (entry.fileIds) {
    renderBatch(entry, entry.fileIds);
    return;
  }
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

  const finished = entry.problem !== null || (view !== null && TERMINAL.has(view.status));
  const actions = el("div", { class: "job-actions" });
  if (!finished) actions.append(cancelButton(entry));
  if (view?.status === "completed" && view.result) {
    const result = view.result;
    const link = el("a", { class: "button primary", "data-action": "save", href: result.url, download: result.fileName }, `Save ${result.fileName}`);
    link.addEventListener("click", () => {
      // Presigned URLs expire; the API's download route redirects to a fresh one.
      if (Date.parse(result.expiresAt) - Date.now() < 30_000) link.href = downloadRoute(api, entry.jobId);
    });
    actions.append(link);
  }
  if (finished) appendEndActions(entry, actions);
  card.append(actions);
  emptyNote.hidden = entries.size > 0;
}

function cancelButton(entry: Entry): HTMLButtonElement {
  const cancel = el("button", { type: "button", "data-action": "cancel" }, "Cancel");
  cancel.addEventListener("click", () => void onCancel(entry, cancel));
  return cancel;
}

/** Retry (unless it completed) and Remove, for a job that ended. */
function appendEndActions(entry: Entry, actions: HTMLElement): void {
  if (entry.view?.status !== "completed") {
    const retry = el("button", { type: "button", "data-action": "retry" }, "Retry");
    retry.addEventListener("click", () => void onRetry(entry, retry));
    actions.append(retry);
  }
  const remove = el("button", { type: "button", class: "quiet", "data-action": "remove" }, "Remove");
  remove.addEventListener("click", () => removeEntry(entry));
  actions.append(remove);
}

/** A link that saves a result; `refresh` gives a fresh link at click time (presigned URLs expire). */
function saveAnchor(link: SaveLink, action: string, label: string, refresh: () => SaveLink | null): HTMLAnchorElement {
  const a = el("a", { class: "button primary", "data-action": action, href: link.href, download: link.fileName }, label);
  a.addEventListener("click", () => {
    const fresh = refresh();
    if (fresh) a.href = fresh.href;
  });
  return a;
}

/** A batch's card: a total bar (files and bytes), a bar per file with its status, error and link,
 *  the archive of a zip batch, and Cancel for the whole batch. */
function renderBatch(entry: Entry, fileIds: number[]): void {
  const { card, view } = entry;
  const model = () => batchModel(api, entry.jobId, fileIds, entry.view, { bundle: entry.bundle ?? null });
  const m = model();
  const status = entry.problem && !view ? "unknown" : m.status;
  card.dataset.status = status;
  if (entry.transport) card.dataset.transport = entry.transport;
  else delete card.dataset.transport;
  card.dataset.filesDone = String(m.filesDone);
  card.dataset.filesTotal = String(m.filesTotal);
  card.replaceChildren();

  const head = el("div", { class: "job-head" });
  head.append(el("span", { class: "job-file" }, `Batch of ${fileIds.length} file${fileIds.length === 1 ? "" : "s"}`));
  if (m.bundle === "zip") head.append(el("span", { class: "badge", "data-role": "bundle" }, "zip"));
  head.append(el("span", { class: `badge badge-${status}`, "data-role": "status" }, status));
  head.append(el("code", { class: "job-id", title: "job id" }, entry.jobId));
  card.append(head);

  const total = el("progress", { max: "100", "data-role": "total", "aria-label": "Batch progress" });
  total.value = m.percent;
  card.append(total);
  card.append(el("div", { class: "job-details", "data-role": "details" }, batchSummary(m, bytes)));

  const list = el("ul", { class: "batch-files" });
  for (const f of m.files) {
    const row = el("li", { class: "batch-file", "data-file-id": String(f.fileId), "data-status": f.status });
    const line = el("div", { class: "batch-file-head" });
    line.append(el("span", { class: "batch-file-name" }, `File ${f.fileId}`), el("span", { class: `badge badge-${f.status}`, "data-role": "status" }, f.status));
    const sizes = f.save ? bytes(f.save.size) : f.bytesDone > 0 || f.bytesTotal ? `${bytes(f.bytesDone)} of ${bytes(f.bytesTotal)}` : "";
    line.append(el("span", { class: "batch-file-details", "data-role": "details" }, [`${f.percent}%`, sizes].filter(Boolean).join(" · ")));
    if (f.save) {
      const fileId = f.fileId;
      line.append(
        saveAnchor(f.save, "save", `Save ${f.save.fileName}`, () => model().files.find((x) => x.fileId === fileId)?.save ?? null),
      );
    }
    row.append(line);
    const bar = el("progress", { max: "100", "aria-label": `File ${f.fileId} progress` });
    bar.value = f.percent;
    row.append(bar);
    if (f.errorCode) row.append(el("div", { class: "job-error", "data-role": "error" }, `${f.errorMessage ?? "Failed"} (${f.errorCode})`));
    list.append(row);
  }
  card.append(list);

  const failure = entry.problem ?? (view && view.status !== "completed" ? describeFailure(view) : "");
  if (failure) card.append(el("div", { class: "job-error", role: "alert", "data-role": "error" }, failure));
  if (m.zipping) card.append(el("div", { class: "job-note", "data-role": "zipping" }, "Every file is in; writing the zip…"));
  if (entry.note) card.append(el("div", { class: "job-note", "data-role": "note" }, entry.note));

  const actions = el("div", { class: "job-actions" });
  const finished = entry.problem !== null || !m.cancellable;
  if (!finished) actions.append(cancelButton(entry));
  if (m.archive) actions.append(saveAnchor(m.archive, "save-archive", `Save ${m.archive.fileName}`, () => model().archive));
  if (finished) appendEndActions(entry, actions);
  card.append(actions);
  emptyNote.hidden = entries.size > 0;
}

function addEntry(stored: Stored, before: Element | null = jobsList.firstElementChild): Entry {
  const card = stored.fileIds
    ? el("li", { class: "job batch", "data-job-id": stored.jobId, "data-kind": "batch", "data-file-ids": stored.fileIds.join(",") })
    : el("li", { class: "job", "data-job-id": stored.jobId, "data-file-id": String(stored.fileId) });
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

/** Starts one batch of `fileIds` (optionally zipped, optionally with a priority) and its card. */
async function startBatchCard(fileIds: number[], options: { bundle: "zip" | null; priority: Priority | null }, before?: Element | null): Promise<Entry | null> {
  try {
    const accepted = await startBatch(api, fileIds, options);
    showBanner(null);
    const entry = addEntry({ jobId: accepted.jobId, fileId: null, fileIds, bundle: options.bundle }, before);
    saveStored();
    void follow(entry, accepted.eventsUrl);
    return entry;
  } catch (error) {
    const why = error instanceof ApiError || error instanceof TransientError ? error.message : String(error);
    showBanner(`Could not start the batch of files ${fileIds.join(", ")}: ${why}`);
    return null;
  }
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
  // A failed job is retried as itself: the server resumes what it stored. Anything else
  // (cancelled, expired, gone, a failed batch) is started anew.
  if (entry.view?.status === "failed" && !entry.fileIds && (await retryInPlace(entry))) return;
  const next = entry.fileIds
    ? await startBatchCard(entry.fileIds, { bundle: entry.bundle ?? null, priority: null }, entry.card)
    : entry.fileId !== null
      ? await start(entry.fileId, entry.card)
      : null;
  if (next) removeEntry(entry);
  else button.disabled = false;
}

/** `POST .../retry` for the entry's failed job, then follows it on the same card; false when
 *  the server will not retry it (the caller then starts a new job). */
async function retryInPlace(entry: Entry): Promise<boolean> {
  try {
    const accepted = await retryDownload(api, entry.jobId);
    showBanner(null);
    entry.note = "Retried: the job resumes where it stopped.";
    entry.problem = null;
    // The failed view is terminal and would outrank the queued one the retry starts with.
    entry.view = null;
    render(entry);
    void follow(entry, accepted.eventsUrl);
    return true;
  } catch (error) {
    if (error instanceof ApiError && error.code === "job_not_failed") {
      // Already back at work (another retry got there first): follow it.
      const now = error.problem.jobStatus;
      if (now === "queued" || now === "running") {
        entry.view = null;
        void follow(entry);
        return true;
      }
    }
    if (error instanceof ApiError && (error.code === "job_not_failed" || error.code === "batch_not_retryable" || error.code === "job_not_found")) {
      return false;
    }
    const why = error instanceof ApiError || error instanceof TransientError ? error.message : String(error);
    entry.note = `Retry failed: ${why}`;
    render(entry);
    return true;
  }
}

// ---------- boot ----------

/** Is the priority control offered (`<meta name="haul-priority" content="on">`, the default, or
 *  `?priority=on|off`)? Off for an API older than priorities, which refuses `priority` with a 400. */
function priorityOffered(): boolean {
  const fromQuery = new URLSearchParams(location.search).get("priority");
  const value = fromQuery ?? document.querySelector<HTMLMetaElement>('meta[name="haul-priority"]')?.content ?? "off";
  return value.trim() === "on";
}

/** The batch controls under the file list: a checkbox per file, "as one zip", the priority and
 *  the button that starts one batch of the ticked files. */
function bootBatchControls(offered: number[], boxes: Map<number, HTMLInputElement>): void {
  const button = document.getElementById("batch-start") as HTMLButtonElement | null;
  const zip = document.getElementById("batch-zip") as HTMLInputElement | null;
  const priorityField = document.getElementById("batch-priority-field") as HTMLElement | null;
  const priority = document.getElementById("batch-priority") as HTMLSelectElement | null;
  if (!button || !zip) return;
  const offerPriority = priorityOffered();
  if (priorityField) priorityField.hidden = !offerPriority;
  const selected = (): number[] => {
    const ticked = new Set<number>();
    for (const [id, box] of boxes) if (box.checked) ticked.add(id);
    return selectedFileIds(offered, ticked);
  };
  const update = () => {
    const n = selected().length;
    button.disabled = n === 0;
    button.textContent = n === 0 ? "Select files for a batch" : `Download ${n} file${n === 1 ? "" : "s"} as one batch`;
  };
  for (const box of boxes.values()) box.addEventListener("change", update);
  button.addEventListener("click", async () => {
    const ids = selected();
    if (ids.length === 0) return;
    button.disabled = true;
    const chosen = offerPriority && priority && priority.value !== "normal" ? (priority.value as Priority) : null;
    const entry = await startBatchCard(ids, { bundle: zip.checked ? "zip" : null, priority: chosen });
    if (entry) for (const box of boxes.values()) box.checked = false;
    update();
  });
  update();
}

function boot(): void {
  const files = document.getElementById("files") as HTMLUListElement;
  const offered = fileIds();
  const boxes = new Map<number, HTMLInputElement>();
  for (const fileId of offered) {
    const row = el("li", { class: "file", "data-file-id": String(fileId) });
    const label = el("label", { class: "file-name" });
    const box = el("input", { type: "checkbox", "data-action": "select", "aria-label": `Select file ${fileId} for a batch` });
    boxes.set(fileId, box);
    label.append(box, document.createTextNode(` File ${fileId}`));
    const button = el("button", { type: "button", class: "primary", "data-action": "download" }, "Download");
    button.addEventListener("click", async () => {
      button.disabled = true;
      await start(fileId);
      button.disabled = false;
    });
    row.append(label, button);
    files.append(row);
  }
  bootBatchControls(offered, boxes);
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
