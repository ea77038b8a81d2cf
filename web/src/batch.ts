// What a batch card shows, decided from the batch's status view alone (no DOM), so the page's
// rendering decisions are unit-tested on their own (web/test/batch.test.mjs).
//
// A batch (`file_ids` at initiate) is one job whose status view lists its files (`files`, in the
// order given) each with its own status, progress, result and error, plus the batch's progress
// summed over them (`progress.filesDone` / `filesTotal` and bytes). With `bundle: "zip"` the
// batch's `result` is one archive of the completed files, written after the last file ended
// (the batch stays `running` meanwhile).

import { TERMINAL, fileRoute, downloadRoute, type Api, type JobResult, type JobStatus, type StatusView } from "./poll.js";

/** A link to save a file: the presigned URL from the view, or the API's redirecting route when
 *  that URL is about to expire (the route presigns a fresh one). */
export interface SaveLink {
  href: string;
  fileName: string;
  size: number;
}

export interface FileRow {
  fileId: number;
  /** The file's status; "starting" before the first view arrived. */
  status: JobStatus | "starting";
  /** 0..100; 100 once completed. */
  percent: number;
  bytesDone: number;
  bytesTotal: number | null;
  /** Why the file failed (`error.code`, e.g. `origin_not_found`), else null. */
  errorCode: string | null;
  errorMessage: string | null;
  /** Set once the file completed. */
  save: SaveLink | null;
}

export interface BatchModel {
  status: JobStatus | "starting";
  /** The total bar: 0..100, 100 once completed. */
  percent: number;
  filesDone: number;
  filesTotal: number;
  completedFiles: number;
  failedFiles: number;
  bytesDone: number;
  bytesTotal: number | null;
  bytesPerSecond: number | null;
  bundle: "zip" | null;
  /** Every file ended, the zip is being written: the batch is still running. */
  zipping: boolean;
  files: FileRow[];
  /** The zip (bundle "zip", completed), else null. */
  archive: SaveLink | null;
  /** The batch's own error (e.g. `batch_files_failed` when every file failed). */
  errorCode: string | null;
  errorMessage: string | null;
  /** Cancel is offered while the batch has not ended. */
  cancellable: boolean;
}

/** Presigned URLs closer than this to their expiry go through the API's route instead. */
export const EXPIRY_MARGIN_MS = 30_000;

/** The link for a result: its presigned URL, or `route` when that expires within the margin. */
export function saveLink(result: JobResult, route: string, now: number = Date.now()): SaveLink {
  const expires = Date.parse(result.expiresAt);
  const fresh = Number.isNaN(expires) || expires - now >= EXPIRY_MARGIN_MS;
  return { href: fresh ? result.url : route, fileName: result.fileName, size: result.size };
}

function clampPercent(n: unknown): number {
  return typeof n === "number" && Number.isFinite(n) ? Math.min(100, Math.max(0, Math.round(n))) : 0;
}

/**
 * The batch card's content. `fileIds` are the files the batch was started with (shown as
 * "starting" until the first view arrives, and the fallback when a view lists none);
 * `bundle` likewise until the view says.
 */
export function batchModel(
  api: Api,
  jobId: string,
  fileIds: readonly number[],
  view: StatusView | null,
  options: { bundle?: "zip" | null; now?: number } = {},
): BatchModel {
  const now = options.now ?? Date.now();
  const status: JobStatus | "starting" = view?.status ?? "starting";
  const listed = view?.files ?? [];
  const files: FileRow[] =
    listed.length > 0
      ? listed.map((f) => {
          const completed = f.status === "completed";
          return {
            fileId: f.fileId,
            status: f.status,
            percent: completed ? 100 : clampPercent(f.progress?.percent),
            bytesDone: f.progress?.bytesDone ?? 0,
            bytesTotal: f.progress?.bytesTotal ?? null,
            errorCode: f.error?.code ?? null,
            errorMessage: f.error?.message ?? null,
            save: completed && f.result ? saveLink(f.result, fileRoute(api, jobId, f.fileId), now) : null,
          };
        })
      : fileIds.map((fileId) => ({
          fileId,
          status: view && TERMINAL.has(view.status) ? view.status : view ? "queued" : "starting",
          percent: 0,
          bytesDone: 0,
          bytesTotal: null,
          errorCode: null,
          errorMessage: null,
          save: null,
        }));
  const filesTotal = view?.progress.filesTotal ?? view?.totalFileIds ?? files.length;
  const filesDone = view?.progress.filesDone ?? files.filter((f) => f.status === "completed" || f.status === "failed").length;
  const bundle = view ? (view.bundle ?? null) : (options.bundle ?? null);
  const completedFiles = view?.completedFiles ?? files.filter((f) => f.status === "completed").length;
  const failedFiles = view?.failedFiles ?? files.filter((f) => f.status === "failed").length;
  const archive =
    bundle === "zip" && view?.status === "completed" && view.result ? saveLink(view.result, downloadRoute(api, jobId), now) : null;
  const ended = view !== null && TERMINAL.has(view.status);
  return {
    status,
    percent: view?.status === "completed" ? 100 : clampPercent(view?.progress.percent),
    filesDone,
    filesTotal,
    completedFiles,
    failedFiles,
    bytesDone: view?.progress.bytesDone ?? 0,
    bytesTotal: view?.progress.bytesTotal ?? null,
    bytesPerSecond: ended ? null : (view?.progress.bytesPerSecond ?? null),
    bundle,
    zipping: bundle === "zip" && view?.status === "running" && files.length > 0 && files.every((f) => TERMINAL.has(f.status as JobStatus)) && completedFiles > 0,
    files,
    archive,
    errorCode: view?.error?.code ?? null,
    errorMessage: view?.error?.message ?? null,
    cancellable: !ended,
  };
}

/** The line under the total bar, e.g. "2 of 3 files · 4.0 MiB of 6.0 MiB · 1 failed". */
export function batchSummary(model: BatchModel, formatBytes: (n: number | null) => string): string {
  const parts = [`${model.percent}%`, `${model.filesDone} of ${model.filesTotal} files`];
  if (model.bytesTotal) parts.push(`${formatBytes(model.bytesDone)} of ${formatBytes(model.bytesTotal)}`);
  else if (model.bytesDone > 0) parts.push(model.cancellable ? `${formatBytes(model.bytesDone)} of ?` : formatBytes(model.bytesDone));
  if (model.bytesPerSecond) parts.push(`${formatBytes(model.bytesPerSecond)}/s`);
  if (model.failedFiles > 0) parts.push(`${model.failedFiles} failed`);
  if (model.zipping) parts.push("writing the zip");
  return parts.join(" · ");
}

/** The files ticked in the file list, in the list's order, without duplicates; at most `max`. */
export function selectedFileIds(offered: readonly number[], ticked: ReadonlySet<number>, max = 100): number[] {
  const out: number[] = [];
  for (const id of offered) {
    if (ticked.has(id) && !out.includes(id)) out.push(id);
  }
  return out.slice(0, max);
}
