"""Write a tiny community model into PaddleNLP's cache, as an earlier online download would have left it.

Run with the venv's Python and PPNLP_HOME set: ``build_tiny_model.py NAME`` (or $AIRLOCK_MODEL_NAME). It writes
``$PPNLP_HOME/models/NAME/`` with exactly the files PaddleNLP 2.5-2.7 fetch for a community model from
``https://bj.bcebos.com/paddlenlp/models/community/NAME/``: ``config.json`` and ``model_state.pdparams``
(AutoModel) and ``tokenizer_config.json`` and ``vocab.txt`` (AutoTokenizer). The optional tokenizer files
(added_tokens.json, special_tokens_map.json, tokenizer.json, chat_template.json) are absent, as they are
from a community repo that never had them. The weights are random: a 1-layer BERT with hidden size 8.
"""

import json
import os
import sys
import zlib  # noqa: F401  must precede paddle: with paddlepaddle 2.6.2 importing paddlenlp fails in zlib otherwise
from pathlib import Path

import paddle

NAME = os.environ.get("AIRLOCK_MODEL_NAME") or sys.argv[1]
target = Path(os.environ["PPNLP_HOME"]) / "models" / NAME
target.mkdir(parents=True, exist_ok=True)

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "air", "##lock", "offline", "model", "serving",
         "hello", "world", "the", "a", "is", "."]
(target / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")

config = {
    "architectures": ["BertModel"],
    "init_class": "BertModel",
    "model_type": "bert",
    "vocab_size": len(VOCAB),
    "hidden_size": 8,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 16,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "max_position_embeddings": 32,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "pad_token_id": 0,
    "pool_act": "tanh",
}
(target / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")

tokenizer_config = {"tokenizer_class": "BertTokenizer", "init_class": "BertTokenizer", "do_lower_case": True,
                    "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                    "mask_token": "[MASK]"}
(target / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2), encoding="utf-8")

# The weights: build the model from the config with this PaddleNLP, random init, and save its state dict
# under the name the community CDN serves.
from paddlenlp.transformers import BertConfig, BertModel  # noqa: E402

paddle.seed(1234)
model = BertModel(BertConfig(**{k: v for k, v in config.items() if k not in ("architectures", "init_class")}))
paddle.save(model.state_dict(), str(target / "model_state.pdparams"))
print(json.dumps({"model_dir": str(target), "files": sorted(p.name for p in target.iterdir())}))
