"""Proofs for the FunASR offline patches ``funasr-no-version-check`` and ``funasr-fsmn-vad-silence``.

Each proof builds FunASR the way services/asr does, ``AutoModel(model=<local folder>, vad_model=<local
folder>)`` with the tiny models of scripts/tinyasr.py, inside ``unshare -n`` (tests/funasr_offline/probe.py):

* unpatched: AutoModel asks PyPI for a newer funasr (the audit hook sees the lookup of pypi.org, the only
  network attempt: nothing asks ModelScope or the Hugging Face Hub for the local folders), the speech clip
  is transcribed, and the FSMN-VAD fails on pure digital silence with ``ValueError: math domain error``
  in funasr/models/fsmn_vad_streaming/model.py;
* patched (``packager.patching.apply_venv``): no network attempt at all, the same transcript, and the silent
  input gives no speech segments instead of an error. For the locked release each patch is applied on its
  own first, so each is shown to fix its own half;
* reverted (``revert_venv``): the files hash to the released ones again, and (locked release) the attempt
  and the crash are back.

The releases run: one per distinct before-state of the patched files (every variant of both patches), the
locked 1.4.16 among them. Every other release of ``funasr>=1.2,<1.5`` has byte-identical files to its
variant's representative (checked when the catalogue entry was made: tests/funasr_offline/make_variants.py;
``python -m packager patches check`` checks them again), and when the entries were made every other release
was also run once the same way, unpatched and patched (55 of the 56 releases proven by a run, the sdist-only
1.3.4 ... 1.3.8 included). 1.2.0 is checked by hash only: as published it
cannot be imported (it imports pydub, onnx and onnxconverter_common without declaring them), so 1.2.2
stands for the 1.2.0 ... 1.2.6 variant. The venvs: tests/funasr_offline/envs.py (one dependency venv, one
small venv per release; releases before 1.4.5 need torchaudio, see there).

The "saturating" VAD (tests/funasr_offline/fixtures.py) stands in for the real FSMN-VAD checkpoint, which
saturates on digital silence the same way; tinyasr's own VAD is built never to.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.funasr_offline.envs import LOCKED, private_copy
from tests.offline_venvs import ROOT, OfflineRun, proof_releases, run_offline, site_packages

CHECK_ID = "funasr-no-version-check"
VAD_ID = "funasr-fsmn-vad-silence"
CATALOG = ROOT / "packager" / "patches"
PROBE = (Path(__file__).resolve().parent / "funasr_offline" / "probe.py").read_text(encoding="utf-8")
CRASH = "ValueError: math domain error"

#: every release of funasr>=1.2,<1.5 on the index (1.2.1 and 1.2.5 were never published); all were checked:
#: 1.3.4 ... 1.3.8 have no wheel, their sdists were read instead (the bundle builds its wheel from the sdist)
RELEASES = (
    "1.2.0", "1.2.2", "1.2.3", "1.2.4", "1.2.6", "1.2.7", "1.2.8", "1.2.9",
    *(f"1.3.{i}" for i in range(31)),
    *(f"1.4.{i}" for i in range(17)),
)
#: one release per variant of the VAD patch (and so of both variants of the version-check patch); by
#: default the last of the first version-check variant and the locked release (AIRLOCK_PATCH_PROOFS=all: every one)
RUN_ALL = ("1.2.2", "1.2.7", "1.3.1", "1.3.2", "1.3.9", "1.3.10", LOCKED)
RUN = proof_releases(RUN_ALL, ("1.3.1", LOCKED))


def _catalog():
    from packager.patching.meta import load_catalog

    return {p.id: p for p in load_catalog([CATALOG]) if p.id in (CHECK_ID, VAD_ID)}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the catalogue entries themselves (no venv, no network) -------------------------------------------------

def test_catalogue_entries_cover_every_release_of_the_spec_range() -> None:
    from packager.patching.classify import match

    patches = _catalog()
    assert set(patches) == {CHECK_ID, VAD_ID}
    for patch in patches.values():
        assert patch.dist == "funasr"
        assert not patch.meta.fixed  # no release behaves: none has an environment switch or a guarded log
        for v in RELEASES:
            variant, _ = match(patch, v)
            assert variant is not None, f"{patch.id}: {v} was checked but is not covered"
        for v in ("1.1.18", "1.4.17", "1.5.0"):
            assert match(patch, v) == (None, None), f"{patch.id}: {v} was not checked: it must stay unchecked"
    assert len(patches[CHECK_ID].meta.variants) == 2
    assert len(patches[VAD_ID].meta.variants) == 7
    vad_variants = {v.versions for v in patches[VAD_ID].meta.variants}
    assert {match(patches[VAD_ID], v)[0].versions for v in RUN_ALL} == vad_variants
    assert CRASH in patches[VAD_ID].meta.why
    assert "https://pypi.org/pypi/funasr/json" in patches[CHECK_ID].meta.why


# --- the proofs: real releases, offline ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup.sh installs it)")
    import tinyasr

    from tests.funasr_offline.fixtures import saturating_vad, silence_wav, speech_wav

    root = tmp_path_factory.mktemp("funasr-inputs")
    return {"PROBE_ASR": str(tinyasr.sensevoice(root / "sensevoice")),
            "PROBE_VAD": str(saturating_vad(root / "vad")),
            "PROBE_SPEECH": str(speech_wav(root / "speech.wav")),
            "PROBE_SILENCE": str(silence_wav(root / "silence.wav"))}


def _probe(venv: Path, env: dict[str, str], workdir: Path) -> tuple[OfflineRun, dict]:
    run = run_offline(venv, PROBE, env=env, workdir=workdir)
    lines = [line for line in run.stdout.splitlines() if line.startswith("PROBE ")]
    assert run.returncode == 0 and lines, run.explain()
    return run, json.loads(lines[-1].removeprefix("PROBE "))


def _assert_unpatched(run: OfflineRun, res: dict, version: str) -> None:
    assert res["funasr"] == version
    assert res["speech"].strip(), run.explain()
    assert res["silence"] == {"ok": False, "error": CRASH, "where": "funasr/models/fsmn_vad_streaming/model.py"}, res
    hosts = {a["target"] for a in run.external_attempts()}
    assert hosts == {"('pypi.org', 443)"}, run.explain()  # the version check, and nothing else (no hub lookup)


def _assert_fixed(run: OfflineRun, res: dict, transcript: str) -> None:
    assert run.attempts == [], run.explain()  # not even loopback
    assert res["speech"] == transcript
    assert res["silence"] == {"ok": True, "segments": []}, res


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize("version", RUN)
def test_offline_funasr_patched_and_reverted(version: str, inputs: dict[str, str], tmp_path: Path) -> None:
    from packager.patching.venv import apply_venv, installed_version, revert_venv

    patches = _catalog()
    venv = private_copy(version, tmp_path / "venv")
    assert installed_version(venv, "funasr") == version
    site = site_packages(venv)

    run, res = _probe(venv, inputs, tmp_path / "unpatched")
    _assert_unpatched(run, res, version)
    transcript = res["speech"]

    if version == LOCKED:  # each patch on its own: each fixes its own half
        apply_venv(venv, [patches[CHECK_ID]])
        run, res = _probe(venv, inputs, tmp_path / "version-check-only")
        assert run.attempts == [], run.explain()
        assert res["speech"] == transcript and res["silence"]["error"] == CRASH, res

    applied = apply_venv(venv, patches.values())
    assert sorted((a.id, a.status) for a in applied) == sorted([(CHECK_ID, "applies"), (VAD_ID, "applies")])
    run, res = _probe(venv, inputs, tmp_path / "patched")
    _assert_fixed(run, res, transcript)

    revert_venv(venv, patches.values())
    for a in applied:
        for f in a.files:
            assert _sha256(site / f.path) == f.before, f.path
    if version == LOCKED:
        run, res = _probe(venv, inputs, tmp_path / "reverted")
        _assert_unpatched(run, res, version)
        assert res["speech"] == transcript
