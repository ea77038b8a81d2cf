"""Webhooks through a running `make dev`: starts N jobs with a callback to a receiver started
here, waits for one verified delivery per job, and reports how long after each job completed
its `job.completed` arrived (p50, p90, max), to stdout and to a JSON file.

  python dev_latency.py --api http://127.0.0.1:9400 --secret "$HAUL_DEV_WEBHOOK_SECRET" \
      [--jobs 20] [--file-id 1] [--report target/e2e/webhook-latency.json]

Exit 1 when a delivery is missing, duplicated, or does not verify with the Standard Webhooks
reference library.
"""
from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import urllib.request
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--file-id", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=240)
    parser.add_argument("--report")
    args = parser.parse_args()

    hook = Webhook(args.secret)
    received: list[dict] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            at = time.time()
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                event = hook.verify(body, headers)
                verified = True
            except WebhookVerificationError:
                event, verified = json.loads(body), False
            with lock:
                received.append({"at": at, "id": headers.get("webhook-id"),
                                 "verified": verified, "event": event})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    callback = f"http://127.0.0.1:{server.server_address[1]}/hook"

    def start() -> str:
        body = json.dumps({"file_id": args.file_id, "callbackUrl": callback}).encode()
        request = urllib.request.Request(f"{args.api}/v1/download/initiate", data=body,
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.load(answer)["jobId"]

    # One job first, not counted: `cargo lambda watch` builds and starts each function on its
    # first invocation, which is make dev's cold start, not the delivery's delay.
    warmup = start()
    deadline = time.time() + args.timeout
    while time.time() < deadline:
        with lock:
            if any(r["event"]["data"]["jobId"] == warmup for r in received):
                break
        time.sleep(0.2)
    with lock:
        received.clear()
    jobs = [start() for _ in range(args.jobs)]

    deadline = time.time() + args.timeout
    while time.time() < deadline:
        with lock:
            if set(jobs) <= {r["event"]["data"]["jobId"] for r in received}:
                break
        time.sleep(0.2)
    time.sleep(2)  # anything more would be a duplicate
    server.shutdown()

    problems = []
    by_job: dict[str, list[dict]] = {}
    for r in received:
        by_job.setdefault(r["event"]["data"]["jobId"], []).append(r)
    latencies = []
    for job in jobs:
        got = by_job.get(job, [])
        if len(got) != 1:
            problems.append(f"{job}: {len(got)} deliveries")
            continue
        r = got[0]
        if not r["verified"] or r["event"]["type"] != "job.completed":
            problems.append(f"{job}: verified={r['verified']} type={r['event']['type']}")
            continue
        completed = datetime.fromisoformat(r["event"]["data"]["completedAt"].replace("Z", "+00:00"))
        latencies.append(r["at"] - completed.timestamp())
    report = {"jobs": len(jobs), "delivered": len(latencies), "problems": problems}
    if latencies:
        latencies.sort()
        report.update({
            "p50_ms": round(statistics.median(latencies) * 1000),
            "p90_ms": round(latencies[int(0.9 * (len(latencies) - 1))] * 1000),
            "max_ms": round(latencies[-1] * 1000),
        })
    print(json.dumps(report))
    if args.report:
        with open(args.report, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=2)
    return 1 if problems or len(latencies) != len(jobs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
