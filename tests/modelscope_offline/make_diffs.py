"""Regenerate the diffs and hashes of ``packager/patches/modelscope-*/`` from the released wheels.

    python tests/modelscope_offline/make_diffs.py WHEEL_DIR [--write]

WHEEL_DIR holds ``modelscope-<V>-py3-none-any.whl`` for every release named in PATCHES below
(``pip download --no-deps modelscope==V -d WHEEL_DIR``). For each variant the touched files are read from the
wheel of every release the variant covers (they must be byte-identical: that is what a range means in
docs/patches.md), the edit below is made with exact anchors (each must match exactly once, or the script
stops), and ``diff -u`` of before and after is the variant's diff. For each ``fixed`` range the evidence string
must be in every covered release's file and in none of the variants' before files. With ``--write`` the diffs
and patch.yaml's ``variants:`` blocks are written; without, it only checks that the committed ones are what the
wheels give (exit 1 and a list of differences otherwise).

The edits:

* ``modelscope-offline-cache`` (``hub/file_download.py``, ``hub/snapshot_download.py``): with
  ``MODELSCOPE_OFFLINE`` set to 1/true/yes/on, ``model_file_download`` and ``snapshot_download`` behave as if
  called with ``local_files_only=True`` (1.40 also skips the revision look-up ``model_file_download`` makes
  first when no revision is given);
* ``modelscope-server-offline`` (``server/api_server.py``, ``utils/input_output.py``): ``--revision`` is
  optional; the model is loaded and unloaded in a lifespan instead of ``app.add_event_handler`` (gone in
  Starlette 1.0); ``create_pipeline`` builds the pipeline from the local model folder (``--model_id`` itself
  when it is a folder, else ``snapshot_download``'s) instead of the model id;
* ``modelscope-pipeline-schema-json`` (``utils/pipeline_schema.json``): the trailing comma after the last task.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "packager" / "patches"

#: every modelscope release on the index from 1.13.3 to 1.40.2 (``pip index versions --pre modelscope``, checked
#: when this was written; the only pre-release on the index is 1.8.0rc0)
RELEASES = (
    "1.13.3", "1.14.0", "1.15.0", "1.16.0", "1.16.1", "1.17.0", "1.17.1", "1.18.0", "1.18.1", "1.19.0", "1.19.1",
    "1.19.2", "1.20.0", "1.20.1", "1.21.0", "1.21.1", "1.22.0", "1.22.1", "1.22.2", "1.22.3", "1.23.0", "1.23.1",
    "1.23.2", "1.24.0", "1.24.1", "1.25.0", "1.26.0", "1.27.0", "1.27.1", "1.28.0", "1.28.1", "1.28.2", "1.29.0",
    "1.29.1", "1.29.2", "1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0", "1.35.1", "1.35.2", "1.35.3",
    "1.35.4", "1.36.0", "1.36.1", "1.36.2", "1.36.3", "1.37.0", "1.37.1", "1.38.0", "1.38.1", "1.39.0", "1.39.1",
    "1.40.0", "1.40.1", "1.40.2",
)

Edit = Callable[[str], str]


def once(text: str, old: str, new: str, *, what: str) -> str:
    count = text.count(old)
    if count != 1:
        raise SystemExit(f"{what}: the anchor matched {count} times, expected exactly once:\n{old}")
    return text.replace(old, new)


# --- modelscope-offline-cache ------------------------------------------------------------------------------

OFFLINE = ("    if not local_files_only and os.environ.get('MODELSCOPE_OFFLINE', '').strip().lower() in (\n"
           "            '1', 'true', 'yes', 'on'):\n"
           "        local_files_only = True  # offline: the local cache only, no hub look-up\n")


def file_download_114(t: str) -> str:
    return once(t, '            if some parameter value is invalid\n    """\n    if cache_dir is None:\n',
                '            if some parameter value is invalid\n    """\n' + OFFLINE + "    if cache_dir is None:\n",
                what="1.14 hub/file_download.py")


def snapshot_download_114(t: str) -> str:
    return once(t, '        if some parameter value is invalid\n    """\n\n    if cache_dir is None:\n',
                '        if some parameter value is invalid\n    """\n\n' + OFFLINE + "    if cache_dir is None:\n",
                what="1.14 hub/snapshot_download.py")


def file_download_140(t: str) -> str:
    doc = '    """Download a single model file with release-mode revision resolution."""\n'
    return once(t, doc + "    if revision is None:\n",
                doc + OFFLINE + "    if revision is None and not local_files_only:\n", what="1.40 hub/file_download.py")


def snapshot_download_140(t: str) -> str:
    t = once(t, "from __future__ import annotations\nimport threading\n",
             "from __future__ import annotations\nimport os\nimport threading\n", what="1.40 snapshot imports")
    anchor = ("    _warn_if_legacy_cache_detection_unavailable()\n    effective_id = repo_id or model_id\n"
              "    effective_type = repo_type or 'model'\n")
    return once(t, anchor, OFFLINE + anchor, what="1.40 hub/snapshot_download.py")


# --- modelscope-server-offline -----------------------------------------------------------------------------

LIFESPAN = """
    # Starlette 1.0 (FastAPI >= 0.130) dropped app.add_event_handler: load and unload the model in a lifespan
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        start_app_handler(app)()
        yield
        stop_app_handler(app)()

    app = FastAPI(
        title='modelscope_server',
        version='0.1',
        debug=True,
        swagger_ui_parameters={'tryItOutEnabled': True},
        lifespan=lifespan)
    app.state.args = args
    app.include_router(api_router)
    return app
"""

OLD_APP = """    app = FastAPI(
        title='modelscope_server',
        version='0.1',
        debug=True,
        swagger_ui_parameters={'tryItOutEnabled': True})
    app.state.args = args
    app.include_router(api_router)

    app.add_event_handler('startup', start_app_handler(app))
    app.add_event_handler('shutdown', stop_app_handler(app))
    return app
"""


def _revision_optional(t: str) -> str:
    return once(t, "    parser.add_argument(\n        '--revision', required=True, type=str, help='Model revision')\n",
                "    parser.add_argument(\n        '--revision',\n        default=None,\n        type=str,\n"
                "        help='Model revision (default: the cached snapshot, or master)')\n",
                what="api_server.py --revision")


def api_server_114(t: str) -> str:
    t = once(t, "import argparse\n\nimport uvicorn\n", "import argparse\nimport contextlib\n\nimport uvicorn\n",
             what="1.14 api_server.py imports")
    t = once(t, "def get_app(args) -> FastAPI:\n" + OLD_APP, "def get_app(args) -> FastAPI:\n" + LIFESPAN,
             what="1.14 api_server.py get_app")
    return _revision_optional(t)


def api_server_140(t: str) -> str:
    imports = ("    from fastapi import FastAPI\n    from modelscope.server.api.routers.router import api_router\n"
               "    from modelscope.server.core.event_handlers import (start_app_handler,\n"
               "                                                       stop_app_handler)\n")
    t = once(t, "def get_app(args):\n" + imports + OLD_APP,
             "def get_app(args):\n    import contextlib\n" + imports + LIFESPAN, what="1.40 api_server.py get_app")
    return _revision_optional(t)


def input_output(t: str) -> str:
    imp = "from modelscope.hub.file_download import model_file_download\n"
    t = once(t, imp, imp + "from modelscope.hub.snapshot_download import snapshot_download\n",
             what="input_output.py imports")
    return once(t, """    model_configuration_file = model_file_download(
        model_id=model_id,
        file_path=ModelFile.CONFIGURATION,
        revision=revision)
    cfg = Config.from_file(model_configuration_file)
    return pipeline(
        task=cfg.task,
        model=model_id,
        model_revision=revision,
""", """    # Build the pipeline from the local model directory: given a model id, pipeline() asks the hub about it
    # again (is_official_hub_path), which fails offline even when the model is in the cache.
    if os.path.isdir(model_id):
        model_dir = model_id
    else:
        model_dir = snapshot_download(model_id, revision=revision)
    cfg = Config.from_file(os.path.join(model_dir, ModelFile.CONFIGURATION))
    return pipeline(
        task=cfg.task,
        model=model_dir,
        model_revision=revision,
""", what="input_output.py create_pipeline")


# --- modelscope-pipeline-schema-json -----------------------------------------------------------------------

def schema_json(t: str) -> str:
    old = "            }\n        }\n    },\n}\n"
    if not t.endswith(old):
        raise SystemExit("pipeline_schema.json: does not end in the trailing comma")
    return t[: -len(old)] + "            }\n        }\n    }\n}\n"


#: the evidence that a release's pipeline_schema.json ends without the trailing comma
SCHEMA_FIXED = "            }\n        }\n    }\n}"


# --- the catalogue entries ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class VariantSpec:
    releases: tuple[str, ...]  # every release on the index inside the range, all byte-identical
    diff: str
    edits: dict[str, Edit]

    @property
    def versions(self) -> str:
        lo, hi = self.releases[0], self.releases[-1]
        return f"=={lo}" if lo == hi else f">={lo},<={hi}"


@dataclass(frozen=True)
class FixedSpec:
    releases: tuple[str, ...]
    file: str
    contains: str

    @property
    def versions(self) -> str:
        return f">={self.releases[0]},<={self.releases[-1]}"


@dataclass(frozen=True)
class PatchSpec:
    variants: tuple[VariantSpec, ...]
    fixed: tuple[FixedSpec, ...] = field(default=())


def _span(lo: str, hi: str) -> tuple[str, ...]:
    return tuple(v for v in RELEASES if Version(lo) <= Version(v) <= Version(hi))


HUB_FD, HUB_SD = "modelscope/hub/file_download.py", "modelscope/hub/snapshot_download.py"
API, IO = "modelscope/server/api_server.py", "modelscope/utils/input_output.py"
SCHEMA = "modelscope/utils/pipeline_schema.json"

PATCHES: dict[str, PatchSpec] = {
    "modelscope-offline-cache": PatchSpec((
        VariantSpec(_span("1.13.3", "1.14.0"), "v1.14.diff",
                    {HUB_FD: file_download_114, HUB_SD: snapshot_download_114}),
        VariantSpec(_span("1.39.0", "1.40.2"), "v1.40.diff",
                    {HUB_FD: file_download_140, HUB_SD: snapshot_download_140}),
    )),
    "modelscope-server-offline": PatchSpec((
        VariantSpec(_span("1.13.3", "1.15.0"), "v1.14.diff", {API: api_server_114, IO: input_output}),
        VariantSpec(_span("1.27.0", "1.40.2"), "v1.40.diff", {API: api_server_140, IO: input_output}),
    )),
    "modelscope-pipeline-schema-json": PatchSpec(
        (VariantSpec(("1.13.3",), "v1.13.3.diff", {SCHEMA: schema_json}),
         VariantSpec(("1.14.0",), "v1.14.diff", {SCHEMA: schema_json})),
        (FixedSpec(_span("1.15.0", "1.40.2"), SCHEMA, SCHEMA_FIXED),),
    ),
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_member(wheels: Path, version: str, path: str) -> bytes:
    matches = sorted(wheels.glob(f"modelscope-{version}-*.whl"))
    if len(matches) != 1:
        raise SystemExit(f"no single wheel for modelscope {version} in {wheels}: {matches}")
    with zipfile.ZipFile(matches[0]) as z:
        return z.read(path)


def unified_diff(path: str, before: bytes, after: bytes) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp, "a"), Path(tmp, "b")
        a.write_bytes(before)
        b.write_bytes(after)
        r = subprocess.run(["diff", "-u", "--label", f"a/{path}", "--label", f"b/{path}", str(a), str(b)],
                           capture_output=True, text=True, check=False)
    if r.returncode != 1:
        raise SystemExit(f"diff {path}: exit {r.returncode}: {r.stderr}")
    return r.stdout


def build_variant(wheels: Path, spec: VariantSpec) -> tuple[str, dict[str, tuple[str, str]]]:
    """The variant's diff text and {path: (before sha256, after sha256)}."""
    diff, hashes = "", {}
    for path, edit in sorted(spec.edits.items()):
        before = read_member(wheels, spec.releases[0], path)
        for v in spec.releases[1:]:
            if read_member(wheels, v, path) != before:
                raise SystemExit(f"{path} differs between {spec.releases[0]} and {v}: not one variant")
        after = edit(before.decode()).encode()
        diff += unified_diff(path, before, after)
        hashes[path] = (sha256(before), sha256(after))
    return diff, hashes


def yaml_variants(built: list[tuple[VariantSpec, dict[str, tuple[str, str]]]]) -> str:
    out = ["variants:\n"]
    for spec, hashes in built:
        out.append(f'  - versions: "{spec.versions}"\n    diff: {spec.diff}\n    files:\n')
        for path, (before, after) in sorted(hashes.items()):
            out.append(f"      {path}:\n        before: {before}\n        after: {after}\n")
    return "".join(out)


def check_patch(wheels: Path, pid: str, pspec: PatchSpec, *, write: bool) -> list[str]:
    """Build (or check) one catalogue entry's diffs and variants block; the problems found."""
    problems: list[str] = []
    folder = CATALOG / pid
    built = []
    for vspec in pspec.variants:
        covered = {v for v in RELEASES if SpecifierSet(vspec.versions).contains(v, prereleases=True)}
        if set(vspec.releases) != covered:
            raise SystemExit(f"{pid} {vspec.versions}: the range and the releases listed disagree")
        diff, hashes = build_variant(wheels, vspec)
        built.append((vspec, hashes))
        target = folder / vspec.diff
        if write:
            target.write_text(diff)
        elif not target.exists() or target.read_text() != diff:
            problems.append(f"{pid}/{vspec.diff} differs from what the {vspec.versions} wheels give")
    for fspec in pspec.fixed:
        problems += [f"{pid}: fixed evidence not in {fspec.file} of {v}" for v in fspec.releases
                     if fspec.contains not in read_member(wheels, v, fspec.file).decode()]
        problems += [f"{pid}: fixed evidence is also in the unpatched {fspec.file} of {vspec.releases[0]}"
                     for vspec in pspec.variants if fspec.file in vspec.edits
                     and fspec.contains in read_member(wheels, vspec.releases[0], fspec.file).decode()]
    yaml_path = folder / "patch.yaml"
    text = yaml_path.read_text()
    start = text.index("variants:\n")
    end = text.index("fixed:\n") if "fixed:\n" in text else len(text)
    block = yaml_variants(built)
    if write:
        yaml_path.write_text(text[:start] + block + text[end:])
    elif text[start:end] != block:
        problems.append(f"{pid}/patch.yaml variants differ from what the wheels give")
    return problems


def main(argv: list[str]) -> int:
    wheels = Path(argv[0])
    write = "--write" in argv
    problems = [p for pid, pspec in PATCHES.items() for p in check_patch(wheels, pid, pspec, write=write)]
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
