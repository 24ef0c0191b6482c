"""Service settings: environment variables prefixed ``ASR_``, overridden by command-line flags.

Every field is an env var (``model_dir`` -> ``ASR_MODEL_DIR``) and a flag (``--model-dir``); see
:mod:`services.asr.__main__`. Settings are frozen once built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LANGUAGES = ("auto", "zh", "en", "yue", "ja", "ko", "nospeech")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASR_", frozen=True, extra="forbid")

    model_dir: Path = Field(description="SenseVoiceSmall model directory (local; never a hub id)")
    vad_dir: Path | None = Field(None, description="FSMN-VAD model directory; without it, audio is cut in fixed chunks")
    served_model_name: str = Field("sensevoice-small", description="the model name clients send and /v1/models lists")
    device: str = Field("cpu", description="torch device: cpu, cuda, cuda:1 ...")
    language: str = Field("auto", description="default language hint: " + ", ".join(LANGUAGES))
    use_itn: bool = Field(True, description="inverse text normalisation (punctuation, numbers)")
    workers: int = Field(1, ge=1, le=64, description="inferences at once; >1 runs that many worker processes")
    threads: int = Field(1, ge=1, le=256, description="torch intra-op threads per worker (see docs/asr.md)")
    max_queue: int = Field(32, ge=0, description="requests waiting beyond those being inferred; more get 503")
    batch_size: int = Field(1, ge=1, le=256, description="requests gathered into one batch; 1 = no batching")
    batch_window_ms: float = Field(5.0, ge=0, le=1000, description="how long a batch waits for more requests")
    bucket_ratio: float = Field(1.0, ge=1.0, description="longest/shortest segment allowed in one batch")
    dither: float = Field(0.0, ge=0.0, description="feature dither; funasr's default 1.0 makes results random")
    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1024, description="largest accepted upload")
    max_audio_seconds: float = Field(1800.0, gt=0, description="longest accepted audio after decoding")
    chunk_seconds: float = Field(30.0, gt=0, description="segment length when there is no VAD model")
    retry_after_s: int = Field(1, ge=1, description="Retry-After sent with 503 when the queue is full")
    api_key: SecretStr | None = Field(None, description="bearer token required on /v1/* and /recognize/")
    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(8000, ge=0, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    shutdown_timeout_s: float = Field(30.0, gt=0, description="how long SIGTERM waits for in-flight requests")

    @field_validator("model_dir", "vad_dir")
    @classmethod
    def _is_dir(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_dir():
            raise ValueError(f"{v} is not a directory (models load from local directories only)")
        return v.resolve() if v is not None else None

    @field_validator("language")
    @classmethod
    def _language(cls, v: str) -> str:
        if v not in LANGUAGES:
            raise ValueError(f"unknown language {v!r}; one of {', '.join(LANGUAGES)}")
        return v

    @field_validator("api_key")
    @classmethod
    def _empty_key_is_none(cls, v: SecretStr | None) -> SecretStr | None:
        return v if v is not None and v.get_secret_value() else None
