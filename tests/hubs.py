"""Model hubs on 127.0.0.1 for tests: a Hugging Face-compatible and a ModelScope-compatible server.

Both serve in-memory repositories to the real ``huggingface_hub`` and ``modelscope`` clients, speaking the
endpoints those clients call (read from their source, not guessed):

* Hugging Face: ``GET /api/models/{id}[/revision/{rev}]`` (sha + siblings), ``GET /api/models/{id}/tree/{rev}``
  (git oid, size, ``lfs.oid`` = sha256 for large files), ``HEAD``/``GET /{id}/resolve/{rev}/{path}`` with
  ``X-Repo-Commit``, ``ETag``, ``Content-Length`` and ``Range``. Errors carry ``X-Error-Code``
  (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``), which the client turns into its typed errors.
* ModelScope: ``GET /api/v1/models/{id}/revisions``, ``GET /api/v1/models/{id}/repo/files?Revision=..``
  (Size and Sha256 per file), ``GET /api/v1/models/{id}/repo?Revision=..&FilePath=..`` (bytes, ``Range``);
  ``/api/v1/repos/internalAccelerationInfo`` answers 404 like any host outside Alibaba Cloud.

Repositories are given as ``{repo_id: {revision: {path: bytes}}}``. A revision key that is 40 hex digits is a
commit; any other key is a branch (or a tag, see ``tags=``) pointing at a commit id derived from the content.
Every request lands in ``hub.log``, so a test can assert what was (not) fetched.

Use the ``hf_hub`` / ``ms_hub`` fixtures: they start a server, point the clients at it (environment *and* the
constants the clients read at import time) and give the clients empty homes and caches under ``tmp_path``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

Files = dict[str, bytes]
_HEX40 = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Request:
    """One request as the server saw it (path unquoted, header names lower-case)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class _Repo:
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit
    tags: set[str] = field(default_factory=set)
    commits: dict[str, Files] = field(default_factory=dict)
    created: dict[str, int] = field(default_factory=dict)  # ref -> unix time

    def resolve(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None


def _commit_id(repo_id: str, name: str, files: Mapping[str, bytes]) -> str:
    h = hashlib.sha1(f"{repo_id}\0{name}\0".encode(), usedforsecurity=False)
    for path in sorted(files):
        h.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
    return h.hexdigest()


def git_blob_id(data: bytes) -> str:
    """The git object id of a blob (what the Hugging Face tree reports as ``oid`` for plain files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hub: _Hub

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients dropping keep-alive connections
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Shared plumbing; the hubs implement ``route``."""

    protocol_version = "HTTP/1.1"
    timeout = 10
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        segments = [unquote(s) for s in split.path.split("/")[1:]]
        req = Request(self.command, "/" + "/".join(segments), query, {k.lower(): v for k, v in self.headers.items()})
        hub = self.server.hub
        hub._record(req)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
            hub.route(self, req, segments)

    # -- responses -------------------------------------------------------------------------------------
    def send(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None,
             content_type: str = "application/octet-stream") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def send_json(self, status: int, data: Any, headers: Mapping[str, str] | None = None) -> None:
        self.send(status, json.dumps(data).encode(), headers, "application/json")

    def send_file(self, data: bytes, headers: Mapping[str, str], drop_after: int | None = None) -> None:
        """Serve bytes with Range support (``bytes=a-`` and ``bytes=a-b``).

        ``drop_after``: announce the whole file but close the connection after that many bytes.
        """
        total = len(data)
        rng = self.headers.get("Range")
        extra = {"Accept-Ranges": "bytes", **headers}
        if drop_after is not None and not rng and self.command == "GET":
            self.send_response(200)
            for k, v in {"Content-Type": "application/octet-stream", "Content-Length": str(total), **extra}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data[:drop_after])
            self.wfile.flush()
            self.close_connection = True
            return
        if rng:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            start = int(m.group(1)) if m else total
            end = min(int(m.group(2)), total - 1) if m and m.group(2) else total - 1
            if not m or start >= total or end < start:
                self.send(416, b"", {**extra, "Content-Range": f"bytes */{total}"})
                return
            self.send(206, data[start : end + 1], {**extra, "Content-Range": f"bytes {start}-{end}/{total}"})
            return
        self.send(200, data, extra)


class _Hub:
    """An in-memory repository store behind an HTTP server on 127.0.0.1."""

    handler: ClassVar[type[_Handler]]

    def __init__(self, repos: Mapping[str, Mapping[str, Files]] | None = None, *, tags: Mapping[str, set[str]] | None
                 = None, token: str | None = None) -> None:
        self.repos: dict[str, _Repo] = {}
        self.log: list[Request] = []
        self.token = token  # when set, every request must carry it
        self.tampered: dict[tuple[str, str], bytes] = {}
        self.drops: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        for repo_id, revisions in (repos or {}).items():
            self.add_repo(repo_id, revisions, tags=(tags or {}).get(repo_id, set()))
        self._server = _Server(("127.0.0.1", 0), self.handler)
        self._server.hub = self
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{type(self).__name__}:{self.port}", daemon=True)
        self._thread.start()

    # -- content ---------------------------------------------------------------------------------------
    def add_repo(self, repo_id: str, revisions: Mapping[str, Files], *, tags: set[str] | None = None) -> None:
        repo = self.repos.setdefault(repo_id, _Repo())
        for name, files in revisions.items():
            if _HEX40.match(name):
                repo.commits[name] = dict(files)
            else:
                self.push(repo_id, name, files, tag=name in (tags or set()))

    def push(self, repo_id: str, ref: str, files: Files, *, tag: bool = False) -> str:
        """Point branch (or tag) ``ref`` at a new commit holding ``files``; older commits stay reachable."""
        repo = self.repos.setdefault(repo_id, _Repo())
        commit = _commit_id(repo_id, ref + str(len(repo.commits)), files)
        with self._lock:
            repo.commits[commit] = dict(files)
            repo.refs[ref] = commit
            repo.created[ref] = int(time.time())
            if tag:
                repo.tags.add(ref)
        return commit

    def commit_of(self, repo_id: str, revision: str) -> str:
        commit = self.repos[repo_id].resolve(revision)
        assert commit is not None, f"{repo_id}@{revision} does not exist"
        return commit

    def tamper(self, repo_id: str, path: str, data: bytes) -> None:
        """Serve other bytes for ``path`` from now on, while listings keep announcing the original."""
        self.tampered[(repo_id, path)] = data

    def drop_once(self, repo_id: str, path: str, after: int) -> None:
        """The next download of ``path`` breaks off after ``after`` bytes (a dropped connection)."""
        self.drops[(repo_id, path)] = after

    def content(self, repo_id: str, path: str, files: Files) -> bytes:
        return self.tampered.get((repo_id, path), files[path])

    def take_drop(self, repo_id: str, path: str, req: Request) -> int | None:
        if req.method != "GET" or "range" in req.headers:
            return None
        with self._lock:
            return self.drops.pop((repo_id, path), None)

    # -- log -------------------------------------------------------------------------------------------
    def _record(self, req: Request) -> None:
        with self._lock:
            self.log.append(req)

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()

    def downloads(self) -> list[Request]:
        """File-content GETs (not metadata, not HEAD)."""
        raise NotImplementedError

    def route(self, h: _Handler, req: Request, segments: list[str]) -> None:
        raise NotImplementedError

    def authorized(self, req: Request) -> bool:
        if self.token is None:
            return True
        return req.headers.get("authorization") == f"Bearer {self.token}"

    def __enter__(self) -> _Hub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# ---------------------------------------------------------------------------------------------------------
# Hugging Face
# ---------------------------------------------------------------------------------------------------------
class _HFHandler(_Handler):
    pass


class HFHub(_Hub):
    """Hugging Face-compatible hub. Files of ``lfs_threshold`` bytes or more are LFS (sha256 in the tree)."""

    handler = _HFHandler

    def __init__(self, repos: Mapping[str, Mapping[str, Files]] | None = None, *, lfs_threshold: int = 1024,
                 tags: Mapping[str, set[str]] | None = None, token: str | None = None) -> None:
        self.lfs_threshold = lfs_threshold
        super().__init__(repos, tags=tags, token=token)

    def is_lfs(self, data: bytes) -> bool:
        return len(data) >= self.lfs_threshold

    def downloads(self) -> list[Request]:
        return [r for r in self.log if r.method == "GET" and "/resolve/" in r.path]

    def _error(self, h: _Handler, status: int, code: str | None, message: str,
               commit: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        if commit:
            headers["X-Repo-Commit"] = commit
        h.send_json(status, {"error": message}, headers)

    def route(self, h: _Handler, req: Request, segments: list[str]) -> None:
        if not self.authorized(req):
            if "authorization" in req.headers:
                self._error(h, 401, None, "Invalid credentials in Authorization header")
            else:  # what the Hub answers for a private repo without a token
                self._error(h, 401, "RepoNotFound", "Repository not found")
            return
        if segments[:2] == ["api", "models"] and len(segments) >= 4:
            repo_id = "/".join(segments[2:4])
            rest = segments[4:]
            if not rest and req.method == "GET":
                self._model_info(h, req, repo_id, "main")
            elif len(rest) == 2 and rest[0] == "revision" and req.method == "GET":
                self._model_info(h, req, repo_id, rest[1])
            elif len(rest) >= 2 and rest[0] == "tree" and req.method == "GET":
                self._tree(h, req, repo_id, rest[1], "/".join(rest[2:]))
            else:
                self._error(h, 404, None, "Not Found")
        elif len(segments) >= 5 and segments[2] == "resolve" and req.method in ("GET", "HEAD"):
            self._resolve(h, req, "/".join(segments[:2]), segments[3], "/".join(segments[4:]))
        else:
            self._error(h, 404, None, "Not Found")

    def _lookup(self, h: _Handler, repo_id: str, revision: str) -> tuple[str, Files] | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            self._error(h, 404, "RepoNotFound", "Repository not found")
            return None
        commit = repo.resolve(revision)
        if commit is None:
            self._error(h, 404, "RevisionNotFound", "Invalid rev id: " + revision)
            return None
        return commit, repo.commits[commit]

    def _lfs(self, data: bytes) -> dict[str, Any]:
        return {"oid": sha256(data), "size": len(data), "pointerSize": 134}

    def _model_info(self, h: _Handler, req: Request, repo_id: str, revision: str) -> None:
        found = self._lookup(h, repo_id, revision)
        if found is None:
            return
        commit, files = found
        siblings: list[dict[str, Any]] = []
        for path in sorted(files):
            sib: dict[str, Any] = {"rfilename": path}
            if req.query.get("blobs", "").lower() == "true":
                data = files[path]
                sib.update(size=len(data), blobId=git_blob_id(data))
                if self.is_lfs(data):
                    sib["lfs"] = {"sha256": sha256(data), "size": len(data), "pointerSize": 134}
            siblings.append(sib)
        h.send_json(200, {"_id": uuid.uuid5(uuid.NAMESPACE_URL, repo_id).hex, "id": repo_id, "modelId": repo_id,
                          "sha": commit, "private": self.token is not None, "disabled": False, "gated": False,
                          "tags": [], "siblings": siblings})

    def _tree(self, h: _Handler, req: Request, repo_id: str, revision: str, root: str) -> None:
        found = self._lookup(h, repo_id, revision)
        if found is None:
            return
        _, files = found
        recursive = req.query.get("recursive", "").lower() == "true"
        prefix = root.strip("/") + "/" if root.strip("/") else ""
        if prefix and not any(p.startswith(prefix) for p in files):
            self._error(h, 404, "EntryNotFound", f"{root} does not exist")
            return
        entries: dict[str, dict[str, Any]] = {}
        for path in sorted(files):
            if not path.startswith(prefix):
                continue
            rel = path[len(prefix) :].split("/")
            depth = len(rel) if recursive else 1
            for i in range(1, min(depth, len(rel) - 1) + 1):  # the folders on the way
                folder = prefix + "/".join(rel[:i])
                entries.setdefault(folder, {"type": "directory", "oid": git_blob_id(folder.encode()), "size": 0,
                                            "path": folder})
            if len(rel) == 1 or recursive:
                data = files[path]
                entry: dict[str, Any] = {"type": "file", "oid": git_blob_id(data), "size": len(data), "path": path}
                if self.is_lfs(data):
                    entry["lfs"] = self._lfs(data)
                entries[path] = entry
        h.send_json(200, list(entries.values()))

    def _resolve(self, h: _Handler, req: Request, repo_id: str, revision: str, path: str) -> None:
        found = self._lookup(h, repo_id, revision)
        if found is None:
            return
        commit, files = found
        if path not in files:
            self._error(h, 404, "EntryNotFound", "Entry not found", commit=commit)
            return
        data = files[path]
        headers = {"X-Repo-Commit": commit}
        if self.is_lfs(data):
            headers.update({"ETag": f'"{sha256(data)}"', "X-Linked-Etag": f'"{sha256(data)}"',
                            "X-Linked-Size": str(len(data))})
        else:
            headers["ETag"] = f'"{git_blob_id(data)}"'
        h.send_file(self.content(repo_id, path, files), headers, self.take_drop(repo_id, path, req))


# ---------------------------------------------------------------------------------------------------------
# ModelScope
# ---------------------------------------------------------------------------------------------------------
class _MSHandler(_Handler):
    pass


class MSHub(_Hub):
    """ModelScope-compatible hub (the ``/api/v1`` surface modelscope 1.40 reads and downloads through)."""

    handler = _MSHandler

    def downloads(self) -> list[Request]:
        return [r for r in self.log if r.method == "GET" and r.path.endswith("/repo") and "FilePath" in r.query]

    def authorized(self, req: Request) -> bool:
        if self.token is not None and f"m_session_id={self.token}" in req.headers.get("cookie", ""):
            return True
        return super().authorized(req)

    @staticmethod
    def _envelope(data: Any) -> dict[str, Any]:
        return {"Code": 200, "Data": data, "Message": "success", "RequestId": uuid.uuid4().hex, "Success": True}

    @staticmethod
    def _error(h: _Handler, status: int, code: int, message: str) -> None:
        h.send_json(status, {"Code": code, "Message": message, "RequestId": uuid.uuid4().hex, "Success": False})

    def route(self, h: _Handler, req: Request, segments: list[str]) -> None:
        if segments[:2] != ["api", "v1"]:
            self._error(h, 404, 404, "Not Found")
            return
        if segments[2:] == ["repos", "internalAccelerationInfo"]:
            self._error(h, 404, 404, "Not Found")  # not inside Alibaba Cloud: no acceleration
            return
        if not self.authorized(req):
            self._error(h, 401, 10010103009, "AccessToken is invalid or expired")
            return
        if segments[2] != "models" or len(segments) < 5:
            self._error(h, 404, 404, "Not Found")
            return
        repo_id = "/".join(segments[3:5])
        rest = segments[5:]
        repo = self.repos.get(repo_id)
        if repo is None:
            self._error(h, 404, 10010205001, f"model {repo_id} not exists")
            return
        if not rest and req.method == "GET":
            h.send_json(200, self._envelope({"Path": repo_id.split("/")[0], "Name": repo_id.split("/")[1],
                                              "Id": abs(hash(repo_id)) % 10**6, "Visibility": 5}))
        elif rest == ["revisions"] and req.method == "GET":
            self._revisions(h, repo)
        elif rest == ["repo", "files"] and req.method == "GET":
            self._files(h, req, repo)
        elif rest == ["repo"] and req.method in ("GET", "HEAD"):
            self._download(h, req, repo_id, repo)
        else:
            self._error(h, 404, 404, "Not Found")

    def _revisions(self, h: _Handler, repo: _Repo) -> None:
        def detail(name: str) -> dict[str, Any]:
            return {"Revision": name, "CreatedAt": repo.created.get(name, 0), "CreatedBy": "tester",
                    "Description": ""}

        branches = [detail(r) for r in repo.refs if r not in repo.tags]
        tags = [detail(r) for r in repo.refs if r in repo.tags]
        h.send_json(200, self._envelope({"RevisionMap": {"Branches": branches, "Tags": tags}}))

    def _files(self, h: _Handler, req: Request, repo: _Repo) -> None:
        revision = req.query.get("Revision", "master")
        commit = repo.resolve(revision)
        if commit is None:
            self._error(h, 404, 10010205002, f"revision {revision} not exists")
            return
        files = repo.commits[commit]
        root = req.query.get("Root", "").strip("/")
        prefix = root + "/" if root else ""
        recursive = req.query.get("Recursive", "False").lower() == "true"
        out: dict[str, dict[str, Any]] = {}
        for path in sorted(files):
            if not path.startswith(prefix):
                continue
            rel = path[len(prefix) :].split("/")
            for i in range(1, len(rel)):
                folder = prefix + "/".join(rel[:i])
                out.setdefault(folder, {"Name": rel[i - 1], "Path": folder, "Type": "tree", "Size": 0,
                                        "Sha256": "", "Revision": commit, "IsLFS": False})
                if not recursive:
                    break
            if len(rel) == 1 or recursive:
                data = files[path]
                out[path] = {"Name": rel[-1], "Path": path, "Type": "blob", "Size": len(data),
                             "Sha256": sha256(data), "Revision": commit, "Id": git_blob_id(data),
                             "IsLFS": len(data) >= 1024, "Mode": "33188", "CommitMessage": "upload",
                             "CommittedDate": repo.created.get(revision, 0)}
        h.send_json(200, self._envelope({"Files": list(out.values())}))

    def _download(self, h: _Handler, req: Request, repo_id: str, repo: _Repo) -> None:
        revision = req.query.get("Revision", "master")
        path = req.query.get("FilePath", "")
        commit = repo.resolve(revision)
        if commit is None:
            self._error(h, 404, 10010205002, f"revision {revision} not exists")
            return
        files = repo.commits[commit]
        if path not in files:
            self._error(h, 404, 10010205003, f"file {path} not exists")
            return
        h.send_file(self.content(repo_id, path, files), {}, self.take_drop(repo_id, path, req))


# ---------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------
def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def point_hf_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Point huggingface_hub at ``url``: the variable and the constants it read at import time."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")


def point_ms_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Point modelscope at ``url`` and drop its process-wide config (it caches the endpoint once built)."""
    import modelscope_hub.config

    monkeypatch.setenv("MODELSCOPE_ENDPOINT", url)
    monkeypatch.setattr(modelscope_hub.config, "_default_config", None)


def _isolate_hf(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    from huggingface_hub import constants

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))


def _isolate_ms(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    for var in ("MODELSCOPE_API_TOKEN", "MODELSCOPE_DOMAIN", "MS_CACHE_HOME", "MODELSCOPE_CREDENTIALS_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MODELSCOPE_CACHE", str(home / "cache"))
    monkeypatch.setenv("MODELSCOPE_HOME", str(home / "config"))


@pytest.fixture
def hf_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HFHub]:
    """An empty Hugging Face-compatible hub the real client talks to; add repos with ``add_repo``."""
    hub = HFHub()
    _isolate_hf(monkeypatch, tmp_path / "hf-home")
    point_hf_at(monkeypatch, hub.url)
    monkeypatch.setenv("AIRLOCK_PROGRESS", "0")
    try:
        yield hub
    finally:
        hub.close()


@pytest.fixture
def ms_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[MSHub]:
    """An empty ModelScope-compatible hub the real client talks to; add repos with ``add_repo``."""
    hub = MSHub()
    _isolate_ms(monkeypatch, tmp_path / "ms-home")
    point_ms_at(monkeypatch, hub.url)
    monkeypatch.setenv("AIRLOCK_PROGRESS", "0")
    try:
        yield hub
    finally:
        hub.close()
