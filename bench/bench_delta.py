"""Full bundle vs delta bundle: bytes to carry across the air gap for one change.

Synthetic mode (default) builds, through the real CLI, a base release 1.0.0 (one local model in shards and
a few wheels pinned by a hand-made lock, so nothing is resolved or downloaded), then release 1.1.0 twice
for each scenario: one model shard changed (a new model revision), and one wheel at a new version. Each
1.1.0 is built full and as a delta of 1.0.0 (``build --base``); the delta is then unpacked with its base
and compared file by file with the full bundle's tree.

Measure mode takes bundles already built: ``--base OLD --full NEW --delta DELTA``.

Prints JSON (and writes it to --out if given). Usage:
    .venv/bin/python bench/bench_delta.py [--model-mb 64 --shards 8 --wheels 6 --wheel-mb 2]
    .venv/bin/python bench/bench_delta.py --base dist/x-1.0.0 --full dist/x-1.1.0 --delta dist/x-1.1.0-delta-from-1.0.0
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from packager.lock import Lock, PythonLock, WheelLock, read_lock, write_lock  # noqa: E402
from packager.signing import write_keypair  # noqa: E402
from packager.spec import load_spec  # noqa: E402

TARGET = {"os": "debian12", "arch": "x86_64", "python": "3.12", "manylinux": "2_28", "cuda": None}


def size_of(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and not f.is_symlink())


def blob_sizes(bundle: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in (bundle / "blobs" / "sha256").iterdir()}


def measure(base: Path, full: Path, delta: Path) -> dict[str, Any]:
    new = set(blob_sizes(full)) - set(blob_sizes(base))
    changed = sum(blob_sizes(full)[d] for d in new)
    manifest = (delta / "manifest.json").stat().st_size
    full_b, delta_b = size_of(full), size_of(delta)
    return {
        "full_bytes": full_b,
        "delta_bytes": delta_b,
        "changed_blobs": len(new),
        "changed_blobs_bytes": changed,
        "delta_manifest_bytes": manifest,
        "full_manifest_bytes": (full / "manifest.json").stat().st_size,
        "delta_over_full": round(delta_b / full_b, 4),
        "delta_over_changed_plus_manifest": round(delta_b / (changed + manifest), 4),
    }


class Release:
    """A spec folder with a local model in shards and wheels pinned by a hand-made lock."""

    def __init__(self, folder: Path, shards: int, shard_bytes: int, wheels: int, wheel_bytes: int) -> None:
        self.folder = folder
        self.shards = {f"model-{i:05d}-of-{shards:05d}.safetensors": os.urandom(shard_bytes) for i in range(shards)}
        self.shards["config.json"] = b'{"model_type": "llama"}\n'
        self.wheels = {f"pkg{i}": ("1.0", os.urandom(wheel_bytes)) for i in range(wheels)}

    def write(self, version: str) -> Path:
        model = self.folder / "models" / "m"
        model.mkdir(parents=True, exist_ok=True)
        for stale in model.iterdir():
            stale.unlink()
        for name, data in self.shards.items():
            (model / name).write_bytes(data)
        wdir = self.folder / "wheels"
        wdir.mkdir(exist_ok=True)
        locked = []
        for name, (ver, data) in sorted(self.wheels.items()):
            fn = f"{name}-{ver}-py3-none-any.whl"
            (wdir / fn).write_bytes(data)
            locked.append(WheelLock(name=name, version=ver, filename=fn, url=(wdir / fn).as_uri(),
                                    sha256=hashlib.sha256(data).hexdigest(), size=len(data)))
        spec = self.folder / "models.yaml"
        spec.write_text(yaml.safe_dump({
            "bundle": {"name": "bench", "version": version},
            "target": TARGET,
            "python": {"requirements": [f"{n}=={v}" for n, (v, _) in sorted(self.wheels.items())]},
            "models": [{"name": "m", "source": "local", "path": "./models/m"}],
        }, sort_keys=False))
        sf = load_spec(spec)
        old = read_lock(sf.lock_path)
        write_lock(sf.lock_path, Lock(python=PythonLock(spec_digest=sf.spec.section_digest("python"), wheels=locked,
                                                        resolver="bench"), models=old.models if old else None))
        return spec


def cli(args: list[str], env: dict[str, str]) -> tuple[str, float]:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "packager", "-q", *args], capture_output=True, text=True, env=env,
                       cwd=ROOT, check=False)
    if r.returncode != 0:
        raise SystemExit(f"packager {' '.join(args)} failed:\n{r.stderr}")
    return r.stdout.strip(), time.perf_counter() - t


def same_tree(a: Path, b: Path) -> bool:
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return fa == fb and all(filecmp.cmp(a / p, b / p, shallow=False) for p in fa)


def synthetic(a: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-delta.") as tmp:
        t = Path(tmp)
        key, pub = write_keypair(t / "key")
        env = dict(os.environ, AIRLOCK_CACHE=str(t / "cache"), AIRLOCK_PROGRESS="0", SOURCE_DATE_EPOCH="1700000000")
        rel = Release(t / "spec", a.shards, int(a.model_mb * 2**20 / a.shards), a.wheels, int(a.wheel_mb * 2**20))
        build = ["build", "--key", str(key)]
        base, base_s = cli([*build, "--models", str(rel.write("1.0.0")), "--out", str(t / "base")], env)
        out: dict[str, Any] = {
            "measured": (f"synthetic bundles built by the real CLI: a local model of {a.model_mb} MiB in {a.shards} "
                         f"random shards + config.json, and {a.wheels} random {a.wheel_mb} MiB wheels pinned by a "
                         "hand-made lock; base 1.0.0, then 1.1.0 with one change, built full and as a delta"),
            "base_build_s": round(base_s, 2),
            "scenarios": {},
        }
        first_shard = next(iter(rel.shards))
        original = (rel.shards[first_shard], dict(rel.wheels))
        for name in ("one_model_shard_changed", "one_wheel_new_version"):
            rel.shards[first_shard], rel.wheels = original[0], dict(original[1])
            if name == "one_model_shard_changed":
                rel.shards[first_shard] = os.urandom(len(original[0]))
            else:
                rel.wheels["pkg0"] = ("1.1", os.urandom(int(a.wheel_mb * 2**20)))
            spec = rel.write("1.1.0")
            full, full_s = cli([*build, "--models", str(spec), "--out", str(t / name / "full")], env)
            delta, delta_s = cli([*build, "--models", str(spec), "--out", str(t / name / "delta"), "--base", base,
                                  "--base-pubkey", str(pub)], env)
            unpacked_full, _ = cli(["unpack", full, str(t / name / "rel-full"), "--pubkey", str(pub)], env)
            unpacked_delta, unpack_s = cli(["unpack", delta, str(t / name / "rel-delta"), "--pubkey", str(pub),
                                            "--base", base], env)
            out["scenarios"][name] = {
                **measure(Path(base), Path(full), Path(delta)),
                "full_build_s": round(full_s, 2),
                "delta_build_s": round(delta_s, 2),
                "delta_unpack_s": round(unpack_s, 2),
                "unpacked_trees_identical": same_tree(Path(unpacked_full), Path(unpacked_delta)),
            }
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-mb", type=float, default=64)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--wheels", type=int, default=6)
    ap.add_argument("--wheel-mb", type=float, default=2)
    ap.add_argument("--base", type=Path, help="measure mode: the base bundle")
    ap.add_argument("--full", type=Path, help="measure mode: the new release, built full")
    ap.add_argument("--delta", type=Path, help="measure mode: the new release, built with --base BASE")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    a = ap.parse_args()
    given = [a.base, a.full, a.delta]
    if any(given) and not all(given):
        ap.error("measure mode needs all of --base, --full and --delta")
    result = measure(a.base, a.full, a.delta) if all(given) else synthetic(a)
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
