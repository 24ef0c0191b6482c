"""Wheel fetch: ``packager.fetch.wheels.fetch_wheels`` vs ``pip download`` for the same pinned wheels.

A fixed, pinned closure of a FastAPI/uvicorn/pydantic/numpy/scipy/pandas stack (42 wheels, ~130 MB) for
CPython 3.12 on x86_64 manylinux_2_28. The pins are locked once (timed apart), then each round fetches
them cold with both tools: ours into an empty cache, pip into an empty folder with ``--no-cache-dir``.
Rounds alternate which tool goes first. An untimed warm-up fetch comes first: the index's CDN (or a
mirror in between) is slow on the first request for a file, which would otherwise penalise whichever
tool happens to ask first.

    .venv/bin/python bench/bench_fetch.py [--rounds N] [--jobs N]

Writes ``bench/results/fetch.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from packager.cache import Cache  # noqa: E402
from packager.fetch.wheels import fetch_wheels  # noqa: E402
from packager.lock import PythonLock  # noqa: E402
from packager.lock.python import lock_python, target_platforms  # noqa: E402
from packager.spec import SpecFile, Target, parse_spec  # noqa: E402

PYTHON = "3.12"
MANYLINUX = "2_28"
PINS = [
    "annotated-doc==0.0.7", "annotated-types==0.8.0", "anyio==4.16.0", "cffi==2.1.1", "click==8.5.1",
    "cryptography==50.0.2", "fastapi==0.165.0", "filelock==4.2.11", "fsspec==2026.9.0", "grpcio==1.85.1",
    "h11==0.16.0", "hf-xet==1.8.0", "httpcore2==2.16.2", "httptools==0.9.0", "httpx2==2.16.2",
    "huggingface-hub==2.4.0", "idna==3.20", "lxml==6.1.3", "numpy==2.5.5", "opentelemetry-api==1.45.2",
    "orjson==3.13.0", "packaging==26.3", "pandas==3.1.1", "pillow==13.0.0", "pycparser==3.12",
    "pydantic==2.14.3", "pydantic-core==2.50.4", "python-dateutil==4.0.0", "python-dotenv==1.2.4",
    "pyyaml==6.0.3", "scipy==1.18.1", "starlette==1.10.0", "tokenizers==0.23.3", "tqdm==4.70.1",
    "truststore==0.10.5", "typing-extensions==4.16.0", "typing-inspection==0.4.5", "tzdata==2026.6",
    "uvicorn==0.54.0", "uvloop==0.23.0", "watchfiles==1.3.0", "websockets==17.4",
]


def lock_pins(work: Path) -> tuple[PythonLock, float]:
    text = yaml.safe_dump({"bundle": {"name": "bench", "version": "1"},
                           "target": {"python": PYTHON, "manylinux": MANYLINUX},
                           "python": {"requirements": PINS}})
    path = work / "models.yaml"
    path.write_text(text)
    spec = SpecFile(path=path, spec=parse_spec(text, str(path)), sha256=hashlib.sha256(text.encode()).hexdigest())
    t0 = time.perf_counter()
    lock = lock_python(spec)
    return lock, time.perf_counter() - t0


def run_ours(lock: PythonLock, work: Path, jobs: int) -> float:
    cache = Cache(work / "ours-cache")
    t0 = time.perf_counter()
    fetch_wheels(lock.wheels, cache, jobs=jobs)
    return time.perf_counter() - t0


def run_pip(lock: PythonLock, work: Path) -> tuple[float, set[str]]:
    dest = work / "pip-dl"
    plats = target_platforms(Target(python=PYTHON, manylinux=MANYLINUX))
    cmd = [sys.executable, "-m", "pip", "download", "--isolated", "--no-cache-dir", "--no-deps",
           "--only-binary", ":all:", "--python-version", PYTHON, "--implementation", "cp",
           "--abi", "cp" + PYTHON.replace(".", ""), "--progress-bar", "off", "-q", "-d", str(dest)]
    for p in plats:
        cmd += ["--platform", p]
    cmd += [f"{w.name}=={w.version}" for w in lock.wheels]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    elapsed = time.perf_counter() - t0
    return elapsed, {p.name for p in dest.iterdir()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up fetch")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fetch.json")
    args = ap.parse_args()
    os.environ.setdefault("AIRLOCK_PROGRESS", "0")

    with tempfile.TemporaryDirectory(prefix="bench-fetch-") as tmp:
        lock, lock_s = lock_pins(Path(tmp))
    total = sum(w.size or 0 for w in lock.wheels)
    ours_names = {w.filename for w in lock.wheels}
    warmup_s = None
    if not args.no_warmup:
        with tempfile.TemporaryDirectory(prefix="bench-fetch-") as tmp:
            warmup_s = run_ours(lock, Path(tmp), args.jobs)
        print(f"warm-up (untimed): {warmup_s:.2f} s", file=sys.stderr)
    rounds: list[dict[str, float | str]] = []
    same_files = True
    for i in range(args.rounds):
        first = "ours" if i % 2 == 0 else "pip"
        with tempfile.TemporaryDirectory(prefix="bench-fetch-") as tmp:
            work = Path(tmp)
            if first == "ours":
                ours_s = run_ours(lock, work, args.jobs)
                pip_s, pip_names = run_pip(lock, work)
            else:
                pip_s, pip_names = run_pip(lock, work)
                ours_s = run_ours(lock, work, args.jobs)
        same_files = same_files and pip_names == ours_names
        if pip_names != ours_names:
            print("pip picked other files:", sorted(pip_names ^ ours_names), file=sys.stderr)
        rounds.append({"first": first, "ours_s": round(ours_s, 2), "pip_s": round(pip_s, 2)})
        print(f"round {i + 1} ({first} first): ours {ours_s:.2f} s, pip {pip_s:.2f} s", file=sys.stderr)

    ours_med = statistics.median(float(r["ours_s"]) for r in rounds)
    pip_med = statistics.median(float(r["pip_s"]) for r in rounds)
    result = {
        "target": f"cp{PYTHON.replace('.', '')}-manylinux_{MANYLINUX}_x86_64",
        "wheels": len(lock.wheels),
        "total_mb": round(total / 1e6, 1),
        "jobs": args.jobs,
        "lock_s": round(lock_s, 2),
        "warmup_s": round(warmup_s, 2) if warmup_s is not None else None,
        "rounds": rounds,
        "ours_s": round(ours_med, 2),
        "pip_s": round(pip_med, 2),
        "ratio_ours_over_pip": round(ours_med / pip_med, 3),
        "ratio_incl_lock": round((ours_med + lock_s) / pip_med, 3),  # pip looks up each pin on the index too
        "ours_mb_s": round(total / 1e6 / ours_med, 1),
        "pip_mb_s": round(total / 1e6 / pip_med, 1),
        "same_files": same_files,
        "resolver": lock.resolver,
        "host": f"{platform.node()} Python {platform.python_version()} {os.cpu_count()} cpus",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"| tool | wall s (median of {args.rounds}) | MB/s |\n|---|---|---|")
    print(f"| airlock fetch_wheels (jobs={args.jobs}) | {ours_med:.2f} | {result['ours_mb_s']} |")
    print(f"| pip download | {pip_med:.2f} | {result['pip_mb_s']} |")
    print(f"\n{len(lock.wheels)} wheels, {result['total_mb']} MB; ratio ours/pip = {result['ratio_ours_over_pip']}"
          f" (goal <= 0.6); lock took {lock_s:.2f} s, ratio with the lock included {result['ratio_incl_lock']};"
          f" same files: {same_files}")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
