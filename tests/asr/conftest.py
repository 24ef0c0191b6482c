"""Fixtures for the ASR service tests: tiny real FunASR models, espeak-ng speech, one shared in-process app.

``import funasr`` costs 8-10 s per process, so the app runs in-process (``fastapi.testclient``) once per
session; only the shutdown and offline tests start the server as a subprocess.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tinyasr
from fastapi.testclient import TestClient

from services.asr.app import build_app
from services.asr.settings import Settings


@pytest.fixture(scope="session")
def asr_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("asr-models")
    return tinyasr.sensevoice(root / "sensevoice"), tinyasr.vad(root / "vad")


@pytest.fixture(scope="session")
def clips() -> dict[str, bytes]:
    """Ten espeak-ng sentences as 16 kHz mono WAV bytes, keyed c0..c9."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup.sh installs it)")
    return {f"c{i}": tinyasr.speak(s) for i, s in enumerate(tinyasr.SENTENCES)}


def wav_bytes(samples: np.ndarray, rate: int = 16000, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    out = io.BytesIO()
    sf.write(out, samples, rate, format=fmt, subtype=subtype)
    return out.getvalue()


def long_speech(clips: dict[str, bytes], seconds: float, gap: float = 2.0) -> bytes:
    """Clips one after another with ``gap`` seconds of silence between them, up to ``seconds``."""
    parts: list[np.ndarray] = []
    total = 0
    while total < seconds * 16000:
        for data in clips.values():
            a, _ = sf.read(io.BytesIO(data), dtype="float32")
            parts += [a, np.zeros(int(gap * 16000), np.float32)]
            total += len(a) + int(gap * 16000)
    return wav_bytes(np.concatenate(parts)[: int(seconds * 16000)])


def settings_for(models: tuple[Path, Path], **kw: object) -> Settings:
    return Settings(model_dir=models[0], vad_dir=models[1], **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def client(asr_models: tuple[Path, Path]) -> Iterator[TestClient]:
    with TestClient(build_app(settings_for(asr_models))) as c:
        yield c


@pytest.fixture(scope="session")
def solo(client: TestClient, clips: dict[str, bytes]) -> dict[str, str]:
    """Each clip's transcript, one request at a time."""
    out = {}
    for name, data in clips.items():
        r = client.post("/v1/audio/transcriptions", files={"file": (f"{name}.wav", data, "audio/wav")})
        assert r.status_code == 200, r.text
        out[name] = r.json()["text"]
    return out
