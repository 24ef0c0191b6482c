"""What the offline FunASR proofs run inside a venv under ``unshare -n`` (tests/test_patches_funasr.py).

Environment: ``PROBE_ASR`` and ``PROBE_VAD`` (local model folders), ``PROBE_SPEECH`` and ``PROBE_SILENCE``
(16 kHz WAV files: a spoken sentence, and pure digital silence, passed to funasr as float32 arrays the way
services/asr does, which also keeps torchaudio.load out of it). It builds ``funasr.AutoModel`` the way a
service does, from local folders, but *without* ``disable_update=True`` (so the version check runs unless
patched), transcribes the speech through VAD + ASR, and runs the VAD alone on the silent file. Prints one
JSON line: the funasr version, the transcript, and what the silent file gave (segments, or the exception).
The network attempts are logged by the audit hook of tests/offline_venvs.py, not here.
"""

import json
import os
import sys
import traceback

import funasr
import soundfile
from funasr import AutoModel


def audio(var):
    data, rate = soundfile.read(os.environ[var], dtype="float32")
    assert rate == 16000, rate
    return data


out = {"funasr": funasr.__version__, "python": sys.version.split()[0]}
asr = AutoModel(model=os.environ["PROBE_ASR"], vad_model=os.environ["PROBE_VAD"], device="cpu", ncpu=1)
res = asr.generate(input=audio("PROBE_SPEECH"), language="en", use_itn=False)
out["speech"] = res[0].get("text", "") if res else ""

vad = AutoModel(model=os.environ["PROBE_VAD"], device="cpu", ncpu=1, disable_update=True)
try:
    res = vad.generate(input=audio("PROBE_SILENCE"))
    out["silence"] = {"ok": True, "segments": res[0].get("value") if res else None}
except Exception as exc:  # noqa: BLE001 - the proof reports what the library raised
    out["silence"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                      "where": traceback.extract_tb(exc.__traceback__)[-1].filename.split("site-packages/")[-1]}
print("PROBE " + json.dumps(out))
