#!/usr/bin/python3
"""A client of the fleet, run where the balancer is reachable (stdlib only, Python 3.11).

    fleet_client.py BASE_URL --key KEY --audio SPEECH.wav [--requests N] [--concurrency C]

Checks through the balancer: /v1/models lists the LLM, a chat completion answers, the speech file is
transcribed; then sends N chat and N transcription requests (C at a time) and reports, as JSON on stdout,
how many failed and which workers (X-Airlock-Backend) answered. Exit 1 when any request failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from typing import Any


def call(url: str, key: str, body: bytes | None = None, ctype: str | None = None) -> tuple[int, dict[str, Any], str]:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")  # noqa: S310
    req.add_header("Authorization", f"Bearer {key}")
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:  # noqa: S310 (the balancer's http URL)
            return r.status, json.loads(r.read() or b"{}"), r.headers.get("X-Airlock-Backend", "")
    except urllib.error.HTTPError as e:
        return e.code, {"error": e.read()[:300].decode(errors="replace")}, e.headers.get("X-Airlock-Backend", "")
    except OSError as e:
        return 0, {"error": str(e)}, ""


def chat(base: str, key: str, model: str) -> tuple[int, dict[str, Any], str]:
    body = {"model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8,
            "temperature": 0}
    return call(base + "/v1/chat/completions", key, json.dumps(body).encode(), "application/json")


def transcribe(base: str, key: str, audio: bytes) -> tuple[int, dict[str, Any], str]:
    b = uuid.uuid4().hex
    body = (f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="speech.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n").encode() + audio + f"\r\n--{b}--\r\n".encode()
    return call(base + "/v1/audio/transcriptions", key, body, f"multipart/form-data; boundary={b}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("--key", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--only", choices=["chat", "asr"], help="the load holds only this kind of request")
    a = ap.parse_args()
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
        return 1
    model = ids[0]
    status, answer, backend = chat(base, a.key, model)
    report["chat"] = {"status": status, "backend": backend,
                      "text": (answer.get("choices") or [{}])[0].get("message", {}).get("content")}
    status, text, backend = transcribe(base, a.key, audio)
    report["transcription"] = {"status": status, "backend": backend, "text": text.get("text")}
    started = time.monotonic()
    kinds = {"chat": lambda: chat(base, a.key, model), "asr": lambda: transcribe(base, a.key, audio)}
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
                      "backends": {k: dict(v) for k, v in backends.items()}}
    for step in ("chat", "transcription"):
        if report[step]["status"] != 200:
            report["failures"].append(f"{step}: HTTP {report[step]['status']}")
    print(json.dumps(report))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
