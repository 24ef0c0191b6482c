"""Proofs for the PaddleNLP offline patch ``paddlenlp-community-cache-first`` (packager/patches/).

A community model (``AutoTokenizer/AutoModel.from_pretrained("org/name")``) already downloaded into
``$PPNLP_HOME/models/org/name/`` does not load on a host with no network: PaddleNLP 2.6/2.7 ask the community
CDN (``https://bj.bcebos.com/paddlenlp/models/community/org/name/...``) whether each file exists before
looking in the cache; 2.8.0-3.0.0b4 look in the cache first, but the tokenizer still asks the CDN for the
optional files (added_tokens.json, ...) a community download never had. Each test builds a tiny BERT (random
weights, a 16-word vocabulary) into that cache with the release under test, then loads it by its name inside
``unshare -n``:

* unpatched: the load fails and the audit hook saw the lookup of bj.bcebos.com, also with every offline
  switch of the libraries around it set (HF_HUB_OFFLINE, ...; PaddleNLP itself reads none);
* patched with the catalogue's diff (``packager.patching.apply_venv``): tokenizer and model load and run,
  with no network attempt at all;
* reverted (``revert_venv``): the files hash to the wheel's again and the load fails as before.

The venvs: PaddleNLP's dependency pins do not resolve to a working set on Python 3.11 by themselves
(the newest aistudio-sdk, huggingface-hub, datasets and protobuf break its imports), so one "deps" venv per
paddlepaddle line is built with ``make_venv`` and the pins below; each PaddleNLP release then gets a small
venv of its own with only that wheel (``--no-deps``) that sees the deps venv's site-packages through a
``.pth`` file. The patch is applied to a copy of that small venv, so the cached ones stay pristine.

The scripts import zlib before paddle: with paddlepaddle 2.6.2, ``import paddlenlp`` otherwise dies in scipy's
import with ``zlib.error: Error -2 while decompressing data: inconsistent stream state`` (3.0.0 is fine).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.offline_venvs import (
    ROOT,
    VENVS,
    OfflineRun,
    _locked,
    copy_venv,
    make_venv,
    proof_releases,
    run_offline,
    site_packages,
)

PATCH_ID = "paddlenlp-community-cache-first"
PATCH_DIR = ROOT / "packager" / "patches" / PATCH_ID
SCRIPTS = Path(__file__).resolve().parent / "paddlenlp_offline"
MODEL = "airlock-test/tiny-bert"  # a community-style name: no built-in model has it, no local folder either
CDN_HOST = "bj.bcebos.com"

#: what makes PaddleNLP importable on Python 3.11 (checked; the newest releases of these break it)
PINS = ("aistudio-sdk<0.3", "huggingface-hub<0.26", "datasets<3", "pyarrow<18", "protobuf<5", "numpy<2")
#: paddlepaddle 2.6.2 is the only 2.x release with Python 3.11 wheels on the index; 3.0.0 for PaddleNLP 3.0 betas
DEPS_2X = ("paddlepaddle==2.6.2", "paddlenlp==2.7.2", "regex", *PINS)  # regex: 2.8.x needs it, 2.7.2 does not
DEPS_3X = ("paddlepaddle==3.0.0", "paddlenlp==3.0.0b4", *PINS)

#: 2.6/2.7: the community-CDN code in AutoModel, PretrainedConfig, the weights resolver and the tokenizer;
#: 2.8.0 on: resolve_file_path looks in the cache first, but the tokenizer still asks for the optional files
#: a community download lacks. Every release from 2.6.0 to 3.0.0b4 (the newest on the index) needs the patch.
OLD_CODE = ("2.6.0", "2.6.1", "2.7.0", "2.7.1", "2.7.2")
NEW_CODE = ("2.8.0", "2.8.1", "3.0.0b0", "3.0.0b1", "3.0.0b2", "3.0.0b3", "3.0.0b4")
NEEDS_PATCH = OLD_CODE + NEW_CODE


def _catalog():
    from packager.patching.meta import load_catalog

    return [p for p in load_catalog([PATCH_DIR.parent]) if p.id == PATCH_ID]


def _patch():
    (patch,) = _catalog()
    return patch


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the catalogue entry itself (no venv, no network) -------------------------------------------------------

def test_patch_yaml_loads_and_covers_exactly_the_checked_releases() -> None:
    from packager.patching.classify import match

    patch = _patch()
    assert patch.dist == "paddlenlp"
    assert patch.meta.upstream == "https://github.com/PaddlePaddle/PaddleNLP/pull/5817"
    assert patch.meta.fixed == []  # no release behaves: 3.0.0b4, the newest, still needs the tokenizer edit
    for v in NEEDS_PATCH:
        variant, fixed = match(patch, v)
        assert variant is not None and fixed is None, v
    # not checked, so neither "applies" nor "not needed": 2.5.0 does not install on Python 3.11 (it needs
    # protobuf<=3.20.0, every paddlepaddle with 3.11 wheels needs >=3.20.2), 2.5.1/2.5.2 install but do not
    # import (paddle.fluid is gone from paddlepaddle 2.6.2, the oldest with 3.11 wheels); 2.4.x, the 2.6.0rc0
    # pre-release and releases after 3.0.0b4 were not tried
    for v in ("2.4.9", "2.5.0", "2.5.1", "2.5.2", "2.6.0rc0", "2.8.2", "3.0.0b5", "3.0.0", "3.1.0"):
        assert match(patch, v) == (None, None), v


def test_every_diff_is_one_of_the_two_edits() -> None:
    patch = _patch()
    old_files = {
        "paddlenlp/transformers/auto/modeling.py",
        "paddlenlp/transformers/configuration_utils.py",
        "paddlenlp/transformers/model_utils.py",
        "paddlenlp/transformers/tokenizer_utils_base.py",
    }
    for version in NEEDS_PATCH:
        variant, _ = match_variant(patch, version)
        text = (PATCH_DIR / variant.diff).read_text()
        removed = [ln for ln in text.splitlines() if ln.startswith("-") and not ln.startswith("---")]
        if version in OLD_CODE:
            assert set(variant.files) == old_files, version
            # the only line taken out: AutoModel's CDN check becomes an elif after the two cache checks
            assert removed == ["-                if url_file_exists(standard_community_url):"], variant.diff
        else:
            assert set(variant.files) == {"paddlenlp/transformers/tokenizer_utils_base.py"}, version
            assert removed == [], variant.diff
        assert "Airlock offline patch (cf. PaddleNLP PR 5817)" in text


def match_variant(patch, version: str):
    from packager.patching.classify import match

    return match(patch, version)


# --- the venvs -------------------------------------------------------------------------------------------

def _deps_venv(version: str) -> Path:
    return make_venv("paddlenlp", DEPS_3X if version.startswith("3.") else DEPS_2X)


def release_venv(version: str) -> Path:
    """A small venv with only paddlenlp==version, seeing the deps venv's site-packages through a .pth file."""
    deps = _deps_venv(version)
    key = hashlib.sha256(f"{deps.name} {version}".encode()).hexdigest()[:12]
    venv = VENVS / f"paddlenlp-{version}-{key}"
    done = venv / ".complete"
    with _locked(VENVS / f".paddlenlp-{version}-{key}.lock"):
        if done.exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([str(deps / "bin" / "python"), "-m", "venv", "--without-pip", str(venv)], check=True)
        # the deps venv's pip installs the one wheel into the small venv's site-packages
        target = site_packages(venv)
        pip = [str(deps / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        proc = subprocess.run([*pip, "--no-deps", "--no-compile", "--target", str(target), f"paddlenlp=={version}"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            if "NewConnectionError" in proc.stderr or "Temporary failure in name resolution" in proc.stderr:
                pytest.skip(f"the package index is unreachable: cannot install paddlenlp=={version}")
            raise RuntimeError(f"pip install paddlenlp=={version} failed:\n{proc.stderr[-4000:]}")
        # after the install, so pip never saw the deps venv's own paddlenlp; a .pth line goes to the end of sys.path
        (target / "_airlock_paddlenlp_deps.pth").write_text(str(site_packages(deps)) + "\n")
        done.write_text(json.dumps({"paddlenlp": version, "deps": str(deps)}) + "\n")
    return venv


def _installed_version(venv: Path) -> str:
    from packager.patching.venv import installed_version

    found = installed_version(venv, "paddlenlp")
    assert found is not None
    return found


# --- the proofs ------------------------------------------------------------------------------------------

def _build_model(venv: Path, home: Path, work: Path) -> Path:
    run = run_offline(venv, (SCRIPTS / "build_tiny_model.py").read_text(), workdir=work / "build",
                      env={"PPNLP_HOME": str(home), "AIRLOCK_MODEL_NAME": MODEL}, cwd=work)
    assert run.returncode == 0 and not run.external_attempts(), run.explain()
    model_dir = home / "models" / MODEL
    assert sorted(p.name for p in model_dir.iterdir() if p.is_file()) == [
        "config.json", "model_state.pdparams", "tokenizer_config.json", "vocab.txt"]
    return model_dir


#: every offline switch there is, set to show none of them helps: PaddleNLP 2.6/2.7 read none (PADDLENLP_OFFLINE
#: exists in no release); the HF ones reach only from_hf_hub=True paths; 2.8+ reads AISTUDIO_BOS_OFFLINE, which
#: stops the CDN request before it leaves, but the tokenizer fails on the refusal just as on a network error
OFFLINE_VARS = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "PADDLENLP_OFFLINE": "1", "AISTUDIO_BOS_OFFLINE": "1", "AISTUDIO_HUB_OFFLINE": "1"}


def _load(venv: Path, home: Path, work: Path, tag: str, env: dict[str, str] | None = None) -> tuple[OfflineRun, dict]:
    run = run_offline(venv, (SCRIPTS / "load_offline.py").read_text(), workdir=work / tag,
                      env={"PPNLP_HOME": str(home), "AIRLOCK_MODEL_NAME": MODEL, **(env or {})}, cwd=work)
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, run.explain()
    return run, json.loads(lines[-1][len("RESULT "):])


def _assert_fails_on_cdn(version: str, run: OfflineRun, result: dict) -> None:
    """The unpatched failure: requests to the community CDN, which the empty namespace cannot resolve."""
    assert run.returncode == 1 and not result["ok"], run.explain()
    assert any(CDN_HOST in a["target"] for a in run.external_attempts()), run.explain()
    tokenizer_error = result["tokenizer"].get("error", "")
    if version in OLD_CODE:  # both ask the CDN first: requests' ConnectionError comes straight out
        for stage in ("tokenizer", "model"):
            error = result[stage].get("error", "")
            assert "ConnectionError" in error and CDN_HOST in error, run.explain()
        assert "added_tokens.json" in tokenizer_error, run.explain()
    else:  # 2.8+: the model loads from the cache; the tokenizer's optional added_tokens.json is asked for
        assert result["model"]["ok"], run.explain()
        assert "Can't load the model for 'airlock-test/tiny-bert'" in tokenizer_error, run.explain()
        assert "added_tokens.json" in tokenizer_error, run.explain()


def _assert_loads_offline(run: OfflineRun, result: dict) -> None:
    assert run.returncode == 0 and result["ok"], run.explain()
    assert run.external_attempts() == [], run.explain()
    assert result["tokenizer"]["class"] == "BertTokenizer" and result["tokenizer"]["input_ids"] == [2, 10, 11, 3]
    assert result["model"]["class"] == "BertModel" and len(result["model"]["hidden"]) == 4


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize("version", proof_releases(NEEDS_PATCH, ("2.7.2", "2.8.1")))  # one of each edit
def test_patch_makes_a_cached_community_model_load_offline(version: str, tmp_path: Path) -> None:
    from packager.patching.venv import apply_venv, revert_venv

    venv = copy_venv(release_venv(version), tmp_path / "venv")
    assert _installed_version(venv) == version
    site = site_packages(venv)
    variant, _ = match_variant(_patch(), version)
    assert variant is not None
    assert {p: _sha256(site / p) for p in variant.files} == {p: h.before for p, h in variant.files.items()}, \
        "the released files are not the ones the variant pins"

    home, work = tmp_path / "ppnlp", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    _build_model(venv, home, work)

    # 1. as released: the CDN is asked first, and offline that ends the load, offline switches or not
    run, result = _load(venv, home, work, "unpatched")
    _assert_fails_on_cdn(version, run, result)
    run, result = _load(venv, home, work, "unpatched-offline-vars", OFFLINE_VARS)
    assert run.returncode == 1 and not result["ok"], run.explain()
    assert "added_tokens.json" in result["tokenizer"].get("error", ""), run.explain()

    # 2. patched: loaded from the cache, not one attempt to reach anything
    changed = apply_venv(venv, _catalog())
    assert [(c.id, c.version, c.state) for c in changed] == [(PATCH_ID, version, "applied")]
    assert {p: _sha256(site / p) for p in variant.files} == {p: h.after for p, h in variant.files.items()}
    run, result = _load(venv, home, work, "patched")
    _assert_loads_offline(run, result)

    # 3. reverted: the wheel's bytes again, and the same failure as before
    reverted = revert_venv(venv, _catalog())
    assert [(c.id, c.state) for c in reverted] == [(PATCH_ID, "not_applied")]
    assert {p: _sha256(site / p) for p in variant.files} == {p: h.before for p, h in variant.files.items()}
    run, result = _load(venv, home, work, "reverted")
    _assert_fails_on_cdn(version, run, result)
