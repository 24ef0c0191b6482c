"""verify throughput on a >= 2 GB bundle vs `sha256sum` over the same blob files, side by side.

Both read the same files from the page cache (a warm-up pass first), alternating, median of N runs.
Writes bench/results/verify.json. Usage: .venv/bin/python bench/bench_verify.py [--gib 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from packager.bundle.assemble import assemble  # noqa: E402
from packager.bundle.manifest import FileEntry, Manifest, Provenance  # noqa: E402
from packager.cache import Cache  # noqa: E402
from packager.signing import generate_key  # noqa: E402


def make_bundle(work: Path, gib: float) -> tuple[Path, Path]:
    cache = Cache(work / "cache")
    key = generate_key()
    pub = work / "k.pub"
    pub.write_text(key.public_key.to_text())
    # a realistic mix: a few multi-GB-class weight shards plus many small files
    sizes = [256 << 20] * int(gib * 4) + [64 << 10] * 200
    files = []
    for i, size in enumerate(sizes):
        tmp = cache.tmp_path(f"f{i}")
        with tmp.open("wb") as f:
            left = size
            while left:
                n = min(left, 16 << 20)
                f.write(os.urandom(n))
                left -= n
        digest = cache.ingest(tmp)
        tmp.unlink()
        files.append(FileEntry(path=f"models/m/f{i:04d}.bin", sha256=digest, size=size))
    m = Manifest(bundle={"name": "bench", "version": "1"}, target={"python": "3.11"},
                 provenance=Provenance(packager_version="0", spec_sha256="0" * 64, lock_sha256="0" * 64,
                                       created="2024-01-01T00:00:00Z"),
                 packages=[], models=[], files=files)
    return assemble(m, cache, work / "dist", key), pub


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        bundle, pub = make_bundle(Path(d), a.gib)
        blobs = sorted(str(p) for p in (bundle / "blobs" / "sha256").iterdir())
        total = sum(Path(b).stat().st_size for b in blobs)
        ours_cmd = [sys.executable, "-m", "packager", "-q", "verify", str(bundle), "--pubkey", str(pub)]
        base_cmd = ["sha256sum", *blobs]
        timed(base_cmd)  # warm the page cache
        ours, base = [], []
        for _ in range(a.runs):
            base.append(timed(base_cmd))
            ours.append(timed(ours_cmd))
    result = {
        "bytes": total,
        "files": len(blobs),
        "cpus": os.cpu_count(),
        "sha256sum_s": statistics.median(base),
        "packager_verify_s": statistics.median(ours),
        "sha256sum_GBps": total / statistics.median(base) / 1e9,
        "packager_verify_GBps": total / statistics.median(ours) / 1e9,
        "speedup": statistics.median(base) / statistics.median(ours),
        "runs": a.runs,
    }
    out = ROOT / "bench" / "results" / "verify.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
