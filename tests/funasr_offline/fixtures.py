"""Inputs for the FunASR offline proofs: the tiny models of scripts/tinyasr.py, and audio.

The tiny FSMN-VAD of tinyasr caps its evidence so that its silence posterior stays inside (0.0003, 0.9997)
on purpose: it never meets funasr's ``math.log(0)``. A real FSMN-VAD is confident: on pure digital silence
its softmax gives a silence posterior of exactly 1.0 in float32, ``1 - p`` is 0.0, and ``math.log`` raises
(FunASR issue 2060). :func:`saturating_vad` is the same energy detector with the cap raised and the output
gain halved: digital silence (normalised log-mel about -6, a logit gap of about 21) saturates to exactly 1.0,
while real quiet (a recording's one-LSB noise floor, gap below 1) and speech (gap up to about 14) do not.
So the crash and its fix show on digital silence only, as with the real checkpoint.

The speech clip is dithered with one-LSB noise, as any recording is: espeak-ng pads its output with exact
zeros, which would be digital silence inside the speech clip.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

#: evidence cap (tinyasr: 1.0) and output gain (tinyasr: 4.0) of the saturating VAD
SATURATING_CAP = 6.0
SATURATING_GAIN = 2.0


def saturating_vad(out: Path) -> Path:
    """tinyasr's FSMN-VAD, confident enough that pure digital silence saturates its softmax (see above)."""
    import tinyasr
    import torch

    tinyasr.vad(out)
    state = torch.load(out / "model.pt", map_location="cpu")
    state["encoder.fsmn.0.affine.linear.bias"][2:] = -SATURATING_CAP
    state["encoder.out_linear2.linear.weight"] *= SATURATING_GAIN / tinyasr.VAD_GAIN
    torch.save(state, out / "model.pt")
    return out


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    import soundfile as sf

    sf.write(path, samples, rate, format="WAV", subtype="PCM_16")
    return path


def silence_wav(path: Path, seconds: float = 3.0) -> Path:
    """Pure digital silence: every sample 0 (16-bit PCM, 16 kHz mono)."""
    return write_wav(path, np.zeros(int(seconds * 16000), dtype=np.float32))


def speech_wav(path: Path, text: str = "Seven green bottles stood on the wall.") -> Path:
    """A sentence spoken by espeak-ng with a second of quiet either side, over a one-LSB noise floor."""
    import soundfile as sf
    import tinyasr

    data, rate = sf.read(io.BytesIO(tinyasr.speak(text)), dtype="float32")
    pad = np.zeros(rate, dtype=np.float32)
    clip = np.concatenate([pad, data, pad])
    noise = np.random.default_rng(0).normal(0.0, 1.0 / 32768, clip.shape).astype(np.float32)
    return write_wav(path, clip + noise, rate)


__all__ = ["SATURATING_CAP", "SATURATING_GAIN", "saturating_vad", "silence_wav", "speech_wav", "write_wav"]
