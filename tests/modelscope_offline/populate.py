"""Online phase (loopback only): the real ModelScope client fills MODELSCOPE_CACHE from the test hub.

Run with a venv's Python: ``populate.py MODEL_ID`` with MODELSCOPE_CACHE set and the hub's address in
MODELSCOPE_DOMAIN (``127.0.0.1:PORT``, what 1.14 reads) and MODELSCOPE_ENDPOINT (``http://...``, what 1.40 reads).
Imports nothing from this repository.
"""

import json
import sys
from pathlib import Path

import modelscope.hub.utils.utils as _hub_utils

if hasattr(_hub_utils, "MODELSCOPE_URL_SCHEME"):
    # 1.14 builds the endpoint as "https://" + MODELSCOPE_DOMAIN; the test hub on loopback speaks http
    _hub_utils.MODELSCOPE_URL_SCHEME = "http://"

from modelscope.hub.snapshot_download import snapshot_download

path = snapshot_download(sys.argv[1], revision="master")
print("RESULT " + json.dumps({"snapshot": path, "files": sorted(p.name for p in Path(path).iterdir())}))
