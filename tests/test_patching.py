"""Offline patches, the packager's side: exact unified diffs, the catalogue, the build's decisions, a venv
patched and reverted, and the bundle's ``patches/`` tree made from the real ``idna`` 3.10 wheel.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from packager.bundle.assemble import assemble
from packager.bundle.inspect import describe, render_text
from packager.bundle.manifest import read_manifest
from packager.cache import Cache
from packager.errors import PatchError, SpecError
from packager.lock import Lock, PythonLock, WheelLock
from packager.patching.bundle import bundle_patches
from packager.patching.classify import classify, refuse_unchecked
from packager.patching.meta import load_catalog, spec_catalog
from packager.patching.unidiff import apply_file, parse_diff
from packager.patching.venv import RECORD, apply_venv, installed_version, revert_venv, site_packages, status_venv
from packager.signing import load_secret_key
from packager.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]

# --- the tiny catalogue: one patch against the real idna 3.10 wheel --------------------------------------------

IDNA = "3.10"
#: what `diff -ru` wrote for two edits of the files idna 3.10 ships (timestamps and all)
FIX_DIFF = """\
diff -ru a/idna/compat.py b/idna/compat.py
--- a/idna/compat.py\t2024-09-15 12:00:00.000000000 +0000
+++ b/idna/compat.py\t2024-09-15 12:00:01.000000000 +0000
@@ -12,4 +12,4 @@


 def nameprep(s: Any) -> None:
-    raise NotImplementedError("IDNA 2008 does not utilise nameprep protocol")
+    raise NotImplementedError("IDNA 2008 does not utilise nameprep protocol (patched offline)")
diff -ru a/idna/package_data.py b/idna/package_data.py
--- a/idna/package_data.py\t2024-09-15 12:00:00.000000000 +0000
+++ b/idna/package_data.py\t2024-09-15 12:00:01.000000000 +0000
@@ -1 +1 @@
-__version__ = "3.10"
+__version__ = "3.10+airlock"
"""
#: sha256 of the files as the idna 3.10 wheel ships them, and once patched
FILES = {
    "idna/compat.py": {"before": "4732f2e90402765f7bf3868585bd845fd10a1822638343f73e294675e5d7731f",
                       "after": "f31e264bc106c262f32f15656e19cf2515ba0700e180c3860c8ff310725c49d8"},
    "idna/package_data.py": {"before": "ab9f52dce5ec739548f23eaf483d2c18133293acd9e2f58544413cf3208960ab",
                             "after": "db687a79ac0129aadf3ed549f229559c8b70c4b3d3637dadcc7ca56a452f2f77"},
}


def write_patch(catalog: Path, pid: str = "idna-nameprep", *, versions: str = ">=3.10,<3.11",
                fixed: list[dict[str, Any]] | None = None, files: dict[str, Any] | None = None,
                diff: str = FIX_DIFF, **extra: Any) -> Path:
    folder = catalog / pid
    folder.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "distribution": "IDNA",
        "summary": "nameprep says it was patched",
        "why": "A test patch: two files, one hunk each, against the real wheel.\n",
        "upstream": "none: a test fixture",
        "variants": [{"versions": versions, "diff": "fix.diff", "files": files or FILES}],
        **({"fixed": fixed} if fixed is not None else {}),
        **extra,
    }
    (folder / "patch.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    (folder / "fix.diff").write_text(diff)
    return catalog


@pytest.fixture(scope="session")
def idna_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("wheels")
    subprocess.run([sys.executable, "-m", "pip", "download", f"idna=={IDNA}", "--no-deps", "--only-binary=:all:",
                    "-d", str(d), "-q", "--disable-pip-version-check"], check=True, capture_output=True)
    (wheel,) = d.glob("idna-*.whl")
    return wheel


@pytest.fixture(scope="session")
def venv_template(tmp_path_factory: pytest.TempPathFactory, idna_wheel: Path) -> Path:
    v = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(v)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(v / "bin" / "python"), "install", "--no-index",
                    "--no-deps", "-q", "--disable-pip-version-check", str(idna_wheel)], check=True,
                   capture_output=True)
    return v


@pytest.fixture
def venv(tmp_path: Path, venv_template: Path) -> Path:
    v = tmp_path / "venv"
    shutil.copytree(venv_template, v, symlinks=True)
    return v


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


# --- unified diffs ---------------------------------------------------------------------------------------------

OLD = b"line one\nline two\nline three\nline four\nline five\nlast line"  # no newline at the end
NEW = b"line one\nline 2\nline three\nline four\nline five\nlast line, edited\n"
DIFF = b"""\
--- old.txt
+++ old.txt
@@ -1,3 +1,3 @@
 line one
-line two
+line 2
 line three
@@ -5,2 +5,2 @@
 line five
-last line
\\ No newline at end of file
+last line, edited
"""


def test_unidiff_apply_and_reverse_exactly() -> None:
    (d,) = parse_diff(DIFF, "t.diff")
    assert d.path == "old.txt" and len(d.hunks) == 2  # no a/ b/ prefixes: the path as written
    assert apply_file(d, OLD) == NEW
    assert apply_file(d, NEW, reverse=True) == OLD
    with pytest.raises(PatchError, match=r"old.txt: hunk 1 .* does not match: line 2 is b'line 2\\n'"):
        apply_file(d, NEW)  # applied twice: the removed line is no longer there
    with pytest.raises(PatchError, match=r"hunk 2 .* does not match in reverse"):
        apply_file(d, OLD.replace(b"two", b"2"), reverse=True)  # hunk 1 reverses, hunk 2 does not
    # no fuzz, no offset search: the same text one line further down does not match
    with pytest.raises(PatchError, match=r"hunk 1 .* does not match"):
        apply_file(d, b"an extra first line\n" + OLD)
    # the missing final newline counts: with it, hunk 2 does not match
    with pytest.raises(PatchError, match=r"hunk 2 .* line 6 is b'last line\\n'"):
        apply_file(d, OLD + b"\n")


def test_unidiff_multiple_files_and_git_prefixes() -> None:
    diffs = parse_diff(FIX_DIFF, "fix.diff")
    assert [d.path for d in diffs] == ["idna/compat.py", "idna/package_data.py"]
    (pkg,) = [d for d in diffs if d.path == "idna/package_data.py"]
    assert apply_file(pkg, b'__version__ = "3.10"\n') == b'__version__ = "3.10+airlock"\n'


@pytest.mark.parametrize(("text", "error"), [
    ("--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,2 @@\n-a\n+b\n", r"x.py hunk 1: ends early"),
    ("--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n?b\n", r"x.py hunk 1: unexpected line"),
    ("--- /dev/null\n+++ b/new.py\n@@ -0,0 +1 @@\n+a\n", r"creating or deleting files is not supported"),
    ("--- a/../etc/passwd\n+++ b/../etc/passwd\n@@ -1 +1 @@\n-a\n+b\n", r"unsafe path"),
    ("--- a/x.py\n+++ b/y.py\n@@ -1 +1 @@\n-a\n+b\n", r"renames"),
    ("just some text\n", r"no file diffs found"),
    ("--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n--- a/x.py\n+++ b/x.py\n@@ -3 +3 @@\n-c\n+d\n", r"appears twice"),
])
def test_unidiff_parse_errors_name_file_and_hunk(text: str, error: str) -> None:
    with pytest.raises(PatchError, match=error) as e:
        parse_diff(text, "bad.diff")
    assert "bad.diff" in str(e.value)


def test_unidiff_overlapping_hunks() -> None:
    (d,) = parse_diff("--- x\n+++ x\n@@ -2,2 +2,2 @@\n-b\n+B\n c\n@@ -1,2 +1,2 @@\n-a\n+A\n b\n", "o.diff")
    with pytest.raises(PatchError, match=r"hunk 2 .* overlaps"):
        apply_file(d, b"a\nb\nc\n")


# --- the catalogue ---------------------------------------------------------------------------------------------

def test_catalog_loads_and_validates(tmp_path: Path) -> None:
    cat = write_patch(tmp_path / "cat", fixed=[{"versions": "==3.8", "evidence": {"file": "idna/compat.py",
                                                                                  "contains": "nameprep"}}])
    (p,) = load_catalog([cat, tmp_path / "does-not-exist"])
    assert (p.id, p.dist, p.meta.variants[0].versions) == ("idna-nameprep", "idna", ">=3.10,<3.11")
    assert [d.path for d in p.diff_of(p.meta.variants[0])] == sorted(FILES)

    def error_of(pid: str, **kw: Any) -> str:
        c = write_patch(tmp_path / pid, pid, **kw)
        with pytest.raises(PatchError) as e:
            load_catalog([c])
        return str(e.value)

    msg = error_of("bad-hash", files={**FILES, "idna/compat.py": {"before": "0" * 63, "after": "1" * 64}})
    assert "bad-hash/patch.yaml" in msg and "variants.0.files.idna/compat.py.before" in msg
    msg = error_of("bad-range", versions=">=3.10,<<3.11")
    assert "variants.0.versions: not a PEP 440 specifier set" in msg
    msg = error_of("typo", summry="x")
    assert "summry: unknown key" in msg
    msg = error_of("unlisted", files={"idna/compat.py": FILES["idna/compat.py"]})
    assert "variants.0.files must list exactly the files fix.diff touches; not listed: idna/package_data.py" in msg
    msg = error_of("upstream", upstream="ask Bob")
    assert "upstream: an issue or pull request URL" in msg
    msg = error_of("Bad_Id")
    assert "patch id 'Bad_Id'" in msg
    write_patch(tmp_path / "other", "idna-nameprep")
    with pytest.raises(PatchError, match="is in two catalogues"):
        load_catalog([cat, tmp_path / "other"])


# --- decisions -------------------------------------------------------------------------------------------------

def test_classify_and_refuse_unchecked(tmp_path: Path) -> None:
    (p,) = load_catalog([write_patch(tmp_path / "cat", fixed=[
        {"versions": ">=3.20", "evidence": {"file": "idna/compat.py", "contains": "x"}}])])

    def status(version: str) -> str:
        (d,) = classify([p], {"IDNA": version, "six": "1.16.0"})
        return d.status

    assert status("3.10") == "applies"
    assert status("3.10.1rc1") == "applies"  # pre-releases count as inside a range
    assert status("3.21") == "not_needed"
    assert status("3.21rc1") == "not_needed"
    assert status("3.9") == "unchecked"
    assert status("not-a-version") == "unchecked"
    assert classify([p], {"six": "1.16.0"}) == []  # not in the bundle: no decision at all

    decisions = classify([p], {"idna": "3.9"})
    with pytest.raises(PatchError) as e:
        refuse_unchecked(decisions, allow=False)
    assert "patch idna-nameprep for idna 3.9" in str(e.value)
    assert "patches.allow_unchecked: true" in str(e.value) and "add it to the catalogue" in str(e.value)
    refuse_unchecked(decisions, allow=True)
    refuse_unchecked(classify([p], {"idna": "3.10"}), allow=False)


# --- a real venv -----------------------------------------------------------------------------------------------

@pytest.mark.network
def test_apply_idempotent_revert(tmp_path: Path, venv: Path) -> None:
    patches = load_catalog([write_patch(tmp_path / "cat")])
    site = site_packages(venv)
    assert installed_version(venv, "IDNA") == IDNA and installed_version(venv, "six") is None
    originals = {p: (site / p).read_bytes() for p in FILES}
    (site / "idna/compat.py").chmod(0o640)
    (st,) = status_venv(venv, patches)
    assert (st.status, st.state) == ("applies", "not_applied")

    (r,) = apply_venv(venv, patches)
    assert r.state == "applied" and r.changed == tuple(sorted(FILES))
    assert {p: sha(site / p) for p in FILES} == {p: h["after"] for p, h in FILES.items()}
    assert (site / "idna/compat.py").stat().st_mode & 0o777 == 0o640  # mode kept
    assert not list(site.glob("idna/.*airlock-tmp"))
    record = json.loads((venv / RECORD).read_text())
    assert record["schema"] == "airlock-patches-applied/1"
    assert record["patches_dir"] == f"catalogue:{tmp_path / 'cat'}"
    assert [(e["id"], e["distribution"], e["version"]) for e in record["patches"]] == [("idna-nameprep", "idna",
                                                                                           IDNA)]
    assert record["patches"][0]["files"] == [{"path": p, **h} for p, h in sorted(FILES.items())]
    # the venv's own Python sees the patched files, and their .pyc were rebuilt beside them
    py = venv / "bin" / "python"
    out = subprocess.run([str(py), "-c", "import idna, idna.compat; print(idna.__version__)"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "3.10+airlock"
    assert list((site / "idna" / "__pycache__").glob("package_data.*.pyc"))

    (again,) = apply_venv(venv, patches)  # idempotent: nothing written
    assert again.state == "applied" and again.changed == ()

    (back,) = revert_venv(venv, patches)
    assert back.state == "not_applied" and back.changed == tuple(sorted(FILES))
    assert {p: (site / p).read_bytes() for p in FILES} == originals
    assert not (venv / RECORD).exists()  # nothing applied any more: no record
    assert revert_venv(venv, patches)[0].changed == ()

    # the CLI: status, apply, revert (thin wrappers)
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "packager", "patches", *args, "--venv", str(venv), "--catalog",
                               str(tmp_path / "cat")], capture_output=True, text=True, cwd=ROOT)
    r1 = cli("apply")
    assert r1.returncode == 0, r1.stderr
    assert "idna-nameprep" in r1.stdout and "patched 2 file(s)" in r1.stdout
    r2 = cli("status")
    assert "applied" in r2.stdout
    r3 = cli("revert")
    assert r3.returncode == 0 and "restored 2 file(s)" in r3.stdout


@pytest.mark.network
def test_hash_mismatch_changes_nothing(tmp_path: Path, venv: Path) -> None:
    patches = load_catalog([write_patch(tmp_path / "cat")])
    site = site_packages(venv)
    (site / "idna/package_data.py").write_text('__version__ = "3.10"  # edited by hand\n')
    before = {p: (site / p).read_bytes() for p in FILES}
    with pytest.raises(PatchError) as e:
        apply_venv(venv, patches)
    msg = str(e.value)
    found = sha(site / "idna/package_data.py")
    assert "idna 3.10: idna/package_data.py" in msg
    assert FILES["idna/package_data.py"]["before"] in msg and found in msg and "nothing changed" in msg
    assert {p: (site / p).read_bytes() for p in FILES} == before  # compat.py, which matched, is untouched too
    assert not (venv / RECORD).exists()
    (st,) = status_venv(venv, patches)
    assert st.state == "mismatch"
    r = subprocess.run([sys.executable, "-m", "packager", "patches", "apply", "--venv", str(venv), "--catalog",
                        str(tmp_path / "cat")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 10 and found in r.stderr


@pytest.mark.network
def test_unchecked_version_is_left_alone(tmp_path: Path, venv: Path) -> None:
    patches = load_catalog([write_patch(tmp_path / "cat", versions=">=3.11")])
    site = site_packages(venv)
    before = {p: sha(site / p) for p in FILES}
    (r,) = apply_venv(venv, patches)
    assert (r.status, r.state, r.changed) == ("unchecked", "not_applicable", ())
    assert {p: sha(site / p) for p in FILES} == before


# --- the spec --------------------------------------------------------------------------------------------------

SPEC = {"bundle": {"name": "p", "version": "1.0.0"}, "target": {"python": "3.11"},
        "python": {"requirements": [f"idna=={IDNA}"]}}


def test_spec_patches_section(tmp_path: Path) -> None:
    assert parse_spec(yaml.safe_dump(SPEC)).patches.allow_unchecked is False
    with pytest.raises(SpecError, match=r"s.yaml:\d+: patches.alow_unchecked: unknown key"):
        parse_spec(yaml.safe_dump({**SPEC, "patches": {"alow_unchecked": True}}), "s.yaml")
    with pytest.raises(SpecError, match=r"patches.skip.0"):
        parse_spec(yaml.safe_dump({**SPEC, "patches": {"skip": ["Not An Id"]}}), "s.yaml")

    write_patch(tmp_path / "cat")
    spec = tmp_path / "models.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "patches": {"catalogs": ["cat"], "skip": ["nope"]}}))
    with pytest.raises(SpecError, match=r"patches.skip\[0\]: no patch 'nope'") as e:
        spec_catalog(load_spec(spec))
    assert str(spec) in str(e.value)
    spec.write_text(yaml.safe_dump({**SPEC, "patches": {"catalogs": ["missing"]}}))
    with pytest.raises(SpecError, match=r"patches.catalogs\[0\]: 'missing' is not a folder"):
        spec_catalog(load_spec(spec))
    spec.write_text(yaml.safe_dump({**SPEC, "patches": {"catalogs": ["cat"]}}))
    assert "idna-nameprep" in [p.id for p in spec_catalog(load_spec(spec))]
    spec.write_text(yaml.safe_dump({**SPEC, "patches": {"catalogs": ["cat"], "skip": ["idna-nameprep"]}}))
    assert "idna-nameprep" not in [p.id for p in spec_catalog(load_spec(spec))]


# --- the bundle ------------------------------------------------------------------------------------------------

def _lock(cache: Cache, wheel: Path) -> Lock:
    digest = cache.ingest(wheel)
    w = WheelLock(name="idna", version=IDNA, filename=wheel.name, url=wheel.as_uri(), sha256=digest,
                  size=wheel.stat().st_size)
    return Lock(python=PythonLock(spec_digest="0" * 64, wheels=[w], resolver="test"))


@pytest.mark.network
def test_bundle_carries_the_patch(tmp_path: Path, idna_wheel: Path, keypair: tuple[Path, Path],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from packager.build import make_manifest

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    write_patch(tmp_path / "cat")
    write_patch(tmp_path / "cat", "idna-later", versions=">=3.11", fixed=[
        {"versions": "==3.10", "evidence": {"file": "idna/compat.py", "contains": "nameprep"}}])
    spec = tmp_path / "models.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "patches": {"catalogs": ["cat"]}}))
    cache = Cache(tmp_path / "cache")
    lk = _lock(cache, idna_wheel)
    m = make_manifest(load_spec(spec), lk, cache)
    assert [(e.id, e.distribution, e.version, e.status) for e in m.patches or []] == [
        ("idna-later", "idna", IDNA, "not_needed"), ("idna-nameprep", "idna", IDNA, "applies")]
    files = {f.path: f for f in m.files}
    root = "patches/idna-nameprep"
    assert {p for p in files if p.startswith("patches/")} == {
        "patches/index.json", f"{root}/fix.diff", *(f"{root}/{s}/{p}" for s in ("before", "after") for p in FILES)}
    for p, h in FILES.items():
        assert files[f"{root}/before/{p}"].sha256 == h["before"] and files[f"{root}/after/{p}"].sha256 == h["after"]
    index = json.loads(cache.path(files["patches/index.json"].sha256).read_bytes())
    assert index["schema"] == "airlock-patches/1"
    (entry,) = index["patches"]
    assert (entry["id"], entry["version"], entry["diff"]) == ("idna-nameprep", IDNA, f"{root}/fix.diff")
    assert entry["files"] == [{"path": p, **h} for p, h in sorted(FILES.items())]
    assert index["not_needed"] == [{"id": "idna-later", "distribution": "idna", "version": IDNA}]
    assert index["unchecked"] == []

    bundle = assemble(m, cache, tmp_path / "dist", load_secret_key(keypair[0]))
    text = render_text(describe(read_manifest(bundle), signed_by=None))
    assert "patches (2: 1 applies, 1 not needed, 0 unchecked" in text
    assert "idna-nameprep  idna          3.10     applies" in text

    # a version in no checked range stops the build, unless the spec allows it
    write_patch(tmp_path / "cat", "idna-unchecked", versions="<3")
    with pytest.raises(PatchError, match=r"patch idna-unchecked for idna 3\.10"):
        make_manifest(load_spec(spec), lk, cache)
    spec.write_text(yaml.safe_dump({**SPEC, "patches": {"catalogs": ["cat"], "allow_unchecked": True}}))
    m = make_manifest(load_spec(spec), lk, cache)
    assert ("idna-unchecked", "unchecked") in [(e.id, e.status) for e in m.patches or []]


@pytest.mark.network
def test_bundle_refuses_a_wheel_that_differs(tmp_path: Path, idna_wheel: Path) -> None:
    other = {**FILES, "idna/compat.py": {"before": "ab" * 32, "after": FILES["idna/compat.py"]["after"]}}
    patches = load_catalog([write_patch(tmp_path / "cat", files=other)])
    cache = Cache(tmp_path / "cache")
    lk = _lock(cache, idna_wheel)
    decisions = classify(patches, {"idna": IDNA})
    with pytest.raises(PatchError) as e:
        bundle_patches(decisions, cache, {"idna": lk.python.wheels[0].sha256})  # type: ignore[union-attr]
    msg = str(e.value)
    assert "idna 3.10: idna/compat.py: expected sha256 " + "ab" * 32 in msg
    assert FILES["idna/compat.py"]["before"] in msg


def test_manifest_without_patches_hashes_as_before() -> None:
    from packager.bundle.manifest import Manifest, Provenance

    m = Manifest(bundle={"name": "t", "version": "1"}, target={"os": "debian12"},
                 provenance=Provenance(packager_version="0", spec_sha256="0" * 64, lock_sha256="1" * 64,
                                       created="2024-01-01T00:00:00Z"), packages=[], models=[], files=[])
    assert b'"patches"' not in m.dumps()


@pytest.mark.network
def test_venv_patched_from_a_bundle_is_left_to_its_tool(tmp_path: Path, venv: Path) -> None:
    patches = load_catalog([write_patch(tmp_path / "cat")])
    record = {"schema": "airlock-patches-applied/1", "patches_dir": "/srv/release/patches",
              "patches": [{"id": "other", "distribution": "x", "version": "1", "files": []}]}
    (venv / RECORD).write_text(json.dumps(record))
    with pytest.raises(PatchError, match=r"patched from the bundle's /srv/release/patches") as e:
        apply_venv(venv, patches)
    assert "airlock-patch revert" in str(e.value)
    (venv / RECORD).write_text("{not json")
    with pytest.raises(PatchError, match="unreadable record"):
        apply_venv(venv, patches)
