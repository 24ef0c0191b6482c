"""Worker processes (``workers > 1``) and the frontend dither override, on the real funasr."""

from __future__ import annotations

import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.asr.app import build_app
from services.asr.engine import ProcessBackend
from tests.asr.conftest import settings_for

URL = "/v1/audio/transcriptions"


def _text(c: TestClient, data: bytes) -> str:
    r = c.post(URL, files={"file": ("a.wav", data)})
    assert r.status_code == 200, r.text
    return str(r.json()["text"])


def test_dither_is_off_by_default(asr_models: tuple[Path, Path], clips: dict[str, bytes], tmp_path: Path) -> None:
    """funasr's frontends default to dither 1.0, which makes the same audio give different text on every call."""
    noisy = tmp_path / "sensevoice-dither"
    shutil.copytree(asr_models[0], noisy)
    cfg = noisy / "config.yaml"
    cfg.write_text(cfg.read_text().replace("dither: 0.0", "dither: 1.0"))
    with TestClient(build_app(settings_for((noisy, asr_models[1])))) as c:
        assert len({_text(c, clips["c0"]) for _ in range(3)}) == 1
    with TestClient(build_app(settings_for((noisy, asr_models[1]), dither=1.0))) as c:
        assert len({_text(c, clips["c0"]) for _ in range(3)}) > 1


@pytest.mark.slow
def test_worker_processes(asr_models: tuple[Path, Path], clips: dict[str, bytes], solo: dict[str, str]) -> None:
    app = build_app(settings_for(asr_models, workers=2))
    with TestClient(app) as c:
        backend = app.state.engine.backend
        assert isinstance(backend, ProcessBackend)
        names = list(clips) * 2
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda n: _text(c, clips[n]), names))
        assert got == [solo[n] for n in names]

        # a worker that dies takes the engine down: 503 on requests and on /health, not a hang
        pid = next(iter(backend.pool._processes))
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = c.post(URL, files={"file": ("a.wav", clips["c0"])})
            if r.status_code == 503:
                break
            time.sleep(0.1)
        assert r.status_code == 503 and r.json()["error"]["code"] == "engine_unavailable"
        assert c.get("/health").status_code == 503
        assert c.get("/ready").json()["status"] == "dead"
