"""Lock the spec's models: every revision pinned, every file listed with its size and sha256.

* Hugging Face: the revision (branch, tag or commit) resolves to its commit id; the tree at that commit lists
  the files. Large files are LFS and the hub gives their sha256; plain git files only have a git (sha1) id, so
  they are downloaded at the commit, hashed and put into the cache on the way (they are small: configs,
  tokenizers).
* ModelScope: the revision is checked against the repo's branches and tags, and the file listing gives size
  and sha256 of every file.
* Local folders: every file (dotfiles and dot-folders skipped) is hashed and copied into the cache right
  away, because the folder may change before the bundle is built.

``include`` / ``exclude`` are shell globs matched against the whole relative path (``*`` also crosses ``/``,
so ``*.md`` excludes ``docs/x.md`` too).

With a previous lock, nothing is resolved again that cannot have changed: an entry whose spec is unchanged and
whose revision already was a full commit id is reused as is, and a branch that still points at the locked
commit reuses the hashes of files it already had. Local models are always hashed again.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from packager.cache import Cache
from packager.errors import AirlockError, HubError, LockError
from packager.fetch.models import (
    adopt,
    download_hf,
    download_ms,
    hf_endpoint,
    hub_error,
    is_commit,
    is_sha256,
    ms_endpoint,
    ms_token,
    progress_bar_class,
    scratch_dir,
)
from packager.hashing import hash_many
from packager.lock import FileLock, ModelLock, ModelsLock
from packager.progress import Progress
from packager.spec import HubModel, LocalModel, SpecFile

if TYPE_CHECKING:
    from huggingface_hub.hf_api import RepoFile

log = logging.getLogger("packager")

# Attempts the ModelScope API client makes on connection failures and 5xx answers (its own default).
MODELSCOPE_RETRIES = 5
DOWNLOAD_JOBS = 8


def lock_models(specfile: SpecFile, cache: Cache, previous: ModelsLock | None = None) -> ModelsLock:
    """Resolve every model of the spec to pinned files. Raises HubError / LockError naming the model."""
    spec = specfile.spec
    digest = spec.section_digest("models")
    same_spec = previous is not None and previous.spec_digest == digest
    before = {m.name: m for m in previous.models} if previous is not None else {}
    locked: list[ModelLock] = []
    for i, model in enumerate(spec.models):
        where = f"models[{i}] ({model.name})"
        if isinstance(model, LocalModel):
            locked.append(_lock_local(model, specfile, cache, where))
            continue
        prev = before.get(model.name)
        if prev is not None and (prev.source, prev.repo, prev.revision) != (model.source, model.repo,
                                                                            model.ref):
            prev = None
        if prev is not None and same_spec and is_commit(model.ref) and prev.commit == model.ref:
            log.info("%s: unchanged, pinned to %s: reusing the lock", where, model.ref)
            locked.append(prev)
        elif model.source == "huggingface":
            locked.append(_lock_hf(model, cache, prev, f"{where} huggingface:{model.repo}"))
        else:
            locked.append(_lock_ms(model, cache, prev, f"{where} modelscope:{model.repo}"))
    return ModelsLock(spec_digest=digest, models=locked)


# ---------------------------------------------------------------------------------------------------------
# shared
# ---------------------------------------------------------------------------------------------------------
def _selected(path: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in include) and not any(
        fnmatch.fnmatchcase(path, p) for p in exclude
    )


def _check_path(path: str, where: str) -> str:
    """Refuse paths that could escape the model folder when the bundle is unpacked."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        raise HubError(f"the hub listed an unsafe file path {path!r}", where=where,
                       hint="this repo cannot be bundled; report it to its owner")
    return path


def _nothing_selected(model: HubModel | LocalModel, available: Sequence[str], where: str) -> LockError:
    shown = ", ".join(sorted(available)[:8]) + (" ..." if len(available) > 8 else "")
    return LockError(
        f"no file matches include {model.include} / exclude {model.exclude}",
        where=where,
        hint=f"the model has: {shown}" if available else "the model has no files at all",
    )


def _sorted(files: list[FileLock]) -> list[FileLock]:
    return sorted(files, key=lambda f: f.path)


# ---------------------------------------------------------------------------------------------------------
# Hugging Face
# ---------------------------------------------------------------------------------------------------------
def _lock_hf(model: HubModel, cache: Cache, prev: ModelLock | None, where: str) -> ModelLock:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(endpoint=hf_endpoint())
    commit: str | None = None
    try:
        commit = api.model_info(model.repo, revision=model.ref, timeout=30).sha
        if commit is None or not is_commit(commit):
            raise HubError(f"the hub gave no commit id for revision {model.ref!r}", where=where,
                           hint="check that HF_ENDPOINT points at a Hugging Face-compatible hub")
        tree = [e for e in api.list_repo_tree(model.repo, revision=commit, recursive=True) if isinstance(e, RepoFile)]
    except AirlockError:
        raise
    except Exception as exc:
        raise hub_error(exc, source="huggingface", repo=model.repo, revision=commit or model.ref,
                        where=where) from exc

    entries = [e for e in tree if _selected(e.path, model.include, model.exclude)]
    if not entries:
        raise _nothing_selected(model, [e.path for e in tree], where)
    # same commit: same bytes at the same path, so earlier hashes stay valid
    known = {f.path: f for f in prev.files} if prev is not None and prev.commit == commit else {}
    files: list[FileLock] = []
    plain: dict[str, list[RepoFile]] = {}  # git blob id -> files with that content, still to hash
    for e in entries:
        path = _check_path(e.path, where)
        if e.lfs is not None and is_sha256(e.lfs.sha256):
            files.append(FileLock(path=path, sha256=e.lfs.sha256, size=e.lfs.size))
        elif path in known and known[path].size == e.size:
            files.append(known[path])
        else:
            plain.setdefault(e.blob_id, []).append(e)
    if plain:
        files += _hash_hf_files(model, commit, plain, cache, where)
    log.info("%s: %s -> %s, %d file(s)", where, model.ref, commit, len(files))
    return ModelLock(name=model.name, source="huggingface", repo=model.repo, revision=model.ref,
                     commit=commit, files=_sorted(files))


def _hash_hf_files(model: HubModel, commit: str, plain: dict[str, list[RepoFile]], cache: Cache,
                   where: str) -> list[FileLock]:
    """Download files the hub gives no sha256 for (one per distinct content), hash them, keep them cached."""
    total = sum(group[0].size for group in plain.values())
    with scratch_dir(cache, "lock-hf.") as workdir, Progress(f"{model.name}: files to hash", total=total) as progress:
        bar = progress_bar_class(progress)

        def one(group: list[RepoFile]) -> list[FileLock]:
            first = group[0]
            try:
                got = download_hf(model.repo, first.path, commit, workdir, bar)
            except Exception as exc:
                raise hub_error(exc, source="huggingface", repo=model.repo, revision=commit, path=first.path,
                                where=where) from exc
            digest, size = adopt(cache, got, expected_size=first.size, what=f"{where}: {first.path}")
            return [FileLock(path=e.path, sha256=digest, size=size) for e in group]

        with ThreadPoolExecutor(max_workers=DOWNLOAD_JOBS, thread_name_prefix="lock-hf") as pool:
            return [f for group in pool.map(one, plain.values()) for f in group]


# ---------------------------------------------------------------------------------------------------------
# ModelScope
# ---------------------------------------------------------------------------------------------------------
def _lock_ms(model: HubModel, cache: Cache, prev: ModelLock | None, where: str) -> ModelLock:
    from modelscope.hub.api import HubApi

    # ModelScope names revisions by branch and tag only: neither its revisions API nor its file listing gives
    # the commit a branch or tag points at. So ``commit`` records the revision itself: a full commit id when
    # the spec gave one (immutable), otherwise the tag or branch name. Tags are ModelScope's published
    # versions and are not moved in practice; a branch can move. What keeps the bundle immutable either way
    # is the per-file sha256 recorded here: fetch verifies every byte against it, so a moved branch or tag
    # makes fetch fail (hint: --relock) instead of delivering other content.
    api = HubApi(endpoint=ms_endpoint(), token=ms_token(), max_retries=MODELSCOPE_RETRIES)
    revision = model.ref
    try:
        branches, tags = api.get_model_branches_and_tags_details(model.repo)
        names = [str(d.get("Revision")) for d in [*branches, *tags]]
        if revision not in names and not is_commit(revision):
            raise HubError(f"revision {revision!r} not found in modelscope repo {model.repo}", where=where,
                           hint=f"known branches and tags: {', '.join(names) or 'none'}; or give a full commit id")
        listing = api.list_repo_files(model.repo, "model", revision=revision, recursive=True)
    except AirlockError:
        raise
    except Exception as exc:
        raise hub_error(exc, source="modelscope", repo=model.repo, revision=revision, where=where) from exc

    blobs = [e for e in listing if getattr(e, "type", "blob") != "tree"]
    entries = [e for e in blobs if _selected(str(e.path), model.include, model.exclude)]
    if not entries:
        raise _nothing_selected(model, [str(e.path) for e in blobs], where)
    known = {f.path: f for f in prev.files} if prev is not None and is_commit(revision) else {}
    files: list[FileLock] = []
    unhashed: list[tuple[str, int]] = []
    for e in entries:
        path = _check_path(str(e.path), where)
        size = int(e.size or 0)
        sha = str(e.sha256 or "").lower()
        if is_sha256(sha):
            files.append(FileLock(path=path, sha256=sha, size=size))
        elif path in known:
            files.append(known[path])
        else:
            unhashed.append((path, size))
    if unhashed:  # the listing normally carries Sha256 for every file; hash the odd one out ourselves
        with scratch_dir(cache, "lock-ms.") as workdir:
            for path, size in unhashed:
                try:
                    got = download_ms(model.repo, path, revision, workdir)
                except Exception as exc:
                    raise hub_error(exc, source="modelscope", repo=model.repo, revision=revision, path=path,
                                    where=where) from exc
                digest, real = adopt(cache, got, expected_size=size or None, what=f"{where}: {path}")
                files.append(FileLock(path=path, sha256=digest, size=real))
    log.info("%s: %s, %d file(s)", where, revision, len(files))
    return ModelLock(name=model.name, source="modelscope", repo=model.repo, revision=model.ref,
                     commit=revision, files=_sorted(files))


# ---------------------------------------------------------------------------------------------------------
# Local folders
# ---------------------------------------------------------------------------------------------------------
def _walk(root: Path) -> list[tuple[str, Path]]:
    """Regular files under ``root`` as (relative POSIX path, path), skipping dotfiles and dot-folders."""
    found: list[tuple[str, Path]] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            p = Path(folder) / name
            if not name.startswith(".") and p.is_file():
                found.append((p.relative_to(root).as_posix(), p))
    return found


def _lock_local(model: LocalModel, specfile: SpecFile, cache: Cache, where: str) -> ModelLock:
    root = specfile.resolve(model.path)
    if not root.is_dir():
        raise LockError(f"local model folder {root} does not exist or is not a folder", where=where,
                        hint="fix models[].path (relative paths start at the spec's folder)")
    walked = _walk(root)
    chosen = [(rel, p) for rel, p in walked if _selected(rel, model.include, model.exclude)]
    if not chosen:
        raise _nothing_selected(model, [rel for rel, _ in walked], where)
    total = sum(p.stat().st_size for _, p in chosen)
    with Progress(f"hashing {model.name}", total=total) as progress:
        hashed = hash_many([p for _, p in chosen], on_done=lambda _p, n: progress.update(n))
    files: list[FileLock] = []
    for rel, p in chosen:
        result = hashed[p]
        if isinstance(result, OSError):
            raise LockError(f"cannot read {rel}: {result.strerror}", where=where)
        digest, size = result
        if not cache.has(digest, size):
            # into the cache now: the folder may change before the bundle is built
            cache.ingest(p, expected_sha256=digest, what=f"{where}: {rel}")
        files.append(FileLock(path=rel, sha256=digest, size=size))
    log.info("%s: local %s, %d file(s)", where, root, len(files))
    # recorded relative to the spec's folder when inside it, so the lock is the same on every checkout
    recorded = root.relative_to(specfile.folder).as_posix() if root.is_relative_to(specfile.folder) else str(root)
    return ModelLock(name=model.name, source="local", path=recorded, files=_sorted(files))
