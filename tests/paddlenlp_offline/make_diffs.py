"""Regenerate the diffs and hashes of ``packager/patches/paddlenlp-community-cache-first/`` from the wheels.

    python tests/paddlenlp_offline/make_diffs.py WHEEL_DIR [--write]

WHEEL_DIR holds the released wheels (``pip download --no-deps paddlenlp==V -d WHEEL_DIR``). For every
version in VERSIONS the four touched files are taken from the wheel, the edit below is made with exact
anchors (each must match exactly once, or the script stops), and ``diff -u`` of before and after is the
variant's diff. With ``--write`` the diffs and patch.yaml's variants are written; without, it only checks
that the committed ones are what the wheels give.

The edit is the same in every version, written to each version's variable names:

1. ``transformers/auto/modeling.py`` (AutoModel): for a community model name, use
   ``<cache>/config.json`` or ``<cache>/model_config.json`` when it is already there, before asking the
   CDN whether it exists.
2. ``transformers/configuration_utils.py`` (PretrainedConfig): the same for the config the model class
   loads.
3. ``transformers/model_utils.py`` (PretrainedModel weights): 2.5.x returns ``<cache>/model_state.pdparams``
   when it is there instead of asking the CDN; 2.6/2.7 first ask for ``model.safetensors``, so when only
   ``model_state.pdparams`` is cached (and the caller did not ask for safetensors), that is loaded.
4. ``transformers/tokenizer_utils_base.py``: a community tokenizer whose ``tokenizer_config.json`` is cached
   was downloaded before; the optional files it lacks (added_tokens.json, special_tokens_map.json,
   tokenizer.json, chat_template.json) did not exist on the CDN then and are not asked for again.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATCH_DIR = ROOT / "packager" / "patches" / "paddlenlp-community-cache-first"

#: the releases this patch was made for and checked against, each run offline by tests/test_patches_paddlenlp.py.
#: Not here: 2.5.0 does not install on Python 3.11 (it needs protobuf<=3.20.0, every paddlepaddle with 3.11
#: wheels needs >=3.20.2); 2.5.1/2.5.2 install but do not import (paddle.fluid, gone in paddlepaddle 2.6, the
#: oldest with 3.11 wheels).
VERSIONS = ("2.6.0", "2.6.1", "2.7.0", "2.7.1", "2.7.2", "2.8.0", "2.8.1",
            "3.0.0b0", "3.0.0b1", "3.0.0b2", "3.0.0b3", "3.0.0b4")

TOKENIZER = "paddlenlp/transformers/tokenizer_utils_base.py"
FILES_26 = (  # 2.6 / 2.7: the old community-CDN code in four places
    "paddlenlp/transformers/auto/modeling.py",
    "paddlenlp/transformers/configuration_utils.py",
    "paddlenlp/transformers/model_utils.py",
    TOKENIZER,
)
FILES_28 = (TOKENIZER,)  # 2.8+: resolve_file_path looks in the cache first, but not for files it lacks


def files_of(version: str) -> tuple[str, ...]:
    return FILES_26 if version.startswith(("2.6.", "2.7.")) else FILES_28

MARK = "Airlock offline patch (cf. PaddleNLP PR 5817)"


def _once(text: str, pattern: str, repl, *, what: str) -> str:
    new, count = re.subn(pattern, repl, text, flags=re.M)
    if count != 1:
        raise SystemExit(f"{what}: the anchor matched {count} times, expected exactly once")
    return new


def edit_auto_modeling(text: str) -> str:
    pattern = (
        r"^(?P<i>[ ]+)try:\n"
        r"(?P=i)    if url_file_exists\(standard_community_url\):\n"
        r"(?P<get>(?P=i)        resolved_vocab_file = \w+\(standard_community_url, (?P<root>\w+)\)\n)"
    )

    def repl(m: re.Match) -> str:
        i, root = m["i"], m["root"]
        return (
            f"{i}# {MARK}: a community model already in the\n"
            f"{i}# cache is loaded from there; the CDN is asked only for what the cache lacks.\n"
            f"{i}cached_standard_config = os.path.join({root}, cls.model_config_file)\n"
            f"{i}cached_legacy_config = os.path.join({root}, cls.legacy_model_config_file)\n"
            f"{i}try:\n"
            f"{i}    if os.path.isfile(cached_standard_config):\n"
            f"{i}        resolved_vocab_file = cached_standard_config\n"
            f"{i}    elif os.path.isfile(cached_legacy_config):\n"
            f"{i}        resolved_vocab_file = cached_legacy_config\n"
            f"{i}    elif url_file_exists(standard_community_url):\n"
            f"{m['get']}"
        )

    return _once(text, pattern, repl, what="auto/modeling.py")


def edit_configuration_utils(text: str) -> str:
    pattern = (
        r"^(?P<i>[ ]+)else:\n"
        r"(?P<first>(?P=i)    community_url = \"/\"\.join\(\[COMMUNITY_MODEL_PREFIX, pretrained_model_name_or_path, "
        r"CONFIG_NAME\]\)\n)"
    )

    def repl(m: re.Match) -> str:
        i = m["i"] + "    "
        return (
            f"{m['i']}else:\n"
            f"{i}# {MARK}: a community model already in the\n"
            f"{i}# cache is loaded from there; the CDN is asked only when the cache lacks the config.\n"
            f"{i}for cached_config_file in (CONFIG_NAME, LEGACY_CONFIG_NAME):\n"
            f"{i}    cached_config_file = os.path.join(cache_dir or \"\", cached_config_file)\n"
            f"{i}    if cache_dir and not force_download and os.path.isfile(cached_config_file):\n"
            f"{i}        return cls._get_config_dict(cached_config_file, cache_dir=cache_dir, **kwargs)\n"
            f"{m['first']}"
        )

    if "force_download = kwargs.pop(\"force_download\", False)" not in text:
        raise SystemExit("configuration_utils.py: no force_download in _get_config_dict")
    return _once(text, pattern, repl, what="configuration_utils.py")


def edit_model_utils(text: str) -> str:
    pattern = (
        r"^(?P<i>[ ]+)# set correct filename\n"
        r"(?P=i)if use_safetensors is not False:\n"
    )
    # 2.7 has from_aistudio (AI Studio downloads have their own cache); 2.6 does not
    has_aistudio = re.search(r"def _resolve_model_file_path\([^)]*\bfrom_aistudio: bool", text) is not None

    def repl(m: re.Match) -> str:
        i = m["i"]
        return (
            f"{i}# {MARK}: when only model_state.pdparams\n"
            f"{i}# is in the cache (all a community model has), load it instead of asking the CDN for\n"
            f"{i}# model.safetensors first.\n"
            f"{i}if (\n"
            f"{i}    use_safetensors is None\n"
            f"{i}    and cache_dir is not None\n"
            + (f"{i}    and not from_aistudio\n" if has_aistudio else "")
            + f"{i}    and not os.path.isfile(os.path.join(cache_dir, _add_variant(SAFE_WEIGHTS_NAME, variant)))\n"
            f"{i}    and os.path.isfile(os.path.join(cache_dir, _add_variant(PADDLE_WEIGHTS_NAME, variant)))\n"
            f"{i}):\n"
            f"{i}    use_safetensors = False\n"
            f"{i}# set correct filename\n"
            f"{i}if use_safetensors is not False:\n"
        )

    return _once(text, pattern, repl, what="model_utils.py")


def edit_tokenizer_utils_base(text: str) -> str:
    pattern = (
        r"^(?P<i>[ ]+)else:\n"
        r"(?P<log>(?P=i)    logger\.info\(\"Downloading %s and saved to %s\" % \(file_path, (?P<root>\w+)\)\)\n)"
        r"(?P<try>(?P=i)    try:\n"
        r"(?P=i)        if not url_file_exists\(file_path\):\n)"
    )

    def repl(m: re.Match) -> str:
        i, root = m["i"] + "    ", m["root"]
        return (
            f"{m['i']}else:\n"
            f"{i}# {MARK}: a community tokenizer whose\n"
            f"{i}# tokenizer_config.json is cached was downloaded before; the optional files it lacks\n"
            f"{i}# did not exist on the CDN then, so they are not asked for again.\n"
            f"{i}if (\n"
            f"{i}    file_id not in cls.resource_files_names\n"
            f"{i}    and file_path.startswith(COMMUNITY_MODEL_PREFIX)\n"
            f"{i}    and os.path.isfile(os.path.join({root}, cls.tokenizer_config_file))\n"
            f"{i}):\n"
            f"{i}    resolved_vocab_files[file_id] = None\n"
            f"{i}    continue\n"
            f"{m['log']}{m['try']}"
        )

    return _once(text, pattern, repl, what="tokenizer_utils_base.py")


def edit_tokenizer_utils_base_28(text: str) -> str:
    imp = "from ..utils.download import resolve_file_path\n"
    if text.count(imp) != 1:
        raise SystemExit("tokenizer_utils_base.py (2.8+): the resolve_file_path import matched "
                         f"{text.count(imp)} times, expected exactly once")
    added = "from ..utils.download import bos_aistudio_hf_try_to_load_from_cache  # Airlock offline patch\n"
    text = text.replace(imp, imp + added)
    pattern = (
        r"^(?P<head>(?P<i>[ ]+)for file_id, file_path in vocab_files\.items\(\):\n"
        r"(?P=i)    if file_path is None or os\.path\.isfile\(file_path\):\n"
        r"(?P=i)        resolved_vocab_files\[file_id\] = file_path\n"
        r"(?P=i)        continue\n)"
        r"(?P<call>(?P=i)    resolved_vocab_files\[file_id\] = resolve_file_path\(\n)"
    )

    def repl(m: re.Match) -> str:
        i = m["i"] + "    "
        return (
            f"{m['head']}"
            f"{i}# {MARK}: a community tokenizer whose\n"
            f"{i}# tokenizer_config.json is cached was downloaded before; the optional files it lacks\n"
            f"{i}# did not exist on the CDN then, so they are not asked for again.\n"
            f"{i}if (\n"
            f"{i}    not (from_hf_hub or from_aistudio)\n"
            f"{i}    and file_id not in cls.resource_files_names\n"
            f"{i}    and pretrained_model_name_or_path not in cls.pretrained_init_configuration\n"
            f"{i}    and bos_aistudio_hf_try_to_load_from_cache(\n"
            f"{i}        pretrained_model_name_or_path, file_path, cache_dir, subfolder\n"
            f"{i}    ) is None\n"
            f"{i}    and bos_aistudio_hf_try_to_load_from_cache(\n"
            f"{i}        pretrained_model_name_or_path, cls.tokenizer_config_file, cache_dir, subfolder\n"
            f"{i}    ) is not None\n"
            f"{i}):\n"
            f"{i}    resolved_vocab_files[file_id] = None\n"
            f"{i}    continue\n"
            f"{m['call']}"
        )

    return _once(text, pattern, repl, what="tokenizer_utils_base.py (2.8+)")


EDITS = {
    "paddlenlp/transformers/auto/modeling.py": edit_auto_modeling,
    "paddlenlp/transformers/configuration_utils.py": edit_configuration_utils,
    "paddlenlp/transformers/model_utils.py": edit_model_utils,
    "paddlenlp/transformers/tokenizer_utils_base.py": edit_tokenizer_utils_base,
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def variant_for(wheel: Path, version: str) -> tuple[str, dict[str, dict[str, str]]]:
    """(diff text, {path: {before, after}}) for one released wheel."""
    files: dict[str, dict[str, str]] = {}
    chunks = []
    with zipfile.ZipFile(wheel) as zf, tempfile.TemporaryDirectory() as tmp:
        for path in files_of(version):
            before = zf.read(path)
            edit = EDITS[path] if files_of(version) is FILES_26 else edit_tokenizer_utils_base_28
            after = edit(before.decode("utf-8")).encode("utf-8")
            a, b = Path(tmp) / "a" / path, Path(tmp) / "b" / path
            a.parent.mkdir(parents=True, exist_ok=True)
            b.parent.mkdir(parents=True, exist_ok=True)
            a.write_bytes(before)
            b.write_bytes(after)
            proc = subprocess.run(["diff", "-u", "--label", f"a/{path}", "--label", f"b/{path}", str(a), str(b)],
                                  capture_output=True, text=True)
            if proc.returncode != 1:
                raise SystemExit(f"{version} {path}: diff -u gave {proc.returncode}: {proc.stderr}")
            chunks.append(proc.stdout)
            files[path] = {"before": sha256(before), "after": sha256(after)}
    return "".join(chunks), files


def group(found: dict[str, tuple[str, dict]]) -> list[tuple[list[str], str, dict]]:
    """Consecutive releases whose files are byte-identical share one variant (one diff, one range)."""
    groups: list[tuple[list[str], str, dict]] = []
    for version, (diff, files) in found.items():
        if groups and groups[-1][1] == diff and groups[-1][2] == files:
            groups[-1][0].append(version)
        else:
            groups.append(([version], diff, files))
    return groups


def diff_name(versions: list[str]) -> str:
    return f"v{versions[0]}.diff" if len(versions) == 1 else f"v{versions[0]}-{versions[-1]}.diff"


def spec(versions: list[str]) -> str:
    return f"=={versions[0]}" if len(versions) == 1 else f">={versions[0]},<={versions[-1]}"


def yaml_variants(groups: list[tuple[list[str], str, dict]]) -> str:
    out = ["variants:"]
    for versions, _diff, files in groups:
        out.append(f"  - versions: \"{spec(versions)}\"")
        out.append(f"    diff: {diff_name(versions)}")
        out.append("    files:")
        for path, h in files.items():
            out.append(f"      {path}:")
            out.append(f"        before: {h['before']}")
            out.append(f"        after: {h['after']}")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    wheels = Path(argv[0])
    write = "--write" in argv
    found = {}
    for version in VERSIONS:
        matches = sorted(wheels.glob(f"paddlenlp-{version}-*.whl"))
        if len(matches) != 1:
            raise SystemExit(f"no single wheel for paddlenlp {version} in {wheels}: {matches}")
        found[version] = variant_for(matches[0], version)
    groups = group(found)
    problems = []
    wanted = {diff_name(versions): diff for versions, diff, _ in groups}
    for name, diff in wanted.items():
        target = PATCH_DIR / name
        if write:
            target.write_text(diff)
        elif not target.exists() or target.read_text() != diff:
            problems.append(f"{name} differs from what the wheels give")
    for stale in sorted(PATCH_DIR.glob("*.diff")):
        if stale.name not in wanted:
            if write:
                stale.unlink()
            else:
                problems.append(f"{stale.name} is no variant's diff")
    # variants: is the last section of patch.yaml
    yaml_path = PATCH_DIR / "patch.yaml"
    text = yaml_path.read_text()
    start = text.index("\nvariants:\n") + 1
    block = yaml_variants(groups)
    if write:
        yaml_path.write_text(text[:start] + block)
    elif text[start:] != block:
        problems.append("patch.yaml variants differ from what the wheels give")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
