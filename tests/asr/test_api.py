"""The ASR API on the real funasr with tiny models, in-process."""

from __future__ import annotations

import io
import itertools
import re
import struct
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from services.asr.app import build_app
from tests.asr.conftest import long_speech, settings_for, wav_bytes

URL = "/v1/audio/transcriptions"


def post(c: TestClient, data: bytes, *, name: str = "a.wav", field: str = "file", url: str = URL,
         headers: dict[str, str] | None = None, **form: str):
    return c.post(url, files={field: (name, data, "application/octet-stream")}, data=form, headers=headers)


def test_tiny_models_have_the_real_layout(asr_models: tuple[Path, Path]) -> None:
    sv, vad = asr_models
    assert {p.name for p in sv.iterdir()} == {
        "config.yaml", "configuration.json", "am.mvn", "model.pt", "chn_jpn_yue_eng_ko_spectok.bpe.model"}
    assert {p.name for p in vad.iterdir()} == {"config.yaml", "configuration.json", "am.mvn", "model.pt"}
    assert sum(p.stat().st_size for p in sv.iterdir()) < 8_000_000
    assert sum(p.stat().st_size for p in vad.iterdir()) < 100_000
    assert (sv / "am.mvn").read_text().count("<LearnRateCoef>") == 2


def test_solo_transcripts_are_distinct_and_deterministic(client: TestClient, clips: dict[str, bytes],
                                                         solo: dict[str, str]) -> None:
    assert all(solo.values())
    assert len(set(solo.values())) == len(solo), "every clip must have its own transcript"
    again = post(client, clips["c3"]).json()["text"]
    assert again == solo["c3"]


def test_json_and_text(client: TestClient, clips: dict[str, bytes], solo: dict[str, str]) -> None:
    r = post(client, clips["c0"], model="sensevoice-small", response_format="json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.json() == {"text": solo["c0"]}
    r = post(client, clips["c0"], response_format="text")
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == solo["c0"]
    assert r.headers["x-request-id"]
    # the language hint reaches the model (SenseVoice's language query) and the response
    v = post(client, clips["c0"], response_format="verbose_json", language="English").json()
    assert v["language"] == "en" and v["text"] != solo["c0"]


def test_verbose_json_segments_and_timestamps(client: TestClient, clips: dict[str, bytes]) -> None:
    data = long_speech(clips, 12.0)
    v = post(client, data, response_format="verbose_json").json()
    assert v["task"] == "transcribe" and v["language"] == "auto"
    assert v["duration"] == pytest.approx(12.0, abs=0.01)
    segs = v["segments"]
    assert len(segs) >= 2, "the VAD cuts at the pauses"
    assert [s["id"] for s in segs] == list(range(len(segs)))
    for a, b in itertools.pairwise(segs):
        assert a["end"] <= b["start"]
    assert 0 <= segs[0]["start"] < segs[-1]["end"] <= 12.0
    assert v["text"] == " ".join(s["text"] for s in segs if s["text"])


def test_srt_and_vtt(client: TestClient, clips: dict[str, bytes]) -> None:
    data = long_speech(clips, 8.0)
    v = post(client, data, response_format="verbose_json").json()
    srt = post(client, data, response_format="srt").text
    blocks = srt.strip().split("\n\n")
    assert len(blocks) == len([s for s in v["segments"] if s["text"]])
    assert re.fullmatch(r"1\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n.+", blocks[0])
    r = post(client, data, response_format="vtt")
    assert r.headers["content-type"].startswith("text/vtt")
    assert r.text.startswith("WEBVTT\n\n")
    assert re.search(r"\n\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}\n", r.text)


def test_silence_gives_empty_text(client: TestClient) -> None:
    r = post(client, wav_bytes(np.zeros(32000, np.float32)), response_format="verbose_json")
    assert r.status_code == 200
    assert r.json()["text"] == "" and r.json()["segments"] == []


def test_recognize_compat(client: TestClient, clips: dict[str, bytes], solo: dict[str, str]) -> None:
    r = post(client, clips["c1"], url="/recognize/")
    assert r.status_code == 200 and r.json() == {"result": solo["c1"]}


def test_formats_and_rates_decode_in_memory(client: TestClient, clips: dict[str, bytes], solo: dict[str, str]) -> None:
    import soundfile as sf

    a, _ = sf.read(io.BytesIO(clips["c2"]), dtype="float32")
    for fmt, subtype in (("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")):
        r = post(client, wav_bytes(a, fmt=fmt, subtype=subtype), name=f"a.{fmt.lower()}")
        assert r.status_code == 200, (fmt, r.text)
        assert r.json()["text"]
    flac = post(client, wav_bytes(a, fmt="FLAC")).json()["text"]
    assert flac == solo["c2"], "lossless input gives the same transcript"
    stereo_44k = np.repeat(np.interp(np.arange(0, len(a), 16000 / 44100), np.arange(len(a)), a)[:, None], 2, 1)
    r = post(client, wav_bytes(stereo_44k.astype(np.float32), rate=44100))
    assert r.status_code == 200 and r.json()["text"]


def test_models_health_ready_metrics(client: TestClient) -> None:
    m = client.get("/v1/models").json()
    assert m["object"] == "list" and m["data"][0]["id"] == "sensevoice-small"
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").status_code == 200
    text = client.get("/metrics").text
    for name in ("asr_requests_total", "asr_request_duration_seconds_bucket", "asr_audio_seconds_total",
                 "asr_queue_depth", "asr_requests_in_progress", "asr_batch_size_bucket", "asr_rejected_total"):
        assert name in text
    audio = float(re.search(r"^asr_audio_seconds_total (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
    assert audio > 0
    assert 'route="/v1/audio/transcriptions",status="200"' in text


# ---- bad input: a 4xx JSON error naming the problem, and the server keeps serving -------------------------


def _wav_with_rate(rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x01" * 4000)
    return out.getvalue()


def _float_wav_with_nan() -> bytes:
    a = np.zeros(16000, np.float32)
    a[100] = np.nan
    return wav_bytes(a, subtype="FLOAT")


BAD_INPUTS = {
    "not-audio": ({"data": b"this is a text file, not audio\n" * 40}, 400, "invalid_audio", "decoded as audio"),
    "empty": ({"data": b""}, 400, "empty_file", "empty"),
    "truncated": ("truncated", 400, "truncated_audio", "truncated"),
    "wrong-field": ({"field": "audio"}, 400, "missing_file", "'file'"),
    "m4a": ({"data": b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00" + b"\x00" * 500}, 415, "unsupported_format", "MP4"),
    "rate-1hz": ({"data": _wav_with_rate(1)}, 400, "unsupported_sample_rate", "1 Hz"),
    "rate-10mhz": ({"data": _wav_with_rate(10_000_000)}, 400, "unsupported_sample_rate", "10000000 Hz"),
    "nan": ({"data": _float_wav_with_nan()}, 400, "invalid_audio", "NaN"),
    "response-format": ({"response_format": "docx"}, 400, "unsupported_response_format", "docx"),
    "language": ({"language": "klingon"}, 400, "unsupported_language", "klingon"),
    "model": ({"model": "whisper-1"}, 404, "model_not_found", "whisper-1"),
    "temperature": ({"temperature": "hot"}, 400, "invalid_value", "temperature"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input(client: TestClient, clips: dict[str, bytes], solo: dict[str, str], case: str) -> None:
    spec, status, code, words = BAD_INPUTS[case]
    good = clips["c5"]
    if spec == "truncated":
        spec = {"data": good[: len(good) // 2]}
    assert isinstance(spec, dict)
    data = spec.pop("data", good)
    field = spec.pop("field", "file")
    r = post(client, data, field=field, **spec)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and words in err["message"], err
    assert set(err) == {"message", "type", "param", "code"}
    assert post(client, good).json()["text"] == solo["c5"], "the server keeps serving"


def test_not_multipart(client: TestClient) -> None:
    r = client.post(URL, json={"file": "x"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"
    r = client.get("/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


# ---- a second app: API key, small limits ------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict(asr_models: tuple[Path, Path]) -> Iterator[TestClient]:
    s = settings_for(asr_models, api_key="s3cret", max_upload_bytes=200_000, max_audio_seconds=5.0)
    with TestClient(build_app(s)) as c:
        yield c


def test_api_key(strict: TestClient, clips: dict[str, bytes]) -> None:
    ok = {"Authorization": "Bearer s3cret"}
    for url in (URL, "/recognize/"):
        r = post(strict, clips["c5"], url=url)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        assert r.headers["www-authenticate"] == "Bearer"
        assert post(strict, clips["c5"], url=url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert post(strict, clips["c5"], url=url, headers=ok).status_code == 200
    assert strict.get("/v1/models").status_code == 401
    assert strict.get("/v1/models", headers=ok).status_code == 200
    for url in ("/health", "/ready", "/metrics"):
        assert strict.get(url).status_code == 200


def test_size_limits(strict: TestClient, clips: dict[str, bytes]) -> None:
    ok = {"Authorization": "Bearer s3cret"}
    big = wav_bytes(np.zeros(300_000, np.float32))  # 600 KB > 200 KB
    r = post(strict, big, headers=ok)
    assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large"
    long = long_speech(clips, 6.0)  # under the byte limit, over 5 s
    assert len(long) < 200_000
    r = post(strict, long, headers=ok)
    assert r.status_code == 413 and r.json()["error"]["code"] == "audio_too_long"
    assert "5 s" in r.json()["error"]["message"]
    assert post(strict, clips["c5"], headers=ok).status_code == 200


# ---- load: a full queue answers 503, concurrent uploads never mix ------------------------------------------


def test_full_queue_answers_503_with_retry_after(asr_models: tuple[Path, Path], clips: dict[str, bytes]) -> None:
    data = long_speech(clips, 20.0)
    with TestClient(build_app(settings_for(asr_models, workers=1, max_queue=0, retry_after_s=2))) as c:
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda _: post(c, data), range(8)))
        codes = sorted(r.status_code for r in responses)
        assert 200 in codes and 503 in codes, codes
        busy = next(r for r in responses if r.status_code == 503)
        assert busy.headers["retry-after"] == "2"
        assert busy.json()["error"]["code"] == "server_overloaded"
        assert "asr_rejected_total 0.0" not in c.get("/metrics").text
        assert post(c, clips["c0"]).status_code == 200


def _nearest(text: str, solo: dict[str, str]) -> str:
    return max(solo, key=lambda k: SequenceMatcher(None, text, solo[k]).ratio())


def test_concurrent_uploads_get_their_own_transcripts(client: TestClient, clips: dict[str, bytes],
                                                      solo: dict[str, str]) -> None:
    names = list(clips) * 2
    with ThreadPoolExecutor(len(names)) as pool:
        got = list(pool.map(lambda n: post(client, clips[n]).json()["text"], names))
    assert got == [solo[n] for n in names]


def test_batched_concurrent_uploads_stay_nearest_their_own(asr_models: tuple[Path, Path], clips: dict[str, bytes],
                                                           solo: dict[str, str]) -> None:
    s = settings_for(asr_models, batch_size=8, batch_window_ms=20, bucket_ratio=2.0)
    with TestClient(build_app(s)) as c:
        names = list(clips) * 2
        with ThreadPoolExecutor(len(names)) as pool:
            got = list(pool.map(lambda n: post(c, clips[n]).json()["text"], names))
        assert [_nearest(t, solo) for t in got] == names
        batches = re.search(r"^asr_batch_size_count (\S+)$", c.get("/metrics").text, re.M)
        assert batches is not None and float(batches.group(1)) < len(names), "some requests shared a batch"


def test_wav_header_lies_about_length(client: TestClient, clips: dict[str, bytes]) -> None:
    data = bytearray(clips["c5"])
    pos = data.index(b"data")
    struct.pack_into("<I", data, pos + 4, 10**9)
    r = post(client, bytes(data))
    assert r.status_code == 400 and r.json()["error"]["code"] == "truncated_audio"


def test_release_from_the_deploy_is_in_every_answer(asr_models: tuple[Path, Path], clips: dict[str, bytes],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # the units set AIRLOCK_RELEASE; a rolling upgrade reads which release answered from the header
    monkeypatch.setenv("AIRLOCK_RELEASE", "2.0.0")
    with TestClient(build_app(settings_for(asr_models))) as c:
        health = c.get("/health")
        assert health.json() == {"status": "ok", "release": "2.0.0"}
        assert health.headers["X-Airlock-Release"] == "2.0.0"
        r = c.post("/v1/audio/transcriptions", files={"file": ("a.wav", next(iter(clips.values())), "audio/wav")})
        assert r.status_code == 200 and r.headers["X-Airlock-Release"] == "2.0.0"
        bad = c.post("/v1/audio/transcriptions", files={"file": ("x.wav", b"not audio", "audio/wav")})
        assert bad.status_code >= 400 and bad.headers["X-Airlock-Release"] == "2.0.0"
    monkeypatch.delenv("AIRLOCK_RELEASE")
    with TestClient(build_app(settings_for(asr_models))) as c:
        health = c.get("/health")
        assert health.json() == {"status": "ok"} and "X-Airlock-Release" not in health.headers
