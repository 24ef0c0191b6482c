#!/usr/bin/python3
"""A client of the fleet, run where the balancer is reachable (stdlib only, Python 3.11).

    fleet_client.py BASE_URL --key KEY --audio SPEECH.wav [--requests N] [--concurrency C]
    fleet_client.py BASE_URL --key KEY --audio SPEECH.wav --until STOP_FILE [--max-seconds S] [--report FILE]
                    [--pause S] [--concurrency C]

Checks through the balancer: /v1/models lists the LLM, a chat completion answers, the speech file is
transcribed; then sends N chat and N transcription requests (C at a time) and reports, as JSON on stdout,
how many failed, which workers (X-Airlock-Backend) and which releases (X-Airlock-Release, sent by the
speech service) answered. Exit 1 when any request failed.

Steady mode (--until): C threads send chat and transcription requests one after another (each thread
waits --pause seconds between two) until STOP_FILE exists, or --max-seconds have passed (the bound: 3600
by default). The report (sent, failed, the first failures, backends and releases per kind, why it stopped)
goes to stdout and, with --report, to FILE, rewritten atomically every few seconds ("finished": false) and
once more at the end ("finished": true). Exit 1 when a request failed or the bound, not STOP_FILE, ended
the run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

Answer = tuple[int, dict[str, Any], str]  # HTTP status (0: no answer), JSON body, X-Airlock-Backend
RELEASES: dict[str, Counter[str]] = {}  # kind -> X-Airlock-Release -> answers (filled by call)
RELEASES_LOCK = threading.Lock()


def call(url: str, key: str, body: bytes | None = None, ctype: str | None = None, kind: str = "") -> Answer:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")  # noqa: S310
    req.add_header("Authorization", f"Bearer {key}")
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:  # noqa: S310 (the balancer's http URL)
            release = r.headers.get("X-Airlock-Release")
            if kind and release:
                with RELEASES_LOCK:
                    RELEASES.setdefault(kind, Counter())[release] += 1
            return r.status, json.loads(r.read() or b"{}"), r.headers.get("X-Airlock-Backend", "")
    except urllib.error.HTTPError as e:
        return e.code, {"error": e.read()[:300].decode(errors="replace")}, e.headers.get("X-Airlock-Backend", "")
    except OSError as e:
        return 0, {"error": str(e)}, ""


def chat(base: str, key: str, model: str) -> Answer:
    body = {"model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8,
            "temperature": 0}
    return call(base + "/v1/chat/completions", key, json.dumps(body).encode(), "application/json", "chat")


def transcribe(base: str, key: str, audio: bytes) -> Answer:
    b = uuid.uuid4().hex
    body = (f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="speech.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n").encode() + audio + f"\r\n--{b}--\r\n".encode()
    return call(base + "/v1/audio/transcriptions", key, body, f"multipart/form-data; boundary={b}", "asr")


def releases() -> dict[str, dict[str, int]]:
    with RELEASES_LOCK:
        return {k: dict(v) for k, v in RELEASES.items()}


def write_report(path: str | None, report: dict[str, Any]) -> None:
    """Replace FILE with the report in one rename, so a reader never sees half of it."""
    if not path:
        return
    tmp = Path(f"{path}.tmp.{os.getpid()}")
    tmp.write_text(json.dumps(report))
    tmp.replace(path)


class Steady:
    """Requests in a loop from C threads until a stop file appears or the time bound passes."""

    MAX_FAILURES_KEPT = 20

    def __init__(self, kinds: dict[str, Any], until: str, max_seconds: float, report_path: str | None,
                 pause: float = 0.0) -> None:
        self.kinds, self.until, self.max_seconds, self.report_path = kinds, until, max_seconds, report_path
        self.pause = pause
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.sent: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.failures: list[str] = []
        self.backends: dict[str, Counter[str]] = {k: Counter() for k in kinds}
        self.started = time.monotonic()
        self.stopped_by = ""

    def worker(self, offset: int) -> None:
        names = list(self.kinds)
        i = offset
        while not self.stop.is_set():
            kind = names[i % len(names)]
            i += 1
            status, body, backend = self.kinds[kind]()
            with self.lock:
                self.sent[kind] += 1
                self.backends[kind][backend or "?"] += 1
                if status != 200:
                    self.failed[kind] += 1
                    if len(self.failures) < self.MAX_FAILURES_KEPT:
                        at = round(time.monotonic() - self.started, 1)
                        self.failures.append(f"{kind} at {at} s: HTTP {status} from {backend or '?'}: {body}")
            if self.pause:
                self.stop.wait(self.pause)

    def report(self, finished: bool) -> dict[str, Any]:
        with self.lock:
            return {"mode": "steady", "finished": finished, "stopped_by": self.stopped_by or None,
                    "seconds": round(time.monotonic() - self.started, 1),
                    "sent": sum(self.sent.values()), "failed": sum(self.failed.values()),
                    "by_kind": {k: {"sent": self.sent[k], "failed": self.failed[k]} for k in self.kinds},
                    "failures": list(self.failures),
                    "backends": {k: dict(v) for k, v in self.backends.items()}, "releases": releases()}

    def run(self, concurrency: int) -> dict[str, Any]:
        threads = [threading.Thread(target=self.worker, args=(n,), daemon=True) for n in range(concurrency)]
        for t in threads:
            t.start()
        last_write = 0.0
        while True:
            now = time.monotonic()
            if Path(self.until).exists():
                self.stopped_by = "until"
            elif now - self.started >= self.max_seconds:
                self.stopped_by = "max-seconds"
            if self.stopped_by:
                break
            if now - last_write >= 5:
                write_report(self.report_path, self.report(finished=False))
                last_write = now
            time.sleep(0.2)
        self.stop.set()
        for t in threads:
            t.join()  # each ends after its request in flight (at most the 120 s timeout)
        return self.report(finished=True)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("--key", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--only", choices=["chat", "asr"], help="the load holds only this kind of request")
    ap.add_argument("--until", metavar="STOP_FILE", help="steady mode: send requests until this file exists")
    ap.add_argument("--max-seconds", type=float, default=3600, help="steady mode: stop after this long at most")
    ap.add_argument("--report", metavar="FILE", help="steady mode: also write the report to FILE")
    ap.add_argument("--pause", type=float, default=0.0, help="steady mode: seconds each thread waits between requests")
    return ap.parse_args()


def main() -> int:
    a = parse_args()
    base = a.base.rstrip("/")
    with open(a.audio, "rb") as f:  # noqa: PTH123 (stdlib script for a bare host)
        audio = f.read()
    report: dict[str, Any] = {"failures": []}
    status, models, _ = call(base + "/v1/models", a.key)
    ids = [m.get("id") for m in models.get("data", [])] if status == 200 else []
    report["models"] = ids
    if not ids:
        report["failures"].append(f"/v1/models: HTTP {status} {models}")
        print(json.dumps(report))
        if a.until:
            write_report(a.report, {"mode": "steady", "finished": True, "stopped_by": "no-models", "sent": 1,
                                    "failed": 1, "failures": report["failures"]})
        return 1
    model = ids[0]
    kinds = {"chat": lambda: chat(base, a.key, model), "asr": lambda: transcribe(base, a.key, audio)}
    if a.until:
        steady = Steady({k: fn for k, fn in kinds.items() if a.only in (None, k)}, a.until, a.max_seconds, a.report,
                        a.pause)
        result = steady.run(max(1, a.concurrency))
        write_report(a.report, result)
        print(json.dumps(result))
        return 1 if result["failed"] or result["stopped_by"] != "until" else 0
    status, answer, backend = chat(base, a.key, model)
    report["chat"] = {"status": status, "backend": backend,
                      "text": (answer.get("choices") or [{}])[0].get("message", {}).get("content")}
    status, text, backend = transcribe(base, a.key, audio)
    # the first answer of the speech service: the release it names is the transcription's
    report["transcription"] = {"status": status, "backend": backend, "text": text.get("text"),
                               "release": next(iter(releases().get("asr", {})), None)}
    with RELEASES_LOCK:
        RELEASES.clear()  # the load's own count follows
    started = time.monotonic()
    jobs = [(k, fn) for k, fn in kinds.items() if a.only in (None, k)] * a.requests
    backends: dict[str, Counter[str]] = {k: Counter() for k in kinds if a.only in (None, k)}
    with concurrent.futures.ThreadPoolExecutor(a.concurrency) as pool:
        futures = {pool.submit(fn): kind for kind, fn in jobs}
        for fut in concurrent.futures.as_completed(futures):
            kind = futures[fut]
            status, body, backend = fut.result()
            backends[kind][backend or "?"] += 1
            if status != 200:
                report["failures"].append(f"{kind}: HTTP {status} from {backend or '?'}: {body}")
    elapsed = time.monotonic() - started
    report["load"] = {"requests": len(jobs), "seconds": round(elapsed, 2), "per_second": round(len(jobs) / elapsed, 2),
                      "backends": {k: dict(v) for k, v in backends.items()}, "releases": releases()}
    for step in ("chat", "transcription"):
        if report[step]["status"] != 200:
            report["failures"].append(f"{step}: HTTP {report[step]['status']}")
    print(json.dumps(report))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
