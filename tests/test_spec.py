"""The spec: valid files parse; every kind of mistake names file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from packager.errors import SpecError
from packager.spec import HubModel, LocalModel, load_spec, parse_spec

GOOD = """\
bundle:  {name: demo, version: 1.0.0}
target:  {os: debian12, arch: x86_64, python: "3.11", manylinux: "2_31", cuda: "12.4"}
python:
  requirements: ["fastapi==0.115.*", "uvicorn"]
  indexes: [https://download.pytorch.org/whl/cu124]
  find_links: []
  exclude: [torchvision]
models:
  - {name: chat, source: huggingface, repo: org/name, revision: main, include: ["*"], exclude: []}
  - {name: asr,  source: modelscope,  repo: iic/SenseVoiceSmall, revision: master}
  - {name: mine, source: local, path: ./models/mine}
"""


def test_root_demo_spec_is_valid() -> None:
    sf = load_spec(Path(__file__).resolve().parents[1] / "models.yaml")
    assert sf.spec.bundle.name == "demo"


def test_good_spec(tmp_path: Path) -> None:
    p = tmp_path / "models.yaml"
    p.write_text(GOOD)
    sf = load_spec(p)
    s = sf.spec
    assert s.target.python_platform == "x86_64-manylinux_2_31"
    assert s.target.cuda_label == "cu124"
    assert isinstance(s.models[0], HubModel) and s.models[0].revision == "main"
    assert isinstance(s.models[2], LocalModel)
    assert sf.resolve(s.models[2].path) == tmp_path / "models" / "mine"
    assert sf.lock_path == tmp_path / "models.lock"


def test_section_digests_track_changes() -> None:
    a = parse_spec(GOOD)
    b = parse_spec(GOOD.replace('"uvicorn"', '"uvicorn==0.30.*"'))
    assert a.section_digest("python") != b.section_digest("python")
    assert a.section_digest("models") == b.section_digest("models")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("requirements:", "requirments:"), r"models.yaml:4: python.requirments: unknown key"),
        (('python: "3.11"', "python: 3.10"), r"models.yaml:2: target.python: write it as a quoted string"),
        (("source: modelscope", "source: gitlab"), r"models.yaml:10: models.1: source must be one of"),
        (("path: ./models/mine", "pth: ./models/mine"), r"models.yaml:11: models.2.path: required field"),
        (('"uvicorn"', '"uvicorn >>> 1"'), r"python.requirements: requirements\[1\] 'uvicorn >>> 1' is not a PEP 508"),
        (("name: asr", "name: chat"), r"model name 'chat' is used twice"),
        (("arch: x86_64", "arch: sparc"), r"models.yaml:2: target.arch: must be 'x86_64' or 'aarch64'"),
        (("repo: org/name", "repo: no-slash"), r"models.0.repo"),
    ],
)
def test_errors_name_line_and_field(tmp_path: Path, edit: tuple[str, str], expected: str) -> None:
    p = tmp_path / "models.yaml"
    p.write_text(GOOD.replace(*edit, 1))
    with pytest.raises(SpecError, match=expected):
        load_spec(p)


def test_not_yaml_and_not_mapping_and_missing(tmp_path: Path) -> None:
    p = tmp_path / "models.yaml"
    p.write_text("bundle: [unclosed\n")
    with pytest.raises(SpecError, match=r"models.yaml:\d+: not valid YAML"):
        load_spec(p)
    p.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="must be a mapping"):
        load_spec(p)
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")
    p.write_text("bundle: {name: x, version: '1'}\n")
    with pytest.raises(SpecError, match="target: required field is missing"):
        load_spec(p)
