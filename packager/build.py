"""The online half, stage by stage: spec -> lock -> fetch -> manifest -> signed bundle."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from pathlib import Path

from packaging.utils import canonicalize_name

from packager import __version__
from packager.bundle.aptrepo import apt_repo_files
from packager.bundle.assemble import assemble
from packager.bundle.delta import check_base_fits, load_base, make_delta
from packager.bundle.manifest import FileEntry, Manifest, ModelEntry, PackageEntry, PatchEntry, Provenance
from packager.cache import Cache
from packager.controller import controller_files, controller_requirements, lock_controller, source_root
from packager.errors import FetchError, LockError
from packager.fetch.apt import fetch_debs
from packager.fetch.models import fetch_models
from packager.fetch.wheels import fetch_wheels
from packager.lock import Lock, WheelLock, read_lock, write_lock
from packager.lock.apt import lock_apt
from packager.lock.local import LOCAL_SCHEME, build_local_wheels, python_digest
from packager.lock.models import lock_models
from packager.lock.python import lock_python
from packager.patching.bundle import bundle_patches
from packager.patching.classify import STATUS_WORDS, Decision, classify, refuse_unchecked
from packager.patching.meta import spec_catalog
from packager.signing import PublicKey, SecretKey
from packager.spec import SpecFile

log = logging.getLogger("packager")


def lock(specfile: SpecFile, cache: Cache, *, relock: bool = False) -> Lock:
    """Resolve what changed since the last lock (everything with ``relock``) and write ``models.lock``."""
    previous = None if relock else read_lock(specfile.lock_path)
    spec = specfile.spec
    prev_py = previous.python if previous else None
    local = build_local_wheels(specfile, cache)
    for lw in local:
        log.info("lock: built %s from %s", lw.filename, lw.entry)
    if prev_py is not None and prev_py.spec_digest == python_digest(spec, local):
        py = prev_py
        log.info("lock: python section unchanged, %d wheels reused", len(py.wheels))
    elif spec.python.requirements or local:
        py = lock_python(specfile, build_dir=cache.root / "built-wheels", local=local)
        log.info("lock: resolved %d wheels for %s", len(py.wheels), spec.target.python_platform)
    else:
        py = None
    models = lock_models(specfile, cache, previous=previous.models if previous else None) if spec.models else None
    controller = None
    if spec.controller is not None:
        prev_c = previous.controller if previous else None
        controller = lock_controller(spec, controller_requirements(spec, source_root()), previous=prev_c)
        if controller is prev_c:
            log.info("lock: controller section unchanged, %d wheels reused", len(controller.wheels))
        else:
            log.info("lock: resolved %d controller wheels for Python %s", len(controller.wheels),
                     spec.controller.python or spec.target.python)
    prev_apt = previous.apt if previous else None
    apt = lock_apt(specfile, cache, previous=prev_apt)
    if apt is not None and apt is prev_apt:
        log.info("lock: system packages unchanged, %d debs reused", len(apt.debs))
    elif apt is not None:
        log.info("lock: resolved %d debs for %s (%s) with %s", len(apt.debs), apt.arch, apt.base, apt.resolver)
    new = Lock(python=py, models=models, controller=controller, apt=apt)
    if previous is None or previous.dumps() != new.dumps():
        write_lock(specfile.lock_path, new)
        log.info("lock: wrote %s", specfile.lock_path)
    return new


def _when() -> dt.datetime:
    """The build's time: ``SOURCE_DATE_EPOCH`` when set (reproducible builds), else now (whole seconds, UTC)."""
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    if sde is not None:
        try:
            when = dt.datetime.fromtimestamp(int(sde), tz=dt.UTC)
        except ValueError:
            raise LockError(f"SOURCE_DATE_EPOCH={sde!r} is not a whole number of seconds") from None
    else:
        when = dt.datetime.now(tz=dt.UTC).replace(microsecond=0)
    return when


def patch_decisions(specfile: SpecFile, lk: Lock) -> list[Decision]:
    """What the catalogue says about each resolved wheel it has a patch for; PatchError for an unchecked
    version unless the spec allows it (called before fetching, and again for the manifest)."""
    wheels = lk.python.wheels if lk.python is not None else []
    decisions = classify(spec_catalog(specfile), {w.name: w.version for w in wheels})
    refuse_unchecked(decisions, specfile.spec.patches.allow_unchecked)
    return decisions


def patch_files(specfile: SpecFile, lk: Lock, cache: Cache) -> tuple[list[FileEntry], list[PatchEntry] | None]:
    """The ``patches/`` files for the resolved wheels (docs/patches.md); None when no patch concerns them."""
    wheels = lk.python.wheels if lk.python is not None else []
    decisions = patch_decisions(specfile, lk)
    if not decisions:
        return [], None
    for d in decisions:
        log.info("patches: %s for %s %s: %s%s", d.id, d.distribution, d.version, STATUS_WORDS[d.status],
                 " (allowed by patches.allow_unchecked; not applied)" if d.status == "unchecked" else "")
    files, info = bundle_patches(decisions, cache, {canonicalize_name(w.name): w.sha256 for w in wheels})
    return files, list(info.entries)


def make_manifest(specfile: SpecFile, lk: Lock, cache: Cache) -> Manifest:
    """The manifest of everything the lock names. Every blob must already be in the cache."""
    when = _when()
    files: list[FileEntry] = []
    packages: list[PackageEntry] = []
    if lk.python is not None:
        for w in lk.python.wheels:
            size = w.size if w.size is not None else cache.path(w.sha256).stat().st_size
            files.append(FileEntry(path=f"wheels/{w.filename}", sha256=w.sha256, size=size))
            packages.append(PackageEntry(name=w.name, version=w.version, file=f"wheels/{w.filename}"))
    models: list[ModelEntry] = []
    if lk.models is not None:
        for m in lk.models.models:
            root = f"models/{m.name}"
            files += [FileEntry(path=f"{root}/{f.path}", sha256=f.sha256, size=f.size) for f in m.files]
            models.append(ModelEntry(name=m.name, source=m.source, repo=m.repo or m.path, revision=m.revision,
                                     commit=m.commit, root=root, files=len(m.files),
                                     size=sum(f.size for f in m.files)))
    pfiles, patches = patch_files(specfile, lk, cache)
    files += pfiles
    controller = None
    if specfile.spec.controller is not None:
        cfiles, controller = controller_files(specfile.spec, lk.controller, cache)
        files += cfiles
    debs = None
    if lk.apt is not None:
        b = specfile.spec.bundle
        afiles, debs = apt_repo_files(lk.apt, cache, label=b.name, version=b.version, when=when)
        files += afiles
    spec_raw = specfile.path.read_bytes()
    lock_raw = lk.dumps().encode()
    for logical, raw in (("meta/models.yaml", spec_raw), ("meta/models.lock", lock_raw)):
        files.append(FileEntry(path=logical, sha256=cache.put_bytes(raw, logical), size=len(raw)))
    spec = specfile.spec
    return Manifest(
        bundle={"name": spec.bundle.name, "version": spec.bundle.version},
        target=spec.target.model_dump(mode="json"),
        provenance=Provenance(
            packager_version=__version__,
            spec_sha256=hashlib.sha256(spec_raw).hexdigest(),
            lock_sha256=hashlib.sha256(lock_raw).hexdigest(),
            created=when.isoformat().replace("+00:00", "Z"),
        ),
        packages=sorted(packages, key=lambda p: p.name),
        models=sorted(models, key=lambda m: m.name),
        files=sorted(files, key=lambda f: f.path),
        controller=controller,
        system_packages=debs,
        patches=patches,
    )


def _built_wheels(specfile: SpecFile, wheels: list[WheelLock], cache: Cache) -> list[WheelLock]:
    """Point wheels the lock built from sdists at a local copy, rebuilding (and checking) any not at hand."""
    from packager.lock.python import find_link
    from packager.lock.sdist import BUILT_SCHEME, rebuild

    out: list[WheelLock] = []
    for w in wheels:
        if w.url.startswith(LOCAL_SCHEME) and not cache.has(w.sha256):
            raise FetchError(f"{w.filename}, built from the project {w.url.removeprefix(LOCAL_SCHEME)}, "
                             "is not in the cache", where=f"python wheels: {w.name}",
                             hint="run `build`, which builds python.local projects before fetching")
        if w.url.startswith(BUILT_SCHEME) and not cache.has(w.sha256):
            py = specfile.spec.python
            path = rebuild(w.name, w.version, w.filename, w.sha256, py=py, out=cache.root / "built-wheels",
                           find_links=[find_link(specfile, f) for f in py.find_links])
            out.append(w.model_copy(update={"url": path.as_uri()}))
        else:
            out.append(w)
    return out


def fetch(specfile: SpecFile, lk: Lock, cache: Cache, *, jobs: int = 8) -> None:
    wheels = [*(lk.python.wheels if lk.python else []), *(lk.controller.wheels if lk.controller else [])]
    wheels = _built_wheels(specfile, wheels, cache)
    if wheels:
        fetch_wheels(wheels, cache, jobs=jobs)
    if lk.models is not None:
        fetch_models(lk.models.models, cache, jobs=jobs, base=specfile.folder)
    if lk.apt is not None:
        fetch_debs(lk.apt.debs, cache, jobs=jobs)


def build(specfile: SpecFile, key: SecretKey, out: Path, cache: Cache, *, relock: bool = False,
          jobs: int = 8, base: Path | None = None, base_keys: list[PublicKey] | None = None) -> Path:
    """Build the bundle; with ``base`` (an earlier bundle or its manifest.json) a delta bundle that carries only
    the blobs the base lacks (docs/delta.md). ``base_keys`` check the base's signature."""
    prev = None
    if base is not None:  # a wrong base fails before anything is resolved or downloaded
        prev = load_base(base, base_keys)
        check_base_fits(prev, specfile.spec.bundle.name, specfile.spec.bundle.version)
        if prev.signed_by is None:
            log.warning("build: base %s: signature not checked (pass --base-pubkey KEY to check it); a wrong "
                        "base only makes the delta fail to unpack with it", base)
    lk = lock(specfile, cache, relock=relock)
    patch_decisions(specfile, lk)  # an unchecked version stops the build before it downloads anything
    fetch(specfile, lk, cache, jobs=jobs)
    manifest = make_manifest(specfile, lk, cache)
    if prev is not None:
        manifest = make_delta(manifest, prev)
    path = assemble(manifest, cache, out, key)
    log.info("build: wrote %s (%d files, %d blobs)", path, len(manifest.files), len(manifest.blobs()))
    if prev is not None:
        carried = manifest.carried()
        log.info("build: delta over %s %s: carries %d of %d blobs (%d of %d bytes)", prev.manifest.name,
                 prev.manifest.version, len(carried), len(manifest.blobs()), sum(carried.values()),
                 sum(manifest.blobs().values()))
    return path
