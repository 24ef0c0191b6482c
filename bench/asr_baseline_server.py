"""The common hand-written FunASR server, reproduced faithfully as the benchmark's baseline. Do not deploy.

What people copy from blog posts and the SenseVoice README: one ``async def`` route that saves the upload to
``temp_audio_<thread id>.wav`` (with an async file API, as aiofiles users write it) and calls
``model.generate`` on the event loop. Every request runs on the event loop thread, so they all share one
file name, and the blocking ``generate`` stalls every other request while it runs.

Deviations from the copied code, both so the benchmark runs offline on the same tiny models: local model
directories instead of hub ids, and ``disable_update=True`` (the original asks the package index for a newer
funasr at start). Everything else — funasr's defaults (4 CPU threads), the file, the generate arguments —
is as written in the wild.

    .venv/bin/python bench/asr_baseline_server.py --model-dir DIR --vad-dir DIR --port 8001 [--unique-names]

``--unique-names`` (not in the original) names each temp file with a fresh uuid: the same server without the
file race, so the benchmark can show what the blocking event loop costs on its own.
"""

from __future__ import annotations

import argparse
import os
import threading
import uuid

import anyio
import uvicorn
from fastapi import FastAPI, File, UploadFile

p = argparse.ArgumentParser()
p.add_argument("--model-dir", required=True)
p.add_argument("--vad-dir", required=True)
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--port", type=int, default=8001)
p.add_argument("--unique-names", action="store_true")
args = p.parse_args()

from funasr import AutoModel  # noqa: E402
from funasr.utils.postprocess_utils import rich_transcription_postprocess  # noqa: E402

model = AutoModel(
    model=args.model_dir,
    vad_model=args.vad_dir,
    vad_kwargs={"max_single_segment_time": 30000},
    device="cpu",
    disable_update=True,
)

app = FastAPI()


@app.post("/recognize/")
async def recognize(file: UploadFile = File(...)):  # noqa: B008
    audio_path = f"temp_audio_{threading.get_ident()}.wav"
    if args.unique_names:
        audio_path = f"temp_audio_{uuid.uuid4().hex}.wav"
    async with await anyio.open_file(audio_path, "wb") as f:
        await f.write(await file.read())
    res = model.generate(
        input=audio_path,
        cache={},
        language="auto",
        use_itn=True,
        batch_size_s=60,
        merge_vad=True,
        merge_length_s=15,
    )
    text = rich_transcription_postprocess(res[0]["text"])
    os.remove(audio_path)  # noqa: PTH107 - as written in the wild
    return {"result": text}


@app.get("/health")
async def health():
    return {"status": "ok"}


if __name__ == "__main__":
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
