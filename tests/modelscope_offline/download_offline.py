"""Offline phase: snapshot_download and model_file_download of a model already in MODELSCOPE_CACHE.

``download_offline.py MODEL_ID FILE [MISSING_FILE]`` prints one ``RESULT {json}`` line: for each call either
the path it returned (and whether that file or folder holds the cached bytes) or the exception it raised.
With MISSING_FILE, also ``model_file_download`` of that file (which the cache does not hold).
Imports nothing from this repository.
"""

import json
import sys
from pathlib import Path

from modelscope.hub.file_download import model_file_download
from modelscope.hub.snapshot_download import snapshot_download

model_id, file_path = sys.argv[1], sys.argv[2]
calls = [("snapshot_download", lambda: snapshot_download(model_id)),
         ("model_file_download", lambda: model_file_download(model_id, file_path))]
if len(sys.argv) > 3:
    calls.append(("missing_file", lambda: model_file_download(model_id, sys.argv[3])))
result = {}
for name, call in calls:
    try:
        path = call()
        target = Path(path) / file_path if Path(path).is_dir() else Path(path)
        result[name] = {"path": path, "exists": target.is_file()}
    except Exception as e:  # noqa: BLE001 (the proof reports whatever the client raised)
        result[name] = {"error": f"{type(e).__name__}: {e}"[:2000]}
print("RESULT " + json.dumps(result))
