"""Our ASR server vs the common hand-written one, side by side: requests/s, p50/p99 latency, wrong transcripts.

Both run at the same time on 127.0.0.1 with the same tiny models (scripts/tinyasr.py) and the same audio set
(ten espeak-ng sentences of different lengths, WAV at espeak's 22050 Hz, so both servers resample). Each
server's solo transcript of each clip (one request at a time) is its reference; under load a response is
*wrong* when it differs from its own clip's reference and *mixed up* when it equals another clip's.
Rounds alternate which server goes first; figures pool all rounds.

    .venv/bin/python bench/bench_asr.py [--requests 80] [--rounds 3]

Writes bench/results/asr.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import tinyasr  # noqa: E402


@dataclass
class Server:
    name: str
    description: str
    cmd: list[str]
    ready_path: str
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    solo: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(server: Server, workdir: Path) -> None:
    server.port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = (workdir / f"{server.name}.log").open("wb")
    server.proc = subprocess.Popen([*server.cmd, "--port", str(server.port)], cwd=workdir, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)


def wait_ready(server: Server, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.proc is not None
        if server.proc.poll() is not None:
            raise SystemExit(f"{server.name} exited with {server.proc.returncode}")
        try:
            if httpx.get(server.base + server.ready_path, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{server.name} not ready after {timeout} s")


def recognize(server: Server, clip: str, data: bytes) -> str:
    r = httpx.post(server.base + "/recognize/", files={"file": (f"{clip}.wav", data, "audio/wav")}, timeout=120)
    r.raise_for_status()
    return str(r.json()["result"])


async def one(client: httpx.AsyncClient, server: Server, clip: str, data: bytes) -> tuple[float, int, str]:
    t = time.perf_counter()
    try:
        r = await client.post(server.base + "/recognize/", files={"file": (f"{clip}.wav", data, "audio/wav")})
    except httpx.TransportError:  # the baseline sometimes drops the connection
        return time.perf_counter() - t, 0, ""
    dt = time.perf_counter() - t
    text = r.json().get("result", "") if r.status_code == 200 else ""
    return dt, r.status_code, text


async def load(server: Server, clips: dict[str, bytes], concurrency: int, n: int) -> dict[str, object]:
    names = list(clips)
    order = [names[i % len(names)] for i in range(n)]
    results: list[tuple[str, float, int, str]] = []
    nxt = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal nxt
        while nxt < len(order):
            clip = order[nxt]
            nxt += 1
            dt, status, text = await one(client, server, clip, clips[clip])
            results.append((clip, dt, status, text))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        t = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t
    return {"wall": wall, "results": results}


def score(server: Server, results: list[tuple[str, float, int, str]]) -> dict[str, int]:
    wrong = mixed = errors = 0
    for clip, _, status, text in results:
        if status != 200:
            errors += 1
        if text != server.solo[clip]:
            wrong += 1
            if any(text == t for c, t in server.solo.items() if c != clip):
                mixed += 1
    return {"wrong": wrong, "mixed_up": mixed, "errors": errors}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def measure(servers: list[Server], clips: dict[str, bytes], n: int, rounds: int) -> dict[str, object]:
    report: dict[str, object] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_at_start": os.getloadavg()},
        "audio": {"clips": len(clips), "seconds": [round(len(d) / 2 / 22050, 2) for d in clips.values()],
                  "format": "WAV PCM_16 mono 22050 Hz (espeak-ng)"},
        "requests_per_round": n, "rounds": rounds, "servers": {},
    }
    for conc in (1, 8):
        pooled: dict[str, dict[str, list]] = {s.name: {"lat": [], "res": [], "walls": []} for s in servers}
        for rnd in range(rounds):
            order = servers if rnd % 2 == 0 else servers[::-1]
            for s in order:
                out = asyncio.run(load(s, clips, conc, n))
                pooled[s.name]["walls"].append(out["wall"])
                pooled[s.name]["res"].extend(out["results"])  # type: ignore[arg-type]
        for s in servers:
            p = pooled[s.name]
            lat = [r[1] for r in p["res"]]
            entry = {
                "requests": len(lat),
                "rps": round(len(lat) / sum(p["walls"]), 2),
                "rps_per_round": [round(n / w, 2) for w in p["walls"]],
                "p50_ms": round(statistics.median(lat) * 1000, 1),
                "p99_ms": round(pct(lat, 0.99) * 1000, 1),
                **score(s, p["res"]),
            }
            entry["correct_per_s"] = round((len(lat) - entry["wrong"]) / sum(p["walls"]), 2)
            entry["wrong_fraction"] = round(entry["wrong"] / len(lat), 4)
            entry["mixed_up_fraction"] = round(entry["mixed_up"] / len(lat), 4)
            srv = report["servers"]
            assert isinstance(srv, dict)
            srv.setdefault(s.name, {"description": s.description})[f"c{conc}"] = entry
            print(f"c={conc} {s.name:18s} {entry['rps']:7.2f} req/s  p50 {entry['p50_ms']:7.1f} ms  "
                  f"p99 {entry['p99_ms']:7.1f} ms  wrong {entry['wrong']:3d}  mixed {entry['mixed_up']:3d}  "
                  f"errors {entry['errors']:3d}", flush=True)
    return report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=80, help="requests per server, concurrency level and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "asr.json"))
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-asr-"))
    sv, vad = tinyasr.sensevoice(work / "sensevoice"), tinyasr.vad(work / "vad")
    clips = {f"c{i}": tinyasr.speak(s, rate=22050) for i, s in enumerate(tinyasr.SENTENCES)}
    py = sys.executable
    ours = [py, "-m", "services.asr", "--model-dir", str(sv), "--vad-dir", str(vad), "--log-level", "warning",
            "--max-queue", "64"]
    servers = [
        Server("baseline", "hand-written: async route, temp_audio_<thread>.wav, generate on the event loop",
               [py, str(ROOT / "bench" / "asr_baseline_server.py"), "--model-dir", str(sv), "--vad-dir", str(vad)],
               "/health"),
        Server("baseline_unique", "the same with a uuid per temp file: no file race, still blocking the loop",
               [py, str(ROOT / "bench" / "asr_baseline_server.py"), "--model-dir", str(sv), "--vad-dir", str(vad),
                "--unique-names"], "/health"),
        Server("ours", "workers=1 (inference thread), no batching: the default", [*ours], "/ready"),
        Server("ours_workers2", "workers=2 (two inference processes, one per core)",
               [*ours, "--workers", "2"], "/ready"),
        Server("ours_batch8", "workers=1, batch_size=8, 5 ms window, bucket_ratio=1.0 (equal lengths only)",
               [*ours, "--batch-size", "8"], "/ready"),
        Server("ours_batch8_mixed", "workers=1, batch_size=8, 5 ms window, bucket_ratio=2.0",
               [*ours, "--batch-size", "8", "--bucket-ratio", "2.0"], "/ready"),
    ]
    try:
        for s in servers:
            start(s, work)
        for s in servers:
            wait_ready(s)
            # warm-up (the baseline's first request pays lazy imports), then the solo references
            recognize(s, "c0", clips["c0"])
            for clip, data in clips.items():
                s.solo[clip] = recognize(s, clip, data)
            distinct = len(set(s.solo.values()))
            print(f"{s.name}: ready; {distinct}/{len(clips)} distinct solo transcripts", flush=True)
            assert distinct == len(clips), f"{s.name}: solo transcripts are not distinct"

        report = measure(servers, clips, a.requests, a.rounds)
        srv = report["servers"]
        assert isinstance(srv, dict)
        for ref in ("baseline", "baseline_unique"):
            b8 = srv[ref]["c8"]
            report[f"ratios_vs_{ref}_c8"] = {
                name: {"rps": round(v["c8"]["rps"] / b8["rps"], 2),
                       "correct_per_s": round(v["c8"]["correct_per_s"] / max(b8["correct_per_s"], 1e-9), 2),
                       "p99": round(v["c8"]["p99_ms"] / b8["p99_ms"], 2)}
                for name, v in srv.items() if name.startswith("ours")
            }
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps({k: v for k, v in report.items() if k.startswith("ratios")}, indent=2))
    finally:
        for s in servers:
            if s.proc and s.proc.poll() is None:
                s.proc.send_signal(signal.SIGTERM)
        for s in servers:
            if s.proc:
                try:
                    s.proc.wait(30)
                except subprocess.TimeoutExpired:
                    s.proc.kill()


if __name__ == "__main__":
    main()
