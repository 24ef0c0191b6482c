"""Model files into the content-addressed cache, downloaded through the hubs' own clients, pinned to the lock.

Every file the lock names is wanted under its sha256 in the cache. Files already there are skipped; the rest
are downloaded with ``huggingface_hub`` / ``modelscope`` pinned to the locked commit (or revision), into a
scratch folder inside the cache's ``tmp/``. The clients write ``*.incomplete`` files and rename them when done;
we then hash the result and only a file whose digest and size match the lock is renamed to its final,
content-addressed name. An interrupted or tampered download therefore never leaves a blob in the cache, and
the scratch folder is removed whatever happens.

The helpers here (endpoints, downloads, error translation) are shared with :mod:`packager.lock.models`.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from tqdm import tqdm

from packager.cache import Cache
from packager.errors import AirlockError, FetchError, HubError
from packager.hashing import sha256_file
from packager.lock import FileLock, ModelLock
from packager.progress import Progress, human_size

log = logging.getLogger("packager")

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_TOKEN_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "MODELSCOPE_API_TOKEN")


# ---------------------------------------------------------------------------------------------------------
# Endpoints and credentials (read per call: the clients cache theirs at import time)
# ---------------------------------------------------------------------------------------------------------
def hf_endpoint() -> str:
    """The Hugging Face endpoint: ``$HF_ENDPOINT`` (a mirror) or the client's default."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def ms_endpoint() -> str | None:
    """``$MODELSCOPE_ENDPOINT``, or None to let the client pick modelscope.cn / modelscope.ai itself."""
    value = os.environ.get("MODELSCOPE_ENDPOINT", "").strip()
    return value.rstrip("/") or None


def ms_token() -> str | None:
    """``$MODELSCOPE_API_TOKEN``; None falls back to the credentials ``modelscope login`` stored."""
    return os.environ.get("MODELSCOPE_API_TOKEN") or None


def is_commit(revision: str | None) -> bool:
    """A full git commit id: the only revision that cannot move."""
    return revision is not None and _HEX40.match(revision) is not None


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and _HEX64.match(value) is not None


# ---------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------
def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level failures of every HTTP stack the clients may use (httpx2 today, httpx in 1.x)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError, requests.ConnectionError, requests.Timeout]
    for name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        errors.append(module.TransportError)
    return tuple(errors)


_TRANSPORT = _transport_errors()


def _scrub(text: str) -> str:
    """Remove any token we know of from a message (client errors can echo requests)."""
    for var in _TOKEN_VARS:
        token = os.environ.get(var)
        if token and len(token) >= 4:
            text = text.replace(token, "***")
    return text


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return _scrub(lines[0] if lines else type(exc).__name__)[:300]


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return status
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def hub_error(
    exc: BaseException,
    *,
    source: str,
    repo: str,
    revision: str | None,
    where: str,
    path: str | None = None,
    cls: type[AirlockError] = HubError,
) -> AirlockError:
    """Turn a hub client's exception into ours: what failed, about which repo, and how to fix it."""
    if source == "huggingface":
        return _hf_error(exc, repo=repo, revision=revision, where=where, path=path, cls=cls)
    return _ms_error(exc, repo=repo, revision=revision, where=where, path=path, cls=cls)


def _unreachable(endpoint: str, exc: BaseException, where: str, cls: type[AirlockError], var: str) -> AirlockError:
    return cls(
        f"cannot reach the hub at {endpoint}: {_first_line(exc)}",
        where=where,
        hint=f"check the network and proxy settings, or point {var} at a reachable mirror",
    )


def _hf_error(exc: BaseException, *, repo: str, revision: str | None, where: str, path: str | None,
              cls: type[AirlockError]) -> AirlockError:
    from huggingface_hub import errors as hf

    endpoint = hf_endpoint()
    auth_hint = "set HF_TOKEN to a token with read access to this repo (or run `hf auth login`)"
    if isinstance(exc, hf.LocalEntryNotFoundError) and exc.__cause__ is not None:
        exc = exc.__cause__  # hf_hub_download hides the real failure of its metadata request here
    status = _status(exc)
    hint: str | None = None
    if isinstance(exc, hf.OfflineModeIsEnabled):
        message = "huggingface_hub is in offline mode"
        hint = "unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) so the packager can reach the hub"
    elif isinstance(exc, hf.GatedRepoError):
        message = f"huggingface repo {repo} is gated: your account has no access"
        hint = "accept the model's terms on the hub, then " + auth_hint
    elif isinstance(exc, hf.RepositoryNotFoundError):
        message = f"huggingface repo {repo} not found on {endpoint}"
        hint = "check the repo id; a private repo also answers 'not found' without a token: " + auth_hint
    elif isinstance(exc, hf.RevisionNotFoundError):
        message = f"revision {revision!r} not found in huggingface repo {repo}"
        hint = "use an existing branch, tag or full 40-hex commit id"
    elif isinstance(exc, hf.RemoteEntryNotFoundError):
        message = f"file {path!r} not found in huggingface repo {repo} at {revision}"
        hint = "the hub no longer has what the lock names; run with --relock"
    elif status in (401, 403):
        message = f"huggingface repo {repo}: access denied (HTTP {status})"
        hint = auth_hint
    elif isinstance(exc, _TRANSPORT):
        return _unreachable(endpoint, exc, where, cls, "HF_ENDPOINT")
    elif isinstance(exc, hf.HfHubHTTPError):
        message = f"huggingface repo {repo}: the hub answered HTTP {status}: {_first_line(exc)}"
        hint = "retry later; if it persists check HF_ENDPOINT"
    else:
        message = f"huggingface repo {repo}: {type(exc).__name__}: {_first_line(exc)}"
    return cls(message, where=where, hint=hint)


def _ms_error(exc: BaseException, *, repo: str, revision: str | None, where: str, path: str | None,
              cls: type[AirlockError]) -> AirlockError:
    from modelscope_hub import errors as ms

    endpoint = ms_endpoint() or "modelscope.cn"
    auth_hint = "set MODELSCOPE_API_TOKEN or run `modelscope login`"
    if isinstance(exc, requests.HTTPError) and isinstance(exc.__cause__, ms.HubError):
        exc = exc.__cause__  # model_file_download re-wraps hub errors as requests.HTTPError
    if isinstance(exc, ms.NotExistError):
        what = f"file {path!r} at {revision}" if path else f"repo {repo}@{revision}"
        return cls(f"modelscope {what} not found on {endpoint}: {_first_line(exc)}", where=where,
                   hint="check the repo id and revision; a private repo also needs a token: " + auth_hint)
    status = _status(exc)
    if isinstance(exc, (ms.AuthenticationError, ms.PermissionDeniedError)) or status in (401, 403):
        return cls(f"modelscope repo {repo}: access denied", where=where, hint=auth_hint)
    if isinstance(exc, (ms.NetworkError, *_TRANSPORT)):
        return _unreachable(endpoint, exc, where, cls, "MODELSCOPE_ENDPOINT")
    return cls(f"modelscope repo {repo}: {type(exc).__name__}: {_first_line(exc)}", where=where)


# ---------------------------------------------------------------------------------------------------------
# Downloads
# ---------------------------------------------------------------------------------------------------------
@contextmanager
def scratch_dir(cache: Cache, prefix: str) -> Iterator[Path]:
    """A private folder in the cache's tmp/ (same filesystem: verified files are renamed, never copied)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=cache.root / "tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def progress_bar_class(progress: Progress) -> type[tqdm[Any]]:
    """A silent tqdm class that forwards the client's byte counts to our :class:`Progress`."""

    class _Forward(tqdm):  # type: ignore[type-arg]  # generic only in the stubs
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            progress.update(int(n or 0))
            return None

    return _Forward


def download_hf(repo: str, path: str, commit: str, workdir: Path, bar: type[tqdm[Any]] | None = None) -> Path:
    """Download one file of ``repo`` at ``commit`` through ``hf_hub_download``; returns the real file."""
    from huggingface_hub import hf_hub_download

    pointer = hf_hub_download(repo, path, revision=commit, cache_dir=workdir, endpoint=hf_endpoint(),
                              tqdm_class=bar)
    return Path(pointer).resolve()  # the snapshot entry is a symlink to the blob


def download_ms(repo: str, path: str, revision: str, workdir: Path) -> Path:
    """Download one file of ``repo`` at ``revision`` through modelscope's ``model_file_download``."""
    from modelscope.hub.file_download import model_file_download

    result = model_file_download(repo, path, revision=revision, cache_dir=str(workdir), endpoint=ms_endpoint(),
                                 token=ms_token())
    return Path(str(result)).resolve()


def adopt(cache: Cache, src: Path, *, expected_sha256: str | None = None, expected_size: int | None = None,
          what: str) -> tuple[str, int]:
    """Hash a finished download and rename it into the cache; a mismatch deletes it and raises FetchError."""
    digest, size = sha256_file(src)
    if (expected_sha256 is not None and digest != expected_sha256) or (
        expected_size is not None and size != expected_size
    ):
        src.unlink(missing_ok=True)
        raise FetchError(
            f"downloaded bytes do not match the lock: expected sha256 {expected_sha256} "
            f"({expected_size} bytes), got {digest} ({size} bytes)",
            where=what,
            hint="the hub served other content than it listed; retry, and if it persists the file changed "
            "upstream: review and run with --relock",
        )
    if cache.has(digest, size):
        src.unlink(missing_ok=True)
    else:
        cache.commit(src, digest)
    return digest, size


# ---------------------------------------------------------------------------------------------------------
# fetch
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Job:
    index: int
    model: ModelLock
    file: FileLock
    base: Path | None = None

    @property
    def where(self) -> str:
        m = self.model
        origin = f"local {m.path}" if m.source == "local" else f"{m.source} {m.repo}@{m.commit or m.revision}"
        return f"models[{self.index}] ({m.name}) {origin}: {self.file.path}"


def _fetch_one(job: _Job, cache: Cache, workdir: Path, progress: Progress, bar: type[tqdm[Any]]) -> None:
    m, f = job.model, job.file
    if m.source == "local":
        src = (job.base or Path.cwd()) / (m.path or "") / f.path
        if not src.is_file():
            raise FetchError("file is gone from the local model folder since locking", where=job.where,
                             hint="restore it, or run with --relock to lock the folder as it is now")
        cache.ingest(src, expected_sha256=f.sha256, what=job.where)
        progress.update(f.size)
        return
    repo = m.repo or ""
    pin = m.commit or m.revision or ""
    try:
        if m.source == "huggingface":
            got = download_hf(repo, f.path, pin, workdir, bar)
        else:
            got = download_ms(repo, f.path, pin, workdir)
            progress.update(f.size)
    except AirlockError:
        raise
    except Exception as exc:
        raise hub_error(exc, source=m.source, repo=repo, revision=pin, where=job.where, path=f.path,
                        cls=FetchError) from exc
    adopt(cache, got, expected_sha256=f.sha256, expected_size=f.size, what=job.where)


def fetch_models(models: list[ModelLock], cache: Cache, jobs: int = 8, *, base: Path | None = None) -> None:
    """Make sure every file of every locked model is in ``cache`` under its sha256, downloading what is missing.

    ``base`` is the spec's folder: relative local model paths in the lock resolve against it.

    Downloads run in parallel, largest first. A file whose bytes do not match the lock raises FetchError and
    never enters the cache; the first failure cancels the downloads not yet started.
    """
    todo: dict[str, _Job] = {}
    for i, model in enumerate(models):
        for f in model.files:
            if f.sha256 not in todo and not cache.has(f.sha256, f.size):
                todo[f.sha256] = _Job(i, model, f, base)
    if not todo:
        log.info("models: all %d file(s) already in the cache", sum(len(m.files) for m in models))
        return
    order = sorted(todo.values(), key=lambda j: j.file.size, reverse=True)
    total = sum(j.file.size for j in order)
    log.info("models: fetching %d file(s), %s", len(order), human_size(total))
    with scratch_dir(cache, "models.") as workdir, Progress("models", total=total) as progress:
        bar = progress_bar_class(progress)
        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="fetch-model") as pool:
            futures: list[Future[None]] = [pool.submit(_fetch_one, j, cache, workdir, progress, bar) for j in order]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [fut for fut in futures if fut in done and fut.exception() is not None]
            if failed:
                for fut in futures:
                    fut.cancel()
                error = failed[0].exception()
                assert error is not None
                raise error
