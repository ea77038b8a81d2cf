"""The live stream over real HTTP: through make dev directly, and through a real nginx whose
proxy_read_timeout is 10 s (scripts/stream-e2e.sh starts both). Standard library only.

Checks, each able to fail:
  - a job's events arrive in order, each id once, states never going back, the stream ending
    after the terminal event, and the completed event's presigned URL giving the origin's bytes;
  - a reconnect with Last-Event-ID gets only newer states; with the last one, 204;
  - a quiet job gets `: keepalive` comments, never more than ~5 s of silence;
  - unknown and malformed job ids and a bad Last-Event-ID get the documented problems;
  - through nginx (10 s read timeout, default buffering) a 60 s job with 15 s silences streams
    to completion with events arriving as they happen, while the same nginx cuts the origin's
    own 15 s silences (the control: the timeout is real).
"""

import argparse
import hashlib
import http.client
import json
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid

failures = []


def check(ok, message):
    if not ok:
        failures.append(message)
        print(f"stream-e2e: FAIL: {message}", file=sys.stderr)
    return ok


def post_job(api, file_id):
    request = urllib.request.Request(
        f"{api}/v1/download/initiate",
        data=json.dumps({"file_id": file_id}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def open_stream(base, path, last_event_id=None, timeout=30):
    url = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    headers = {"accept": "text/event-stream"}
    if last_event_id is not None:
        headers["last-event-id"] = str(last_event_id)
    connection.request("GET", path, headers=headers)
    return connection, connection.getresponse()


def read_messages(response):
    """Yields (seconds since the call, kind, fields) per message until the stream ends."""
    start = time.monotonic()
    block = []
    while True:
        line = response.readline()
        if not line:
            return
        line = line.decode().rstrip("\r\n")
        if line:
            block.append(line)
            continue
        if not block:
            continue
        fields = {}
        for entry in block:
            name, _, value = entry.partition(":")
            fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)
        block = []
        kind = "comment" if "" in fields else "event" if "data" in fields else "retry"
        yield time.monotonic() - start, kind, fields


def follow(base, events_path, last_event_id=None, timeout=30):
    connection, response = open_stream(base, events_path, last_event_id, timeout)
    try:
        if response.status != 200:
            return response.status, response.getheader("content-type"), response.read(), []
        messages = list(read_messages(response))
        return response.status, response.getheader("content-type"), None, messages
    finally:
        connection.close()


def views(messages):
    out = []
    for at, kind, fields in messages:
        if kind == "event":
            out.append((at, int(fields["id"][0]), fields["event"][0], json.loads("\n".join(fields["data"]))))
    return out


def longest_silence(messages):
    times = [0.0] + [at for at, _, _ in messages]
    return max(b - a for a, b in zip(times, times[1:])) if len(times) > 1 else 0.0


def events_in_order(api, origin):
    job = post_job(api, 1)
    path = job.get("eventsUrl")
    if not check(path == f"/v1/download/{job['jobId']}/events", f"202 eventsUrl: {path!r}"):
        return
    status, ctype, _, messages = follow(api, path)
    check(status == 200 and ctype == "text/event-stream", f"stream answer {status} {ctype}")
    check(messages and messages[0][1] == "retry", "the stream starts with retry:")
    seen = views(messages)
    ids = [i for _, i, _, _ in seen]
    check(ids == sorted(set(ids)), f"ids increase, each once: {ids}")
    phases = []
    for _, _, name, view in seen:
        check(name == "status", f"event name {name}")
        if not phases or phases[-1] != view["status"]:
            phases.append(view["status"])
    order = ["queued", "running", "completed"]
    check(phases == [p for p in order if p in phases] and phases[-1] == "completed",
          f"states in order, none twice, ending completed: {phases}")
    check(seen and messages[-1][1] == "event", "the stream ends right after the terminal event")
    if seen and seen[-1][3]["status"] == "completed":
        url = seen[-1][3]["result"]["url"]
        got = hashlib.sha256(urllib.request.urlopen(url, timeout=30).read()).hexdigest()
        want = hashlib.sha256(urllib.request.urlopen(f"{origin}/files/1", timeout=30).read()).hexdigest()
        check(got == want, "the completed event's presigned URL gives the origin's bytes")
    print(f"stream-e2e: job {job['jobId']}: {len(seen)} events, states {phases}, ids {ids}")

    # Reconnects: from the first id on, only newer states; from the last, 204.
    if len(ids) >= 2:
        _, _, _, again = follow(api, path, last_event_id=ids[0])
        later = [i for _, i, _, _ in views(again)]
        check(later and min(later) > ids[0], f"after Last-Event-ID {ids[0]}: {later}")
        status, _, _, _ = follow(api, path, last_event_id=ids[-1])
        check(status == 204, f"Last-Event-ID of the terminal state: {status}, want 204")
        print(f"stream-e2e: reconnects resume after the last id ({later}) and end with 204")


def problems(api):
    cases = [
        ("/v1/download/not-a-job/events", None, 400, "invalid_job_id"),
        (f"/v1/download/{uuid.uuid4()}/events", None, 404, "job_not_found"),
    ]
    job = post_job(api, 1)
    cases.append((job["eventsUrl"], "abc", 400, "invalid_field"))
    for path, last, want_status, want_code in cases:
        status, ctype, body, _ = follow(api, path, last_event_id=last)
        code = json.loads(body or b"{}").get("code") if body else None
        check((status, ctype, code) == (want_status, "application/problem+json", want_code),
              f"{path} (Last-Event-ID {last!r}): {status} {ctype} {code}, want {want_status} {want_code}")
    print("stream-e2e: unknown, malformed and bad Last-Event-ID get their problems")


def quiet_job(api, base, file_id, label, results):
    """A job with long silences, followed through `base` (make dev itself, or nginx)."""
    job = post_job(api, file_id)
    started = time.monotonic()
    try:
        status, _, body, messages = follow(base, job["eventsUrl"], timeout=120)
    except Exception as err:  # a proxy cutting the stream shows here
        check(False, f"{label}: the stream broke: {err!r}")
        return
    seen = views(messages)
    keepalives = sum(1 for _, kind, _ in messages if kind == "comment")
    silence = longest_silence(messages)
    results[label] = {
        "status": status, "events": len(seen), "keepalives": keepalives,
        "longest_silence_s": round(silence, 1), "seconds": round(time.monotonic() - started, 1),
        "first_event_s": round(seen[0][0], 1) if seen else None,
        "last": seen[-1][3]["status"] if seen else None,
    }
    check(status == 200, f"{label}: {status} {body!r}")
    check(seen and seen[-1][3]["status"] == "completed", f"{label}: ends completed: {results[label]}")
    check(keepalives >= 1, f"{label}: keepalives on a quiet job: {results[label]}")
    check(silence <= 6.5, f"{label}: silent for {silence:.1f} s (heartbeat 5 s)")
    check(seen and seen[0][0] <= 3.0, f"{label}: the first event came at once, not buffered: {results[label]}")


def control(nginx, results):
    """The same nginx in front of the origin's 15 s silences: it must cut them."""
    started = time.monotonic()
    try:
        url = urllib.parse.urlsplit(nginx)
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        connection.request("GET", "/origin/files/800060")
        response = connection.getresponse()
        body = response.read()
        outcome = f"{response.status}, {len(body)} bytes"
        cut = response.status == 504 or len(body) < 1024 * 1024
    except Exception as err:
        outcome, cut = repr(err), True
    results["control"] = {"outcome": outcome, "seconds": round(time.monotonic() - started, 1)}
    check(cut, f"control: nginx did not cut 15 s silences ({outcome}): its timeout is not in force")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--api", required=True)
    parser.add_argument("--origin", required=True)
    parser.add_argument("--nginx", required=True)
    parser.add_argument("--report", required=True)
    args = parser.parse_args()

    events_in_order(args.api, args.origin)
    problems(args.api)
    results = {}
    threads = [
        # 1 MiB in four pieces over 24 s: 6 s silences, over make dev itself.
        threading.Thread(target=quiet_job, args=(args.api, args.api, 800024, "direct", results)),
        # 60 s, 15 s silences, through nginx with proxy_read_timeout 10s.
        threading.Thread(target=quiet_job, args=(args.api, args.nginx, 800060, "nginx", results)),
        threading.Thread(target=control, args=(args.nginx, results)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    nginx = results.get("nginx", {})
    check(nginx.get("seconds", 0) >= 55, f"nginx: the job took 60 s: {nginx}")
    print(f"stream-e2e: {json.dumps(results)}")
    with open(args.report, "w") as report:
        json.dump({"results": results, "failures": failures}, report, indent=2)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
