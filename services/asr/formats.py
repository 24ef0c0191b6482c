"""Response bodies for ``response_format``: json, text, verbose_json, srt, vtt (as OpenAI's API writes them)."""

from __future__ import annotations

from typing import Any, Literal, get_args

from fastapi.responses import JSONResponse, PlainTextResponse, Response

from services.asr.engine import Transcript

ResponseFormat = Literal["json", "text", "verbose_json", "srt", "vtt"]
RESPONSE_FORMATS: tuple[str, ...] = get_args(ResponseFormat)


def _clock(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def srt(t: Transcript) -> str:
    blocks = [
        f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text}\n"
        for i, s in enumerate((s for s in t.segments if s.text), start=1)
    ]
    return "\n".join(blocks)


def vtt(t: Transcript) -> str:
    blocks = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text}\n" for s in t.segments if s.text]
    return "WEBVTT\n\n" + "\n".join(blocks)


def verbose_json(t: Transcript) -> dict[str, Any]:
    return {
        "task": "transcribe",
        "language": t.language,
        "duration": round(t.duration, 3),
        "text": t.text,
        "segments": [
            {"id": i, "seek": 0, "start": round(s.start, 3), "end": round(s.end, 3), "text": s.text}
            for i, s in enumerate(t.segments)
        ],
    }


def render(t: Transcript, fmt: str) -> Response:
    if fmt == "json":
        return JSONResponse({"text": t.text})
    if fmt == "text":
        return PlainTextResponse(t.text)
    if fmt == "verbose_json":
        return JSONResponse(verbose_json(t))
    if fmt == "srt":
        return PlainTextResponse(srt(t))
    if fmt == "vtt":
        return PlainTextResponse(vtt(t), media_type="text/vtt")
    raise ValueError(fmt)  # the route validates fmt first
