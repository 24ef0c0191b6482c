"""Command line: parses, validates and calls the library. Errors are formatted here and only here."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from packager import __version__
from packager.errors import AirlockError

if TYPE_CHECKING:
    from packager.cache import Cache
    from packager.patching.meta import Patch
    from packager.patching.venv import VenvPatch
    from packager.signing import PublicKey
    from packager.spec import SpecFile

log = logging.getLogger("packager")


def _keys(paths: Sequence[str] | None) -> list[PublicKey]:
    from packager.signing import load_public_key

    return [load_public_key(p) for p in paths or []]


def cmd_keygen(a: argparse.Namespace) -> int:
    from packager.signing import PASSWORD_ENV, write_keypair

    password = os.environ.get(PASSWORD_ENV) or None
    key, pub = write_keypair(a.out, password, force=a.force)
    print(f"secret key: {key}{'' if password else '  (unencrypted; set ' + PASSWORD_ENV + ' to encrypt)'}")
    print(f"public key: {pub}")
    return 0


#: Imported by lock and build only (the ``build`` extra); the offline control node does without them.
_BUILD_MODULES = ("httpx", "tqdm", "requests", "huggingface_hub", "modelscope")


def _need_build_extra() -> None:
    import importlib.util

    def absent(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is None
        except (ImportError, ValueError):
            return True

    missing = [m for m in _BUILD_MODULES if absent(m)]
    if missing:
        raise AirlockError(f"building bundles needs {', '.join(missing)}, which this environment lacks",
                           hint="pip install 'airlock-packager[build]' (verify, inspect and unpack work without)")


def _spec_and_cache(a: argparse.Namespace) -> tuple[SpecFile, Cache]:
    from packager.cache import Cache
    from packager.spec import load_spec

    return load_spec(a.models), Cache(Path(a.cache) if a.cache else None)


def cmd_lock(a: argparse.Namespace) -> int:
    _need_build_extra()
    from packager.build import lock

    specfile, cache = _spec_and_cache(a)
    lk = lock(specfile, cache, relock=a.relock)
    wheels = len(lk.python.wheels) if lk.python else 0
    models = len(lk.models.models) if lk.models else 0
    debs = f", {len(lk.apt.debs)} debs" if lk.apt else ""
    print(f"{specfile.lock_path}: {wheels} wheels, {models} models{debs}")
    return 0


def cmd_build(a: argparse.Namespace) -> int:
    _need_build_extra()
    from packager.build import build
    from packager.signing import load_secret_key

    specfile, cache = _spec_and_cache(a)
    key = load_secret_key(a.key)  # fail on a bad key before downloading gigabytes
    path = build(specfile, key, Path(a.out), cache, relock=a.relock, jobs=a.jobs,
                 base=Path(a.base) if a.base else None, base_keys=_keys(a.base_pubkey))
    print(path)
    return 0


def cmd_verify(a: argparse.Namespace) -> int:
    from packager.bundle.verify import verify_bundle

    vb = verify_bundle(Path(a.bundle), _keys(a.pubkey), jobs=a.jobs, base=Path(a.base) if a.base else None)
    m = vb.manifest
    if m.base is None:
        print(f"OK: {m.dirname}: signature by key {vb.signature.key.key_id_hex}, "
              f"{len(m.files)} files in {len(m.blobs())} blobs verified")
        return 0
    from packager.bundle.delta import describe_ref

    carried, provided = len(m.carried()), len(m.base.provides)
    if vb.base is not None:
        print(f"OK: {m.dirname}: delta, signature by key {vb.signature.key.key_id_hex}, complete release "
              f"{m.name} {m.version} verified: {len(m.files)} files in {len(m.blobs())} blobs, {carried} from the "
              f"delta and {provided} from the base {vb.base} (manifest sha256 {m.base.manifest_sha256})")
    else:
        print(f"OK: {m.dirname}: delta, signature by key {vb.signature.key.key_id_hex}, the {carried} blobs it "
              f"carries verified; {provided} of the release's {len(m.blobs())} blobs come from the base "
              f"{describe_ref(m.base)}, not checked: pass --base BASE_BUNDLE to verify the complete release")
    return 0


def cmd_inspect(a: argparse.Namespace) -> int:
    from packager.bundle.inspect import describe, render_json, render_text
    from packager.bundle.manifest import read_manifest
    from packager.bundle.verify import check_signature

    bundle = Path(a.bundle)
    if a.pubkey:
        manifest, verified = check_signature(bundle, _keys(a.pubkey))
        signed_by: str | None = verified.key.key_id_hex
    else:
        manifest, signed_by = read_manifest(bundle), None
    info = describe(manifest, signed_by=signed_by)
    print(render_json(info) if a.json else render_text(info))
    return 0


def cmd_unpack(a: argparse.Namespace) -> int:
    from packager.bundle.unpack import unpack

    dest = unpack(Path(a.bundle), Path(a.dest), _keys(a.pubkey), jobs=a.jobs, base=Path(a.base) if a.base else None)
    print(dest)
    return 0


def _catalog(a: argparse.Namespace) -> list[Patch]:
    from packager.patching.meta import default_catalog

    return default_catalog([Path(d) for d in a.catalog or []])


def _table(headers: list[str], rows: list[list[str]]) -> str:
    from packager.bundle.inspect import _table as table

    return "\n".join(table(headers, rows))


def cmd_patches_list(a: argparse.Namespace) -> int:
    patches = _catalog(a)
    print(_table(["id", "distribution", "variants", "fixed", "summary"], [
        [p.id, p.dist, "; ".join(v.versions for v in p.meta.variants) or "-",
         "; ".join(f.versions for f in p.meta.fixed) or "-", p.meta.summary] for p in patches]))
    print(f"{len(patches)} patch(es)")
    return 0


def cmd_patches_check(a: argparse.Namespace) -> int:
    import importlib.util

    from packager.errors import PatchError

    if importlib.util.find_spec("httpx") is None:
        raise AirlockError("patches check needs httpx", hint="pip install 'airlock-packager[build]'")
    from packager.patching.check import check_catalog, render_report

    patches = _catalog(a)
    if a.only:
        unknown = sorted(set(a.only) - {p.id for p in patches})
        if unknown:
            raise PatchError(f"no patch {', '.join(unknown)} in the catalogue", where="--only",
                             hint="python -m packager patches list shows the catalogue")
        patches = [p for p in patches if p.id in a.only]
    report = check_catalog(patches, a.index_url)
    print(render_report(report, strict=a.strict))
    errors = report.errors(strict=a.strict)
    if errors:
        raise PatchError(f"{len(errors)} problem(s) in the catalogue:\n  " + "\n  ".join(errors))
    return 0


def _venv_rows(results: list[VenvPatch], verb: str | None = None) -> str:
    words = {"applies": "applies", "not_needed": "not needed", "unchecked": "UNCHECKED"}
    rows = []
    for r in results:
        state = r.state.replace("_", " ") if r.status == "applies" else "-"
        done = f"{verb} {len(r.changed)} file(s)" if verb and r.changed else "-"
        rows.append([r.id, r.distribution, r.version, words[r.status], state, done])
    return _table(["id", "distribution", "version", "catalogue", "venv", "this run"], rows)


def cmd_patches_status(a: argparse.Namespace) -> int:
    from packager.patching.venv import status_venv

    print(_venv_rows(status_venv(Path(a.venv), _catalog(a))))
    return 0


def cmd_patches_apply(a: argparse.Namespace) -> int:
    from packager.patching.venv import apply_venv

    results = apply_venv(Path(a.venv), _catalog(a))
    print(_venv_rows(results, "patched"))
    for r in results:
        if r.status == "unchecked":
            log.warning("patches: %s not applied: %s %s is in no checked range of the catalogue", r.id,
                        r.distribution, r.version)
    return 0


def cmd_patches_revert(a: argparse.Namespace) -> int:
    from packager.patching.venv import revert_venv

    print(_venv_rows(revert_venv(Path(a.venv), _catalog(a)), "restored"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m packager",
        description="Build, sign, verify and unpack offline bundles for air-gapped model serving.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common_spec(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--models", required=True, metavar="SPEC", help="the spec, e.g. models.yaml")
        sp.add_argument("--cache", metavar="DIR", help="download cache (default $AIRLOCK_CACHE or ~/.cache/airlock)")
        sp.add_argument("--relock", action="store_true", help="resolve everything again, ignoring models.lock")

    def jobs(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--jobs", "-j", type=int, default=8, metavar="N", help="parallel downloads/hashes")

    def pubkey(sp: argparse.ArgumentParser, required: bool) -> None:
        sp.add_argument("--pubkey", action="append", required=required, metavar="KEY",
                        help="trusted minisign public key; repeat to trust several (key rotation)")

    def base_bundle(sp: argparse.ArgumentParser, verb: str) -> None:
        sp.add_argument("--base", metavar="BASE_BUNDLE",
                        help=f"for a delta bundle: the full bundle it was built against, to {verb} the "
                             "complete release")

    sp = sub.add_parser("keygen", help="make a minisign key pair: PREFIX.key and PREFIX.pub")
    sp.add_argument("--out", required=True, metavar="PREFIX")
    sp.add_argument("--force", action="store_true", help="overwrite an existing key pair")
    sp.set_defaults(func=cmd_keygen)

    sp = sub.add_parser("lock", help="resolve the spec for the target and write models.lock beside it")
    common_spec(sp)
    sp.set_defaults(func=cmd_lock)

    sp = sub.add_parser("build", help="lock, fetch, assemble and sign a bundle")
    common_spec(sp)
    sp.add_argument("--key", required=True, metavar="SECRET", help="minisign secret key")
    sp.add_argument("--out", default="dist", metavar="DIR", help="where to write <name>-<version>/ (default dist/)")
    sp.add_argument("--base", metavar="BASE", help="build a delta: carry only the blobs this earlier bundle (its "
                    "folder or its manifest.json) lacks; written as <name>-<version>-delta-from-<base version>/")
    sp.add_argument("--base-pubkey", action="append", metavar="KEY",
                    help="check the base's signature with this public key; repeatable")
    jobs(sp)
    sp.set_defaults(func=cmd_build)

    sp = sub.add_parser("verify", help="check the signature and every file of a bundle")
    sp.add_argument("bundle", metavar="BUNDLE")
    pubkey(sp, True)
    base_bundle(sp, "verify")
    jobs(sp)
    sp.set_defaults(func=cmd_verify)

    sp = sub.add_parser("inspect", help="show what a bundle carries")
    sp.add_argument("bundle", metavar="BUNDLE")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    pubkey(sp, False)
    sp.set_defaults(func=cmd_inspect)

    sp = sub.add_parser("unpack", help="verify, then materialise the bundle's files under DEST")
    sp.add_argument("bundle", metavar="BUNDLE")
    sp.add_argument("dest", metavar="DEST")
    pubkey(sp, True)
    base_bundle(sp, "unpack")
    jobs(sp)
    sp.set_defaults(func=cmd_unpack)
    _patches_parser(sub)
    return p


def _patches_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = sub.add_parser("patches", help="the offline patches catalogue: list, check, and apply to a venv")
    psub = sp.add_subparsers(dest="patches_command", required=True, metavar="ACTION")

    def catalog(pp: argparse.ArgumentParser) -> None:
        pp.add_argument("--catalog", action="append", metavar="DIR",
                        help="another catalogue folder on top of the built-in one; repeatable")

    def venv(pp: argparse.ArgumentParser) -> None:
        pp.add_argument("--venv", required=True, metavar="V", help="the virtual environment (holds bin/ and lib/)")

    pp = psub.add_parser("list", help="the patches in the catalogue")
    catalog(pp)
    pp.set_defaults(func=cmd_patches_list)

    pp = psub.add_parser("check", help="check the catalogue against the released wheels on the package index")
    catalog(pp)
    pp.add_argument("--only", action="append", metavar="ID", help="check only this patch; repeatable")
    pp.add_argument("--strict", action="store_true", help="a newer release in no checked range is an error")
    pp.add_argument("--index-url", default="https://pypi.org", metavar="URL",
                    help="index with the PyPI JSON API (/pypi/<name>/json); default https://pypi.org")
    pp.set_defaults(func=cmd_patches_check)

    pp = psub.add_parser("status", help="which patches a venv needs and has")
    venv(pp)
    catalog(pp)
    pp.set_defaults(func=cmd_patches_status)

    pp = psub.add_parser("apply", help="apply the catalogue's patches to a venv (checked first, atomic, idempotent)")
    venv(pp)
    catalog(pp)
    pp.set_defaults(func=cmd_patches_apply)

    pp = psub.add_parser("revert", help="put back the files as the wheels ship them")
    venv(pp)
    catalog(pp)
    pp.set_defaults(func=cmd_patches_revert)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "httpcore", "urllib3", "filelock", "modelscope", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    try:
        rc: int = args.func(args)
    except AirlockError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; nothing incomplete was left under a final name", file=sys.stderr)
        return 130
    return rc
