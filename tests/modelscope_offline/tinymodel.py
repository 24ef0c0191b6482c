"""A tiny text-classification model in ModelScope format (StructBERT), for the offline server proofs.

What ModelScope needs to build a ``text-classification`` pipeline from a model directory:

* ``configuration.json``: framework pytorch, task, model type ``structbert``, pipeline and preprocessor types;
* ``config.json``: the (StructBERT = BERT-shaped) model config, two labels;
* ``pytorch_model.bin``: the weights of ``SbertForSequenceClassification`` (random, seeded: a few hundred KB);
* ``vocab.txt``: a WordPiece vocabulary for the BERT tokenizer.

The weights are made by ModelScope's own ``SbertForSequenceClassification`` class, so the state-dict keys are
exactly what the installed release loads. Run this file with the Python of a venv that has ModelScope and torch:
``<venv>/bin/python tinymodel.py OUTDIR`` (it imports nothing from this repository).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

LABELS = ["negative", "positive"]

CONFIGURATION = {
    "framework": "pytorch",
    "task": "text-classification",
    "model": {"type": "structbert"},
    "pipeline": {"type": "text-classification"},
    "preprocessor": {"type": "sen-cls-tokenizer", "first_sequence": "text", "max_length": 32},
}

_WORDS = ["i", "like", "this", "wonderful", "place", "the", "a", "is", "not", "bad", "good", "great", "terrible",
          "movie", "food", "day", "it", "was", "very", "and", "but", "so", "really", "love", "hate"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_WORDS, *"abcdefghijklmnopqrstuvwxyz",
         *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"), ".", ",", "!", "?"]

CONFIG = {
    "architectures": ["SbertForSequenceClassification"],
    "model_type": "structbert",
    "vocab_size": len(VOCAB),
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "num_labels": len(LABELS),
    "id2label": {str(i): name for i, name in enumerate(LABELS)},
    "label2id": {name: i for i, name in enumerate(LABELS)},
}


def build_tiny_text_classification(dest: Path) -> dict[str, bytes]:
    """Write the model into ``dest`` and return its files as ``{relative path: bytes}`` (for a hub)."""
    import torch
    from modelscope.models.nlp.structbert import SbertConfig, SbertForSequenceClassification

    dest.mkdir(parents=True, exist_ok=True)
    (dest / "configuration.json").write_text(json.dumps(CONFIGURATION, indent=2) + "\n")
    (dest / "config.json").write_text(json.dumps(CONFIG, indent=2) + "\n")
    (dest / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    torch.manual_seed(0)
    model = SbertForSequenceClassification(SbertConfig(**CONFIG))
    torch.save(model.state_dict(), dest / "pytorch_model.bin")
    return {p.name: p.read_bytes() for p in sorted(dest.iterdir()) if p.is_file()}


if __name__ == "__main__":
    files = build_tiny_text_classification(Path(sys.argv[1]))
    print(json.dumps({name: len(data) for name, data in files.items()}))
