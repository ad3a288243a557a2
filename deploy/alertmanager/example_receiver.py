#!/usr/bin/env python3
"""A tiny Alertmanager webhook receiver: prints each alert it is sent on one line.

    python deploy/alertmanager/example_receiver.py --port 5001

deploy/alertmanager/alertmanager.yml posts to http://127.0.0.1:5001/alerts. A line:

    2026-11-30T23:59:01Z FIRING   OpspulseInvalidRatioHigh severity=warning
    receiver=opspulse-warning job=opspulse topic=clicks | 4.8% of clicks messages are invalid

(on one line). Standard library only; for trying the alerts out, not for production.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SHOWN_FIRST = ("alertname", "severity")


def format_alert(alert: dict[str, Any], receiver: str = "") -> str:
    """One line: time, status, alert name, severity, receiver, other labels, summary."""
    labels = alert.get("labels", {})
    rest = " ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in SHOWN_FIRST)
    summary = alert.get("annotations", {}).get("summary", "")
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    line = (
        f"{when} {alert.get('status', '?').upper():8} {labels.get('alertname', '?')}"
        f" severity={labels.get('severity', '-')} receiver={receiver or '-'} {rest}"
    )
    return f"{line} | {summary}" if summary else line


def make_server(
    host: str, port: int, on_payload: Callable[[dict[str, Any]], None]
) -> ThreadingHTTPServer:
    """An HTTP server calling `on_payload` with each posted Alertmanager payload (the
    JSON object with `receiver`, `status` and `alerts`); port 0 picks a free one."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                payload = json.loads(body)
            except ValueError:
                self.send_error(400, "expected a JSON body")
                return
            on_payload(payload)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # one line per alert is printed instead

    return ThreadingHTTPServer((host, port), Handler)


def print_payload(payload: dict[str, Any]) -> None:
    for alert in payload.get("alerts", []):
        print(format_alert(alert, payload.get("receiver", "")), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, print_payload)
    print(f"listening on http://{args.host}:{server.server_address[1]}/alerts", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
