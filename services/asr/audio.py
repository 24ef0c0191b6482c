"""Decode uploads in memory to 16 kHz mono float32, with a clear error for every kind of bad input.

soundfile (libsndfile) reads WAV, FLAC, OGG/Vorbis/Opus and, with libsndfile >= 1.1, MP3 straight from bytes;
nothing is written to disk. Resampling is polyphase (``scipy.signal.resample_poly``).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from services.asr.errors import InvalidAudio, PayloadTooLarge, UnsupportedFormat

TARGET_RATE = 16000
MIN_RATE = 1000
MAX_RATE = 384000
MAX_CHANNELS = 32

# Containers libsndfile cannot read, recognised by their first bytes, so the client hears "unsupported
# format" rather than "corrupt file".
_UNSUPPORTED_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftyp", "MP4/M4A/AAC"),
    (0, b"\x1a\x45\xdf\xa3", "WebM/Matroska"),
    (0, b"#!AMR", "AMR"),
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "WMA/ASF"),
    (0, b".RMF", "RealAudio"),
)


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray  # float32, mono, TARGET_RATE
    source_rate: int
    source_channels: int
    source_format: str

    @property
    def duration(self) -> float:
        return len(self.samples) / TARGET_RATE


def _sniff_unsupported(data: bytes) -> str | None:
    for offset, magic, name in _UNSUPPORTED_MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return name
    # ADTS AAC frames start with a 12-bit sync word 0xFFF and layer bits 00 (MP3 frames have layer != 00)
    if len(data) >= 2 and data[0] == 0xFF and (data[1] & 0xF6) == 0xF0:
        return "AAC (ADTS)"
    return None


def _check_wav_truncation(data: bytes) -> None:
    """libsndfile quietly reads what is there; a WAV whose data chunk is cut short is an error here."""
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        return
    fmt = "<I" if data[:4] == b"RIFF" else ">I"
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack(fmt, data[pos + 4 : pos + 8])
        if chunk_id == b"data":
            # 0 and 0xFFFFFFFF are what streaming writers put there before they know the length
            if size not in (0, 0xFFFFFFFF) and pos + 8 + size > len(data):
                raise InvalidAudio(
                    f"truncated WAV file: its header declares {size} bytes of audio data, "
                    f"the upload holds {len(data) - pos - 8}",
                    code="truncated_audio",
                    param="file",
                )
            return
        pos += 8 + size + (size & 1)


def decode(data: bytes, *, max_seconds: float) -> Audio:
    """Decode an upload to 16 kHz mono float32, or raise an :class:`~services.asr.errors.APIError` saying why not."""
    if not data:
        raise InvalidAudio("the uploaded file is empty", code="empty_file", param="file")
    unsupported = _sniff_unsupported(data)
    if unsupported:
        raise UnsupportedFormat(
            f"unsupported audio format {unsupported}; send WAV, FLAC, OGG or MP3",
            code="unsupported_format",
            param="file",
        )
    _check_wav_truncation(data)
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate, channels, fmt, frames = f.samplerate, f.channels, f.format, f.frames
            if not MIN_RATE <= rate <= MAX_RATE:
                raise InvalidAudio(
                    f"unsupported sample rate {rate} Hz; accepted: {MIN_RATE} to {MAX_RATE} Hz",
                    code="unsupported_sample_rate",
                    param="file",
                )
            if not 1 <= channels <= MAX_CHANNELS:
                raise InvalidAudio(f"unsupported channel count {channels}", code="unsupported_channels", param="file")
            if frames > max_seconds * rate:
                raise PayloadTooLarge(
                    f"audio is {frames / rate:.1f} s long; the limit is {max_seconds:g} s",
                    code="audio_too_long",
                    param="file",
                )
            raw = f.read(dtype="float32", always_2d=True)
    except sf.LibsndfileError as e:
        raise InvalidAudio(
            f"the file could not be decoded as audio (WAV, FLAC, OGG or MP3): {e.error_string}",
            code="invalid_audio",
            param="file",
        ) from e
    except (RuntimeError, TypeError, ValueError, EOFError) as e:
        # libsndfile reports some corrupt or truncated compressed streams only while reading
        raise InvalidAudio(
            f"the audio stream is corrupt or truncated: {e}", code="invalid_audio", param="file"
        ) from e
    if raw.shape[0] == 0:
        raise InvalidAudio("the audio file contains no samples", code="empty_audio", param="file")
    if not np.isfinite(raw).all():
        raise InvalidAudio("the audio contains NaN or infinite samples", code="invalid_audio", param="file")
    mono = raw.mean(axis=1) if channels > 1 else raw[:, 0]
    return Audio(samples=resample(mono, rate), source_rate=rate, source_channels=channels, source_format=fmt)


def resample(x: np.ndarray, rate: int, target: int = TARGET_RATE) -> np.ndarray:
    """Polyphase resampling to ``target`` Hz; float32 out.

    An odd rate (say 44101 Hz) would need a filter thousands of taps long: its ratio is rounded to one with a
    denominator of at most 1000 (a pitch error below 0.1 %).
    """
    if rate == target:
        return np.ascontiguousarray(x, dtype=np.float32)
    ratio = Fraction(target, rate).limit_denominator(1000)
    y = resample_poly(x.astype(np.float64), ratio.numerator, ratio.denominator)
    return np.ascontiguousarray(y, dtype=np.float32)
