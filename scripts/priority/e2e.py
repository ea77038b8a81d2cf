"""Priorities over make dev's real HTTP (scripts/priority-e2e.sh starts it). Standard library only.

make dev polls each priority's queue with its own pollers (xtask/src/dev/mod.rs: high 1,
normal 4, low 1), as the template gives each queue its own event source mapping and share.

Checks, each able to fail:
  - with the normal queue backlogged past its pollers (slow normal jobs: catalog ids with
    id % 4 == 3 take 120 s, more of them than there are normal pollers, and some of them seen
    still queued), a high job starts running within START_WITHIN seconds and completes;
  - a low job started at the same time also starts within START_WITHIN seconds and completes:
    low work does not starve behind normal work;
  - the control: a normal job started at the same moment is still queued when both have
    completed (the backlog was real, and only the other queues got past it);
  - each job's view shows its priority.
Every job it started is cancelled at the end, so later stages on a shared make dev get the
workers back at once.
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request

START_WITHIN = 8.0
failures = []


def check(ok, message):
    if not ok:
        failures.append(message)
        print(f"priority-e2e: FAIL: {message}", file=sys.stderr)
    return ok


def call(api, method, path, body=None):
    request = urllib.request.Request(
        f"{api}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def start(api, file_id, priority=None):
    body = {"file_id": file_id}
    if priority is not None:
        body["priority"] = priority
    code, answer = call(api, "POST", "/v1/download/initiate", body)
    if code != 202:
        raise SystemExit(f"priority-e2e: initiate {body} answered {code}: {answer}")
    return answer["jobId"]


def view(api, job):
    code, answer = call(api, "GET", f"/v1/download/status/{job}")
    if code != 200:
        raise SystemExit(f"priority-e2e: status of {job} answered {code}: {answer}")
    return answer


def statuses(api, jobs):
    return {job: view(api, job)["status"] for job in jobs}


def watch_start(api, job, since, timeout):
    """Seconds from `since` until the job left `queued` (None if it did not within timeout)."""
    while time.monotonic() - since < timeout:
        if view(api, job)["status"] != "queued":
            return time.monotonic() - since
        time.sleep(0.2)
    return None


def wait_terminal(api, job, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = view(api, job)
        if current["status"] not in ("queued", "running"):
            return current
        time.sleep(0.3)
    return view(api, job)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--api", required=True)
    parser.add_argument("--normal-pollers", type=int, default=4)
    parser.add_argument("--report", default="target/e2e/priority.json")
    args = parser.parse_args()
    api = args.api
    started = []
    report = {}
    try:
        # The backlog: more 120 s normal jobs than there are normal pollers.
        slow_ids = [4 * n + 3 for n in range(args.normal_pollers + 3)]
        slow = [start(api, file_id) for file_id in slow_ids]
        started += slow
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            now = statuses(api, slow)
            if any(s == "running" for s in now.values()):
                break
            time.sleep(0.5)
        # Give every normal poller time to take a job; what is still queued is the backlog.
        time.sleep(4)
        now = statuses(api, slow)
        running = sum(s == "running" for s in now.values())
        queued = sum(s == "queued" for s in now.values())
        report["backlog"] = {"running": running, "queued": queued}
        print(f"priority-e2e: normal backlog: {running} running, {queued} queued")
        if not check(queued >= 2 and running >= 1,
                     f"the normal queue is not backlogged past its pollers: {now}"):
            return

        t0 = time.monotonic()
        high = start(api, 1, "high")  # 2 MiB over about 3 s
        low = start(api, 5, "low")  # likewise
        control = start(api, 9)  # normal, behind the backlog
        started += [high, low, control]
        high_start = watch_start(api, high, t0, 30)
        low_start = watch_start(api, low, t0, 30)
        report["highStartedAfterSeconds"] = high_start
        report["lowStartedAfterSeconds"] = low_start
        print(f"priority-e2e: high started after {high_start} s, low after {low_start} s")
        check(high_start is not None and high_start <= START_WITHIN,
              f"the high job did not start within {START_WITHIN} s ({high_start})")
        check(low_start is not None and low_start <= START_WITHIN,
              f"the low job did not start within {START_WITHIN} s ({low_start})")
        for job, priority, began in [(high, "high", high_start), (low, "low", low_start)]:
            if began is None:
                continue
            done = wait_terminal(api, job, 60)
            check(done["status"] == "completed", f"the {priority} job ended {done['status']}")
            check(done["priority"] == priority, f"the {priority} job shows {done['priority']}")
        report["completedAfterSeconds"] = time.monotonic() - t0
        behind = view(api, control)
        report["controlStatus"] = behind["status"]
        check(behind["status"] == "queued",
              f"the normal control job is {behind['status']}, not queued behind the backlog")
        check(behind["priority"] == "normal", f"the control shows {behind['priority']}")
    finally:
        # Hand the workers back: cancel what is still unfinished (a running job stops at its
        # next progress write).
        for job in started:
            call(api, "DELETE", f"/v1/download/{job}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(s not in ("queued", "running") for s in statuses(api, started).values()):
                break
            time.sleep(0.5)
        else:
            check(False, f"jobs still unfinished after their cancel: {statuses(api, started)}")
        report["failures"] = failures
        with open(args.report, "w") as out:
            json.dump(report, out, indent=2)
    if failures:
        sys.exit(1)
    print("priority-e2e: checks passed")


if __name__ == "__main__":
    main()
