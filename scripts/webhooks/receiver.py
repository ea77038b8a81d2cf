"""A webhook receiver for the tests and for trying webhooks out by hand.

Verifies every delivery with the Standard Webhooks reference library (an implementation of
the signature check independent of haul's), once per secret given, answers each path with the
statuses scripted for it, and appends one JSON line per request to the log.

  python receiver.py --log deliveries.jsonl --secret whsec_... [--secret whsec_old...] \
      [--script /flaky=500,500,200] [--script /gone=410] [--port 0]

Prints `listening <port>` once it accepts requests. Paths without a script answer 200.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", required=True)
    parser.add_argument("--secret", action="append", default=[])
    parser.add_argument("--script", action="append", default=[])
    args = parser.parse_args()

    hooks = [Webhook(secret) for secret in args.secret]
    scripts = {}
    for entry in args.script:
        path, _, codes = entry.partition("=")
        scripts[path] = [int(c) for c in codes.split(",") if c]
    served: dict[str, int] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the http.server API)
            received = time.time()
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            verified = []
            for hook in hooks:
                try:
                    hook.verify(body, headers)
                    verified.append(True)
                except WebhookVerificationError:
                    verified.append(False)
            with lock:
                n = served.get(self.path, 0)
                served[self.path] = n + 1
                codes = scripts.get(self.path, [])
                status = codes[n] if n < len(codes) else (codes[-1] if codes else 200)
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                line = {
                    "path": self.path,
                    "receivedAt": received,
                    "id": headers.get("webhook-id"),
                    "timestamp": headers.get("webhook-timestamp"),
                    "signature": headers.get("webhook-signature"),
                    "traceparent": headers.get("traceparent"),
                    "tracestate": headers.get("tracestate"),
                    "verified": verified,
                    "answered": status,
                    "body": parsed,
                    "raw": body.decode("utf-8", "replace"),
                }
                with open(args.log, "a", encoding="utf-8") as log:
                    log.write(json.dumps(line) + "\n")
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
