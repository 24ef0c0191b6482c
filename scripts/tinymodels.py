"""Tiny, randomly initialised models, made locally: no model hub, no torch.

They stand in for real checkpoints in the demo spec and the tests. The weights are noise, so the text a
tiny model generates is nonsense, but the folder has every file a real checkpoint has and loads like one,
which is what a packaging and serving pipeline needs to exercise:

* ``llama``: a Llama in Hugging Face format (``transformers``, vLLM);
* ``ms-textcls``: a StructBERT text classifier in ModelScope format (``configuration.json`` names the task,
  pipeline and preprocessor), which ``modelscope.pipeline`` and ``modelscope server`` load from its folder.

Output is byte-for-byte deterministic for a given seed (same library versions).

    python scripts/tinymodels.py llama|ms-textcls OUTDIR [--seed N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"
SPECIAL_TOKENS = [UNK, BOS, EOS, PAD]  # ids 0..3, in this order

# The Llama shape. head_dim 32 is deliberate: vLLM's CPU attention kernels fail on head_dim 16
# (on the first request, while /health still answers 200).
LLAMA_CONFIG: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
}
TOKENIZER_VOCAB_TARGET = 1024
INIT_STD = 0.02

# A tiny chat format: "<s>user: ...</s>\nassistant: ...</s>\n", with "assistant:" left open for generation.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ message['role'] }}: {{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)

# Training text for the tokenizer: plain English, enough for about a thousand byte-level BPE merges.
CORPUS = """\
An air-gapped network has no path to the internet. Everything that runs inside it must be carried in:
the operating system packages, the Python wheels, the model weights and the configuration that ties
them together. A bundle is a single folder that holds all of these, with a manifest that names every
file and its checksum, and a signature that proves who made it.

The operator copies the bundle onto removable media, walks it across the gap, and verifies the
signature on the other side before anything is installed. If a single byte has changed, the check
fails and nothing is touched. Only then does the installer unpack the wheels into a virtual
environment, place the models on disk, and start the services that answer requests.

A language model turns text into tokens, and tokens into numbers. The tokenizer splits each word into
pieces it has seen before; common words stay whole, rare words fall apart into smaller parts. The model
reads the numbers, predicts the next token, and the tokenizer turns the answer back into text. The
user asks a question, the assistant replies, and the system prompt sets the tone for the conversation.

Serving a model well is mostly about patience and care. The server loads the weights, warms its caches,
and reports that it is ready only after it has answered a real request. It should start quickly, stop
cleanly when asked, and write clear messages when something goes wrong, so that the people who run it
at three in the morning know what to do next.

Good tools are boring in the best sense. They do the same thing every time, they explain their
mistakes, and they leave nothing half finished. When the network is cut off from the world, there is
no one to ask and nothing to download, so every answer has to be in the box before the box is closed.

The weather was calm that morning. A small boat moved slowly across the lake, and the birds on the
shore watched it pass. In the village the bakery opened its doors, the smell of fresh bread drifted down
the street, and children ran to school with their books under their arms. Later the wind rose, clouds
gathered over the hills, and the first drops of rain fell on the roofs and gardens.

History is full of inventions that began as toys. Clockmakers built moving figures long before anyone
imagined a factory; the first photographs needed minutes of perfect stillness; early radios crackled
with more noise than music. Each of these grew, through patient improvement, into something ordinary
and useful, and most of the people who improved them are now forgotten.

Please write down what you changed, why you changed it, and how to undo it. Keep your notes short and
specific: which version, which machine, which command, what happened. Numbers are better than
adjectives, and a log line copied exactly is worth more than a paragraph of memory. Whoever reads your
notes next week, perhaps yourself, will thank you for every detail.
"""


def train_tokenizer(vocab_size: int = TOKENIZER_VOCAB_TARGET) -> Tokenizer:
    """A byte-level BPE tokenizer trained on :data:`CORPUS`; ``<s>`` is added in front of every input."""
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # One paragraph per item, in a fixed order. The trainer breaks ties between equally frequent pairs
    # by the pair itself, so the merges and ids do not depend on hashing or thread scheduling.
    tok.train_from_iterator([p for p in CORPUS.split("\n\n") if p.strip()], trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A",
        pair=f"{BOS} $A {BOS} $B",
        special_tokens=[(BOS, bos_id)],
    )
    return tok


def _llama_tensors(cfg: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
    """Every tensor LlamaForCausalLM expects, shaped [out_features, in_features], in a fixed draw order."""
    rng = np.random.default_rng(seed)
    hidden, inter = cfg["hidden_size"], cfg["intermediate_size"]
    q_out = cfg["num_attention_heads"] * cfg["head_dim"]
    kv_out = cfg["num_key_value_heads"] * cfg["head_dim"]

    def normal(*shape: int) -> np.ndarray:
        return rng.normal(0.0, INIT_STD, size=shape).astype(np.float32)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    tensors = {"model.embed_tokens.weight": normal(cfg["vocab_size"], hidden)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        tensors |= {
            p + "self_attn.q_proj.weight": normal(q_out, hidden),
            p + "self_attn.k_proj.weight": normal(kv_out, hidden),
            p + "self_attn.v_proj.weight": normal(kv_out, hidden),
            p + "self_attn.o_proj.weight": normal(hidden, q_out),
            p + "mlp.gate_proj.weight": normal(inter, hidden),
            p + "mlp.up_proj.weight": normal(inter, hidden),
            p + "mlp.down_proj.weight": normal(hidden, inter),
            p + "input_layernorm.weight": ones(hidden),
            p + "post_attention_layernorm.weight": ones(hidden),
        }
    tensors["model.norm.weight"] = ones(hidden)
    tensors["lm_head.weight"] = normal(cfg["vocab_size"], hidden)
    return tensors


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


_MODEL_CARD = """\
---
license: apache-2.0
library_name: transformers
pipeline_tag: text-generation
tags:
  - llama
  - tiny
  - random-weights
---

# tiny-llama (random weights)

A {params:,}-parameter Llama-architecture model with **random weights** (seed {seed}), made locally by
`scripts/tinymodels.py` in the Airlock repository. It is for testing packaging and serving pipelines:
it loads in `transformers` and vLLM like a real checkpoint, but the text it generates is nonsense.

- hidden size {hidden_size}, {num_hidden_layers} layers, {num_attention_heads} heads of size {head_dim}
- byte-level BPE tokenizer with {vocab_size} tokens, trained on a few paragraphs of English
- chat format: `<s>user: ...</s>` lines, then `assistant:`
"""


def make_tiny_llama(out: Path, seed: int = 0) -> Path:
    """Write a tiny random Llama (config, weights, tokenizer, chat template, card) into ``out``; return it.

    Existing files of the same names are overwritten; other files in ``out`` are left alone.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer()
    bos_id, eos_id, pad_id = (tok.token_to_id(t) for t in (BOS, EOS, PAD))
    cfg: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        **LLAMA_CONFIG,
        "vocab_size": tok.get_vocab_size(),
        "hidden_act": "silu",
        "initializer_range": INIT_STD,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "rope_scaling": None,
        "pretraining_tp": 1,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "use_cache": True,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
    }
    _write_json(out / "config.json", cfg)
    _write_json(
        out / "generation_config.json",
        {"bos_token_id": bos_id, "eos_token_id": eos_id, "pad_token_id": pad_id},
    )

    tensors = _llama_tensors(cfg, seed)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "model.safetensors").chmod(0o644)  # the writer creates it owner-only; match the other files

    (out / "tokenizer.json").write_text(tok.to_str(pretty=True) + "\n", encoding="utf-8")
    added = {
        str(tok.token_to_id(t)): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for t in SPECIAL_TOKENS
    }
    _write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "added_tokens_decoder": added,
            "bos_token": BOS,
            "eos_token": EOS,
            "unk_token": UNK,
            "pad_token": PAD,
            "model_max_length": cfg["max_position_embeddings"],
            "clean_up_tokenization_spaces": False,
            "chat_template": CHAT_TEMPLATE,
        },
    )
    _write_json(
        out / "special_tokens_map.json",
        {"bos_token": BOS, "eos_token": EOS, "unk_token": UNK, "pad_token": PAD},
    )
    params = sum(int(t.size) for t in tensors.values())
    (out / "README.md").write_text(_MODEL_CARD.format(params=params, seed=seed, **cfg), encoding="utf-8")
    return out


# --- ModelScope text classification (StructBERT) -----------------------------------------------------------

#: The labels of the tiny classifier, by class id.
MS_TEXTCLS_LABELS = ["negative", "positive"]

#: What ModelScope reads to build a pipeline from the folder: task, model class (registered as "structbert"),
#: pipeline and preprocessor (a BERT WordPiece tokenizer over vocab.txt).
MS_TEXTCLS_CONFIGURATION: dict[str, Any] = {
    "framework": "pytorch",
    "task": "text-classification",
    "model": {"type": "structbert"},
    "pipeline": {"type": "text-classification"},
    "preprocessor": {"type": "sen-cls-tokenizer", "first_sequence": "text", "max_length": 32},
}

_MS_WORDS = [
    "i", "like", "this", "wonderful", "place", "the", "a", "is", "not", "bad", "good", "great", "terrible", "movie",
    "food", "day", "it", "was", "very", "and", "but", "so", "really", "love", "hate", "air", "gapped", "network",
    "model", "server", "ready",
]
#: A WordPiece vocabulary: the BERT special tokens, whole words, then single letters (with ## continuations),
#: so any lower-case English text tokenizes without [UNK].
MS_TEXTCLS_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_MS_WORDS, *"abcdefghijklmnopqrstuvwxyz",
                    *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"), *".,!?'-0123456789"]

MS_TEXTCLS_SHAPE: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
}


def _bert_tensors(cfg: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
    """Every tensor of a BERT-shaped sequence classifier (StructBERT's state-dict keys), in a fixed draw order:
    weights N(0, initializer_range), biases 0, LayerNorm 1/0, as BERT initialises them."""
    rng = np.random.default_rng(seed)
    hidden, inter, std = cfg["hidden_size"], cfg["intermediate_size"], cfg["initializer_range"]

    def normal(*shape: int) -> np.ndarray:
        return rng.normal(0.0, std, size=shape).astype(np.float32)

    def zeros(n: int) -> np.ndarray:
        return np.zeros(n, dtype=np.float32)

    def norm(prefix: str) -> dict[str, np.ndarray]:
        return {prefix + ".weight": np.ones(hidden, dtype=np.float32), prefix + ".bias": zeros(hidden)}

    def dense(prefix: str, out: int, inp: int) -> dict[str, np.ndarray]:
        return {prefix + ".weight": normal(out, inp), prefix + ".bias": zeros(out)}

    e = "bert.embeddings."
    tensors: dict[str, np.ndarray] = {
        e + "position_ids": np.arange(cfg["max_position_embeddings"], dtype=np.int64)[None, :],
        e + "word_embeddings.weight": normal(cfg["vocab_size"], hidden),
        e + "position_embeddings.weight": normal(cfg["max_position_embeddings"], hidden),
        e + "token_type_embeddings.weight": normal(cfg["type_vocab_size"], hidden),
        **norm(e + "LayerNorm"),
    }
    for i in range(cfg["num_hidden_layers"]):
        p = f"bert.encoder.layer.{i}."
        tensors |= {
            **dense(p + "attention.self.query", hidden, hidden),
            **dense(p + "attention.self.key", hidden, hidden),
            **dense(p + "attention.self.value", hidden, hidden),
            **dense(p + "attention.output.dense", hidden, hidden),
            **norm(p + "attention.output.LayerNorm"),
            **dense(p + "intermediate.dense", inter, hidden),
            **dense(p + "output.dense", hidden, inter),
            **norm(p + "output.LayerNorm"),
        }
    tensors |= {**dense("bert.pooler.dense", hidden, hidden), **dense("classifier", cfg["num_labels"], hidden)}
    return tensors


_MS_TEXTCLS_CARD = """\
---
license: apache-2.0
tasks:
  - text-classification
frameworks:
  - pytorch
tags:
  - structbert
  - tiny
  - random-weights
---

# tiny-textcls (random weights)

A {params:,}-parameter StructBERT text classifier with **random weights** (seed {seed}), made locally by
`scripts/tinymodels.py` in the Airlock repository, in ModelScope format: `modelscope.pipeline` and
`modelscope server` load it from this folder like a real checkpoint, but the label it picks
({labels}) is noise.

- hidden size {hidden_size}, {num_hidden_layers} layers, {num_attention_heads} heads
- WordPiece vocabulary of {vocab_size} tokens (words, letters, digits, punctuation)
"""


def make_tiny_ms_textcls(out: Path, seed: int = 0) -> Path:
    """Write a tiny random StructBERT text classifier in ModelScope format into ``out``; return it.

    Files: configuration.json (ModelScope's task/pipeline/preprocessor), config.json (the model), vocab.txt,
    model.safetensors, README.md. Existing files of the same names are overwritten; others are left alone.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg: dict[str, Any] = {
        "architectures": ["SbertForSequenceClassification"],
        "model_type": "structbert",
        **MS_TEXTCLS_SHAPE,
        "vocab_size": len(MS_TEXTCLS_VOCAB),
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": INIT_STD,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "num_labels": len(MS_TEXTCLS_LABELS),
        "id2label": {str(i): name for i, name in enumerate(MS_TEXTCLS_LABELS)},
        "label2id": {name: i for i, name in enumerate(MS_TEXTCLS_LABELS)},
    }
    _write_json(out / "configuration.json", MS_TEXTCLS_CONFIGURATION)
    _write_json(out / "config.json", cfg)
    (out / "vocab.txt").write_text("\n".join(MS_TEXTCLS_VOCAB) + "\n", encoding="utf-8")
    tensors = _bert_tensors(cfg, seed)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "model.safetensors").chmod(0o644)
    params = sum(int(t.size) for k, t in tensors.items() if not k.endswith("position_ids"))
    (out / "README.md").write_text(
        _MS_TEXTCLS_CARD.format(params=params, seed=seed, labels=", ".join(MS_TEXTCLS_LABELS), **cfg),
        encoding="utf-8")
    return out


_MAKERS = {"llama": make_tiny_llama, "ms-textcls": make_tiny_ms_textcls}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a tiny random-weight model (Hugging Face or ModelScope).")
    parser.add_argument("kind", choices=sorted(_MAKERS), help="architecture to write")
    parser.add_argument("outdir", type=Path, help="folder to write (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the random weights (default 0)")
    args = parser.parse_args(argv)
    path = _MAKERS[args.kind](args.outdir, seed=args.seed)
    total = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    print(f"wrote {path} ({total / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
