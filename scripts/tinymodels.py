"""Tiny, randomly initialised models in Hugging Face format, made locally: no model hub, no torch.

They stand in for real checkpoints in the demo spec and the tests. The weights are noise, so the text a
tiny model generates is nonsense, but the folder has every file a real checkpoint has and loads in
``transformers`` and vLLM like one, which is what a packaging and serving pipeline needs to exercise.

Output is byte-for-byte deterministic for a given seed (same library versions).

    python scripts/tinymodels.py llama OUTDIR [--seed N]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a tiny random-weight model in Hugging Face format.")
    parser.add_argument("kind", choices=["llama"], help="architecture to write")
    parser.add_argument("outdir", type=Path, help="folder to write (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the random weights (default 0)")
    args = parser.parse_args(argv)
    path = make_tiny_llama(args.outdir, seed=args.seed)
    total = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    print(f"wrote {path} ({total / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
