"""The tiny random Llama generator: deterministic, complete, and self-consistent (no torch needed)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import tinymodels
from safetensors import safe_open
from safetensors.numpy import load_file
from tokenizers import Tokenizer

EXPECTED_FILES = {
    "README.md",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
}


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tinymodels.make_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama", seed=0)


@pytest.fixture(scope="module")
def config(model_dir: Path) -> dict[str, object]:
    return json.loads((model_dir / "config.json").read_text())


def test_file_set_and_size(model_dir: Path) -> None:
    assert {p.name for p in model_dir.iterdir()} == EXPECTED_FILES
    assert sum(p.stat().st_size for p in model_dir.iterdir()) < 1_000_000


def test_same_seed_same_bytes(model_dir: Path, tmp_path: Path) -> None:
    again = tinymodels.make_tiny_llama(tmp_path / "again", seed=0)
    assert _digests(again) == _digests(model_dir)


def test_other_seed_changes_only_weights_and_card(model_dir: Path, tmp_path: Path) -> None:
    other = _digests(tinymodels.make_tiny_llama(tmp_path / "other", seed=1))
    changed = {name for name, digest in _digests(model_dir).items() if other[name] != digest}
    assert changed == {"model.safetensors", "README.md"}


def test_cli_writes_the_same_model(model_dir: Path, tmp_path: Path) -> None:
    assert tinymodels.main(["llama", str(tmp_path / "cli"), "--seed", "0"]) == 0
    assert _digests(tmp_path / "cli") == _digests(model_dir)


def test_config_is_a_llama_vllm_can_serve(config: dict[str, object]) -> None:
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["model_type"] == "llama"
    assert config["torch_dtype"] == "float32"
    assert config["tie_word_embeddings"] is False
    assert config["head_dim"] == 32  # vLLM's CPU attention fails on 16
    assert config["num_attention_heads"] * config["head_dim"] == config["hidden_size"]  # type: ignore[operator]


def test_tensor_names_shapes_and_dtypes(model_dir: Path, config: dict[str, int]) -> None:
    tensors = load_file(str(model_dir / "model.safetensors"))
    h, inter, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    q_out = config["num_attention_heads"] * config["head_dim"]
    kv_out = config["num_key_value_heads"] * config["head_dim"]
    want = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,), "lm_head.weight": (v, h)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        want |= {
            p + "self_attn.q_proj.weight": (q_out, h),
            p + "self_attn.k_proj.weight": (kv_out, h),
            p + "self_attn.v_proj.weight": (kv_out, h),
            p + "self_attn.o_proj.weight": (h, q_out),
            p + "mlp.gate_proj.weight": (inter, h),
            p + "mlp.up_proj.weight": (inter, h),
            p + "mlp.down_proj.weight": (h, inter),
            p + "input_layernorm.weight": (h,),
            p + "post_attention_layernorm.weight": (h,),
        }
    assert {name: t.shape for name, t in tensors.items()} == want
    assert {str(t.dtype) for t in tensors.values()} == {"float32"}
    for name, t in tensors.items():
        if name.endswith("norm.weight"):
            assert (t == 1.0).all(), name
        else:
            assert 0.01 < float(t.std()) < 0.03, name
    with safe_open(str(model_dir / "model.safetensors"), framework="numpy") as f:
        assert f.metadata() == {"format": "pt"}


def test_tokenizer_matches_config_and_round_trips(model_dir: Path, config: dict[str, int]) -> None:
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    assert 1000 <= tok.get_vocab_size() <= 2000
    assert tok.get_vocab_size() == config["vocab_size"]
    ids = {t: tok.token_to_id(t) for t in ("<s>", "</s>", "<unk>", "<pad>")}
    assert None not in ids.values()
    assert config["bos_token_id"] == ids["<s>"]
    assert config["eos_token_id"] == ids["</s>"]
    gen = json.loads((model_dir / "generation_config.json").read_text())
    assert (gen["bos_token_id"], gen["eos_token_id"]) == (ids["<s>"], ids["</s>"])

    for text in ["The assistant replies to the user.", "Ünïcödé, emoji 🚀 and tabs\tand\nnewlines!"]:
        enc = tok.encode(text)
        assert enc.ids[0] == ids["<s>"]
        assert ids["<unk>"] not in enc.ids  # byte-level: every input is representable
        assert tok.decode(enc.ids, skip_special_tokens=True) == text
    assert tok.encode(" the tokenizer").tokens == ["<s>", "Ġthe", "Ġtokenizer"]  # whole corpus words


def test_tokenizer_config_and_special_tokens(model_dir: Path) -> None:
    tc = json.loads((model_dir / "tokenizer_config.json").read_text())
    assert tc["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert (tc["bos_token"], tc["eos_token"], tc["pad_token"]) == ("<s>", "</s>", "<pad>")
    assert tc["model_max_length"] == 512
    assert "add_generation_prompt" in tc["chat_template"]
    stm = json.loads((model_dir / "special_tokens_map.json").read_text())
    assert stm == {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}


def test_chat_template_renders(model_dir: Path) -> None:
    jinja2 = pytest.importorskip("jinja2")
    tc = json.loads((model_dir / "tokenizer_config.json").read_text())
    template = jinja2.Environment(autoescape=False).from_string(tc["chat_template"])
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    specials = {"bos_token": "<s>", "eos_token": "</s>"}
    text = template.render(messages=messages, add_generation_prompt=True, **specials)
    assert text == "<s>system: Be brief.</s>\nuser: Hi</s>\nassistant:"
    closed = template.render(messages=messages, add_generation_prompt=False, **specials)
    assert closed == "<s>system: Be brief.</s>\nuser: Hi</s>\n"


def test_model_card_license(model_dir: Path) -> None:
    card = (model_dir / "README.md").read_text()
    front = card.split("---\n")[1]
    assert "license: apache-2.0" in front.splitlines()


def test_ms_textcls_layout_and_reproducible(tmp_path: Path) -> None:
    a = tinymodels.make_tiny_ms_textcls(tmp_path / "a")
    b = tinymodels.make_tiny_ms_textcls(tmp_path / "b")
    files = sorted(p.name for p in a.iterdir())
    assert files == ["README.md", "config.json", "configuration.json", "model.safetensors", "vocab.txt"]
    assert all((a / n).read_bytes() == (b / n).read_bytes() for n in files)  # byte-for-byte reproducible
    conf = json.loads((a / "configuration.json").read_text())
    assert conf["framework"] == "pytorch" and conf["task"] == "text-classification"
    cfg = json.loads((a / "config.json").read_text())
    assert cfg["num_labels"] == len(tinymodels.MS_TEXTCLS_LABELS)
    assert cfg["vocab_size"] == len((a / "vocab.txt").read_text().splitlines())
    tensors = load_file(str(a / "model.safetensors"))
    assert tensors["classifier.weight"].shape == (cfg["num_labels"], cfg["hidden_size"])
