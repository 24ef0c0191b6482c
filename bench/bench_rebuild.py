"""Cold build vs warm rebuild of an unchanged spec: wall time, and bytes downloaded by the rebuild.

The warm rebuild runs inside a network namespace with no interfaces but loopback (`unshare -n`), so
"0 bytes downloaded" is proven by construction: any download attempt would fail the build.
Writes bench/results/rebuild.json. Usage: .venv/bin/python bench/bench_rebuild.py [--models models.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def tree_size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and not f.is_symlink())


def build(cmd_prefix: list[str], spec: Path, key: Path, out: Path, cache: Path) -> float:
    env = dict(os.environ, AIRLOCK_CACHE=str(cache), AIRLOCK_PROGRESS="0", SOURCE_DATE_EPOCH="1700000000")
    t = time.perf_counter()
    subprocess.run([*cmd_prefix, sys.executable, "-m", "packager", "-q", "build", "--models", str(spec),
                    "--key", str(key), "--out", str(out)], check=True, env=env, cwd=ROOT)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=str(ROOT / "models.yaml"))
    a = ap.parse_args()
    src = Path(a.models).resolve()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        work = Path(d)
        data = yaml.safe_load(src.read_text())
        for m in data.get("models", []):
            if m.get("source") == "local":
                m["path"] = str((src.parent / m["path"]).resolve())
        spec = work / "models.yaml"
        spec.write_text(yaml.safe_dump(data, sort_keys=False))
        subprocess.run([sys.executable, "-m", "packager", "keygen", "--out", str(work / "k")], check=True,
                       capture_output=True, cwd=ROOT)
        cache = work / "cache"
        cold = build([], spec, work / "k.key", work / "dist1", cache)
        cache_after_cold = tree_size(cache / "sha256")
        manifest1 = next((work / "dist1").iterdir()) / "manifest.json"
        warm = build(["unshare", "-n"], spec, work / "k.key", work / "dist2", cache)
        manifest2 = next((work / "dist2").iterdir()) / "manifest.json"
        result = {
            "spec": str(src.relative_to(ROOT)) if src.is_relative_to(ROOT) else str(src),
            "bundle_bytes": tree_size(manifest1.parent),
            "files": len(json.loads(manifest1.read_text())["files"]),
            "cold_build_s": round(cold, 2),
            "warm_rebuild_s": round(warm, 2),
            "warm_rebuild_network": "none (unshare -n): any download would have failed the build",
            "warm_rebuild_bytes_downloaded": tree_size(cache / "sha256") - cache_after_cold,
            "manifests_identical": manifest1.read_bytes() == manifest2.read_bytes(),
        }
        shutil.rmtree(work / "dist1")
    out = ROOT / "bench" / "results" / "rebuild.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
