"""Load a cached community model by its name, as a serving host does: ``load_offline.py NAME`` (or the
name in $AIRLOCK_MODEL_NAME).

Tries the tokenizer and the model separately (one failing does not hide the other) and prints one line
``RESULT {json}``: {"ok": bool, "tokenizer": {"ok", "class", "input_ids" | "error"},
"model": {"ok", "class", "hidden" | "error"}}. Exit code 0 when both loaded and ran, 1 otherwise
(tracebacks go to stderr).
"""

import json
import os
import sys
import traceback
import zlib  # noqa: F401  must precede paddle: with paddlepaddle 2.6.2 importing paddlenlp fails in zlib otherwise

NAME = os.environ.get("AIRLOCK_MODEL_NAME") or sys.argv[1]


def _error(exc):
    traceback.print_exc()
    return f"{type(exc).__module__}.{type(exc).__name__}: {exc}"


result = {"ok": False, "tokenizer": {"ok": False}, "model": {"ok": False}}
try:
    import paddle
    from paddlenlp.transformers import AutoModel, AutoTokenizer
except BaseException as exc:  # noqa: BLE001
    result["import_error"] = _error(exc)
    print("RESULT " + json.dumps(result))
    sys.exit(1)

input_ids = [2, 10, 11, 3]  # [CLS] hello world [SEP] in the tiny vocabulary
try:
    tokenizer = AutoTokenizer.from_pretrained(NAME)
    result["tokenizer"]["class"] = type(tokenizer).__name__
    input_ids = list(tokenizer("hello world")["input_ids"])
    result["tokenizer"].update(ok=True, input_ids=input_ids)
except BaseException as exc:  # noqa: BLE001  report whatever stopped the load
    result["tokenizer"]["error"] = _error(exc)

try:
    model = AutoModel.from_pretrained(NAME)
    model.eval()
    result["model"]["class"] = type(model).__name__
    with paddle.no_grad():
        out = model(paddle.to_tensor([input_ids]))
    sequence_output = out[0] if isinstance(out, (tuple, list)) else out.last_hidden_state
    result["model"].update(ok=True, hidden=[round(float(x), 5) for x in sequence_output[0, 0, :4].numpy().tolist()])
except BaseException as exc:  # noqa: BLE001
    result["model"]["error"] = _error(exc)

result["ok"] = result["tokenizer"]["ok"] and result["model"]["ok"]
print("RESULT " + json.dumps(result))
sys.exit(0 if result["ok"] else 1)
