"""Tiny FunASR speech models made locally: a SenseVoiceSmall-architecture ASR and an FSMN-VAD.

They stand in for ``iic/SenseVoiceSmall`` and ``fsmn-vad`` in tests, the demo and the fleet tests: each folder
has the real file names and formats (``config.yaml``, ``configuration.json``, ``am.mvn``, ``model.pt``, and
for SenseVoice the sentencepiece model ``chn_jpn_yue_eng_ko_spectok.bpe.model``) and loads through
``funasr.AutoModel`` from a local directory like the real checkpoints, with no hub and no network.

- SenseVoice: a 2-block encoder of width 32 with random weights, so its transcripts are gibberish, but
  deterministic for a given input (``dither: 0.0``). The vocabulary is a sentencepiece BPE trained on a few
  English paragraphs, padded to SenseVoice's 25055 ids with the real special tokens (``<|en|>``,
  ``<|NEUTRAL|>``, ``<|Speech|>``, ``<|woitn|>``...) at their real ids, because SenseVoice indexes ids such
  as 25009 directly (``ban_emo_unk``). The CTC output bias keeps the random model on the trained pieces so
  that different audio gives different, readable text. About 4.7 MB.
- FSMN-VAD: the real FSMN layout, with weights set by hand to act as an energy detector on the normalised
  log-mel features: speech where the frame is louder than a threshold. The silence probability is bounded
  away from 0 and 1 (funasr takes ``math.log`` of both it and its complement). About 40 KB.

Output is deterministic for a given seed (same library versions).

    python scripts/tinyasr.py sensevoice OUTDIR [--seed N]
    python scripts/tinyasr.py vad OUTDIR
"""

from __future__ import annotations

import argparse
import io
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

SENSEVOICE_VOCAB_SIZE = 25055
BPE_MODEL_NAME = "chn_jpn_yue_eng_ko_spectok.bpe.model"
BPE_TRAINED_VOCAB = 240
ENCODER_WIDTH = 32

# Real SenseVoiceSmall special tokens at their real ids (funasr's SenseVoiceSmall refers to several by id).
SPECIAL_IDS: dict[int, str] = {
    24884: "<|zh|>", 24885: "<|en|>", 24888: "<|yue|>", 24892: "<|ja|>", 24896: "<|ko|>",
    24992: "<|nospeech|>", 24993: "<|Speech|>", 24994: "<|BGM|>", 24995: "<|Laughter|>", 24996: "<|Applause|>",
    25001: "<|HAPPY|>", 25002: "<|SAD|>", 25003: "<|ANGRY|>", 25004: "<|NEUTRAL|>", 25009: "<|EMO_UNKNOWN|>",
    25016: "<|withitn|>", 25017: "<|woitn|>",
}

# Training text for the tokenizer; the test and benchmark sentences come from the same words.
CORPUS = """\
The quick brown fox jumps over the lazy dog near the river bank.
Please send the report to the operations team before noon tomorrow.
An air gapped network has no path to the internet, so everything must be carried in.
The weather was calm that morning and a small boat moved slowly across the lake.
Seven green bottles stood on the wall beside the old wooden gate.
Speech recognition turns spoken words into written text for people to read.
The server loads the model once, warms up, and then answers every request in turn.
She counted to ten, took a deep breath, and opened the heavy door.
Our train leaves at half past six from platform number four.
Bright stars filled the night sky above the quiet village.
Every file in the bundle is checked against its signed checksum.
A good tool explains its mistakes and leaves nothing half finished.
"""

# Spoken test clips (tests, benchmark): distinct sentences of different lengths, from the corpus's words.
SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please send the report to the operations team before noon tomorrow.",
    "Seven green bottles stood on the wall.",
    "Speech recognition turns spoken words into written text for people to read.",
    "Our train leaves at half past six from platform number four.",
    "Bright stars filled the night sky.",
    "She counted to ten, took a deep breath, and opened the heavy door.",
    "Every file in the bundle is checked against its signed checksum.",
    "The server loads the model once and then answers every request in turn, quickly and quietly.",
    "A good tool explains its mistakes.",
)

SENSEVOICE_CONFIG: dict[str, Any] = {
    "encoder": "SenseVoiceEncoderSmall",
    "encoder_conf": {
        "output_size": ENCODER_WIDTH,
        "attention_heads": 4,
        "linear_units": 64,
        "num_blocks": 2,
        "tp_blocks": 1,
        "dropout_rate": 0.1,
        "positional_dropout_rate": 0.1,
        "attention_dropout_rate": 0.1,
        "input_layer": "pe",
        "pos_enc_class": "SinusoidalPositionEncoder",
        "normalize_before": True,
        "kernel_size": 11,
        "sanm_shfit": 0,
        "selfattention_layer_type": "sanm",
    },
    "model": "SenseVoiceSmall",
    "model_conf": {"length_normalized_loss": True, "sos": 1, "eos": 2, "ignore_id": -1},
    "tokenizer": "SentencepiecesTokenizer",
    "tokenizer_conf": {"bpemodel": None, "unk_symbol": "<unk>", "split_with_space": True},
    "frontend": "WavFrontend",
    "frontend_conf": {
        "fs": 16000,
        "window": "hamming",
        "n_mels": 80,
        "frame_length": 25,
        "frame_shift": 10,
        "lfr_m": 7,
        "lfr_n": 6,
        "cmvn_file": None,
        # the real checkpoint inherits funasr's dither 1.0; 0.0 makes transcripts reproducible bit for bit
        "dither": 0.0,
    },
    "ctc_conf": {"dropout_rate": 0.0, "ctc_type": "builtin", "reduce": True, "ignore_nan_grad": True},
    "normalize": None,
}

SENSEVOICE_CONFIGURATION: dict[str, Any] = {
    "framework": "pytorch",
    "task": "auto-speech-recognition",
    "model": {"type": "funasr"},
    "pipeline": {"type": "funasr-pipeline"},
    "model_name_in_hub": {"ms": "", "hf": ""},
    "file_path_metas": {
        "init_param": "model.pt",
        "config": "config.yaml",
        "tokenizer_conf": {"bpemodel": BPE_MODEL_NAME},
        "frontend_conf": {"cmvn_file": "am.mvn"},
    },
}

VAD_CONFIG: dict[str, Any] = {
    "frontend": "WavFrontendOnline",
    "frontend_conf": {
        "fs": 16000,
        "window": "hamming",
        "n_mels": 80,
        "frame_length": 25,
        "frame_shift": 10,
        "dither": 0.0,
        "lfr_m": 5,
        "lfr_n": 1,
    },
    "model": "FsmnVADStreaming",
    "model_conf": {
        "sample_rate": 16000,
        "detect_mode": 1,
        "snr_mode": 0,
        # funasr 1.4 stretches the end-of-segment silence early in a stream; 800 ms gives fixed behaviour
        "max_end_silence_time": 800,
        "max_start_silence_time": 3000,
        "do_start_point_detection": True,
        "do_end_point_detection": True,
        "window_size_ms": 200,
        "sil_to_speech_time_thres": 150,
        "speech_to_sil_time_thres": 150,
        "speech_2_noise_ratio": 1.0,
        "do_extend": 1,
        "lookback_time_start_point": 200,
        "lookahead_time_end_point": 100,
        "max_single_segment_time": 60000,
        "snr_thres": -100.0,
        "noise_frame_num_used_for_snr": 100,
        "decibel_thres": -100.0,
        "speech_noise_thres": 0.6,
        "fe_prior_thres": 0.0001,
        "silence_pdf_num": 1,
        "sil_pdf_ids": [0],
        "speech_noise_thresh_low": -0.1,
        "speech_noise_thresh_high": 0.3,
        "output_frame_probs": False,
        "frame_in_ms": 10,
        "frame_length_ms": 25,
    },
    "encoder": "FSMN",
    "encoder_conf": {
        "input_dim": 400,
        "input_affine_dim": 4,
        "fsmn_layers": 1,
        "linear_dim": 4,
        "proj_dim": 4,
        "lorder": 2,
        "rorder": 0,
        "lstride": 1,
        "rstride": 0,
        "output_affine_dim": 4,
        "output_dim": 2,
    },
}

VAD_CONFIGURATION: dict[str, Any] = {
    "framework": "pytorch",
    "task": "voice-activity-detection",
    "model": {"type": "funasr"},
    "pipeline": {"type": "funasr-pipeline"},
    "model_name_in_hub": {"ms": "", "hf": ""},
    "file_path_metas": {"init_param": "model.pt", "config": "config.yaml", "frontend_conf": {"cmvn_file": "am.mvn"}},
}

# The VAD's energy detector: log-mel of 16-bit-scale audio is about -15 for digital silence and 5..15 for
# speech at a normal level. After am.mvn (shift -LOGMEL_MEAN, scale 1/LOGMEL_STD) the mean over the 400
# features is compared with VAD_THRESHOLD; the evidence on either side is capped at VAD_CAP, and the logits
# scaled by VAD_GAIN, so the silence probability stays within sigmoid(+-2*VAD_GAIN*VAD_CAP) = (0.0003, 0.9997).
LOGMEL_MEAN = 8.0
LOGMEL_STD = 4.0
VAD_THRESHOLD = -0.75  # normalised: a mean log-mel of 5.0
VAD_CAP = 1.0
VAD_GAIN = 4.0


def write_am_mvn(path: Path, shift: np.ndarray, scale: np.ndarray) -> None:
    """Kaldi nnet1 text format, as in the real checkpoints: ``(x + shift) * scale`` per feature."""
    dim = len(shift)

    def vec(v: np.ndarray) -> str:
        return " ".join(f"{x:.6f}" for x in v)

    path.write_text(
        "<Nnet>\n"
        f"<Splice> {dim} {dim}\n[ 0 ]\n"
        f"<AddShift> {dim} {dim}\n<LearnRateCoef> 0 [ {vec(shift)} ]\n"
        f"<Rescale> {dim} {dim}\n<LearnRateCoef> 0 [ {vec(scale)} ]\n"
        "</Nnet>\n",
        encoding="utf-8",
    )


def train_bpe(vocab_size: int = BPE_TRAINED_VOCAB) -> tuple[bytes, int]:
    """A sentencepiece BPE model on :data:`CORPUS`, padded to SenseVoice's vocabulary; returns (bytes, trained size)."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS.lower().splitlines()),
        model_writer=buf,
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=1.0,
        num_threads=1,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    proto = pb.ModelProto()
    proto.ParseFromString(buf.getvalue())
    trained = len(proto.pieces)
    for i in range(trained, SENSEVOICE_VOCAB_SIZE):
        piece = proto.pieces.add()
        piece.piece = SPECIAL_IDS.get(i, f"<|reserved_{i}|>")
        piece.score = 0.0
        piece.type = pb.ModelProto.SentencePiece.USER_DEFINED
    return proto.SerializeToString(), trained


def sensevoice(out: Path, seed: int = 0) -> Path:
    """Write a tiny SenseVoiceSmall-architecture model directory to ``out``."""
    import torch
    from funasr.models.sense_voice.model import SenseVoiceSmall

    out.mkdir(parents=True, exist_ok=True)
    bpe, trained = train_bpe()
    (out / BPE_MODEL_NAME).write_bytes(bpe)
    (out / "config.yaml").write_text(yaml.safe_dump(SENSEVOICE_CONFIG, sort_keys=False), encoding="utf-8")
    (out / "configuration.json").write_text(json.dumps(SENSEVOICE_CONFIGURATION, indent=2) + "\n", encoding="utf-8")
    dim = 80 * 7  # n_mels x lfr_m
    write_am_mvn(out / "am.mvn", np.full(dim, -LOGMEL_MEAN), np.full(dim, 1.0 / LOGMEL_STD))

    torch.manual_seed(seed)
    enc = SENSEVOICE_CONFIG["encoder_conf"]
    model = SenseVoiceSmall(
        encoder="SenseVoiceEncoderSmall", encoder_conf=enc, input_size=dim, vocab_size=SENSEVOICE_VOCAB_SIZE,
        **SENSEVOICE_CONFIG["model_conf"],
    )
    with torch.no_grad():
        # keep the random model on the trained pieces (and blank), so its text differs from clip to clip
        bias = model.ctc.ctc_lo.bias
        bias.zero_()
        bias[trained:] = -30.0
        bias[0] = 1.0  # blank: some frames emit nothing, as in a real CTC model
        model.ctc.ctc_lo.weight.mul_(4.0)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save(state, out / "model.pt")
    return out


def vad(out: Path) -> Path:
    """Write a tiny FSMN-VAD model directory to ``out`` with hand-set energy-detector weights."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(VAD_CONFIG, sort_keys=False), encoding="utf-8")
    (out / "configuration.json").write_text(json.dumps(VAD_CONFIGURATION, indent=2) + "\n", encoding="utf-8")
    dim = VAD_CONFIG["encoder_conf"]["input_dim"]
    write_am_mvn(out / "am.mvn", np.full(dim, -LOGMEL_MEAN), np.full(dim, 1.0 / LOGMEL_STD))

    c = VAD_CONFIG["encoder_conf"]
    w: dict[str, np.ndarray] = {}
    # in_linear1: h0 = mean(features) - threshold (other rows zero)
    w1 = np.zeros((c["input_affine_dim"], dim))
    w1[0, :] = 1.0 / dim
    b1 = np.zeros(c["input_affine_dim"])
    b1[0] = -VAD_THRESHOLD
    w["in_linear1.linear.weight"], w["in_linear1.linear.bias"] = w1, b1
    # in_linear2 + relu: a = relu(h0) speech evidence, b = relu(-h0) silence evidence
    w2 = np.zeros((c["linear_dim"], c["input_affine_dim"]))
    w2[0, 0], w2[1, 0] = 1.0, -1.0
    w["in_linear2.linear.weight"], w["in_linear2.linear.bias"] = w2, np.zeros(c["linear_dim"])
    # FSMN block: projection identity, no memory, then [a, b, a - cap, b - cap] through relu
    w["fsmn.0.linear.linear.weight"] = np.eye(c["proj_dim"], c["linear_dim"])
    w["fsmn.0.fsmn_block.conv_left.weight"] = np.zeros((c["proj_dim"], 1, c["lorder"], 1))
    wa = np.zeros((c["linear_dim"], c["proj_dim"]))
    wa[0, 0] = wa[1, 1] = wa[2, 0] = wa[3, 1] = 1.0
    ba = np.array([0.0, 0.0, -VAD_CAP, -VAD_CAP])
    w["fsmn.0.affine.linear.weight"], w["fsmn.0.affine.linear.bias"] = wa, ba
    # out_linear1: min(a, cap), min(b, cap)
    wo = np.zeros((c["output_affine_dim"], c["linear_dim"]))
    wo[0, 0], wo[0, 2], wo[1, 1], wo[1, 3] = 1.0, -1.0, 1.0, -1.0
    w["out_linear1.linear.weight"], w["out_linear1.linear.bias"] = wo, np.zeros(c["output_affine_dim"])
    # out_linear2: [silence, speech] logits
    wl = np.zeros((c["output_dim"], c["output_affine_dim"]))
    wl[0, 0], wl[0, 1], wl[1, 0], wl[1, 1] = -VAD_GAIN, VAD_GAIN, VAD_GAIN, -VAD_GAIN
    w["out_linear2.linear.weight"], w["out_linear2.linear.bias"] = wl, np.zeros(c["output_dim"])

    state = {f"encoder.{k}": torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in w.items()}
    torch.save(state, out / "model.pt")
    return out


def speak(text: str, *, rate: int = 16000, voice: str = "en", speed: int = 175) -> bytes:
    """``text`` spoken by espeak-ng, as 16-bit mono WAV bytes at ``rate`` Hz (polyphase resampling)."""
    import soundfile as sf
    from scipy.signal import resample_poly

    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text], check=True, capture_output=True
    ).stdout
    data, sr = sf.read(io.BytesIO(wav), dtype="float32")
    if sr != rate:
        g = math.gcd(sr, rate)
        data = resample_poly(data, rate // g, sr // g).astype(np.float32)
    out = io.BytesIO()
    sf.write(out, data, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="kind", required=True)
    s = sub.add_parser("sensevoice", help="tiny SenseVoiceSmall-architecture ASR model")
    s.add_argument("out", type=Path)
    s.add_argument("--seed", type=int, default=0)
    v = sub.add_parser("vad", help="tiny FSMN-VAD energy detector")
    v.add_argument("out", type=Path)
    args = p.parse_args(argv)
    out = sensevoice(args.out, args.seed) if args.kind == "sensevoice" else vad(args.out)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"{args.kind}: {out} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
