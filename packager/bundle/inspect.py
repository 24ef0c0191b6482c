"""Describe what a bundle carries: as a table for people, or JSON for scripts."""

from __future__ import annotations

import json
from typing import Any

from packager.bundle.manifest import Manifest
from packager.progress import human_size


def describe(manifest: Manifest, *, signed_by: str | None) -> dict[str, Any]:
    sizes = {f.path: f.size for f in manifest.files}
    return {
        "bundle": manifest.bundle,
        "target": manifest.target,
        "provenance": manifest.provenance.model_dump(),
        "signature": {"checked": signed_by is not None, "key_id": signed_by},
        "packages": [
            {"name": p.name, "version": p.version, "file": p.file, "size": sizes.get(p.file, 0)}
            for p in manifest.packages
        ],
        "models": [m.model_dump() for m in manifest.models],
        "system_packages": None if manifest.system_packages is None else [
            {"name": d.name, "version": d.version, "arch": d.arch, "file": d.file, "size": sizes.get(d.file, 0)}
            for d in manifest.system_packages
        ],
        "controller": _controller(manifest),
        "patches": None if manifest.patches is None else [e.model_dump() for e in manifest.patches],
        "totals": {
            "files": len(manifest.files),
            "blobs": len(manifest.blobs()),
            "logical_size": manifest.total_size(),
            "stored_size": sum(manifest.blobs().values()),
        },
        "delta": _delta(manifest),
    }


def _delta(manifest: Manifest) -> dict[str, Any] | None:
    """For a delta bundle: the base it needs, and what it carries itself against the whole release."""
    ref = manifest.base
    if ref is None:
        return None
    carried = manifest.carried()
    blobs = manifest.blobs()
    return {
        "base": {"name": ref.name, "version": ref.version, "manifest_sha256": ref.manifest_sha256},
        "carried_blobs": len(carried),
        "carried_size": sum(carried.values()),
        "base_blobs": len(ref.provides),
        "base_size": sum(blobs[d] for d in ref.provides),
    }


def _controller(manifest: Manifest) -> dict[str, Any] | None:
    c = manifest.controller
    if c is None:
        return None
    size = sum(f.size for f in manifest.files if f.path.startswith("controller/"))
    boot = next((f.sha256 for f in manifest.files if f.path == c.bootstrap), None)
    return {**c.model_dump(), "size": size, "bootstrap_sha256": boot}


def render_json(info: dict[str, Any]) -> str:
    return json.dumps(info, indent=2, sort_keys=True)


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*r) for r in rows]
    return out


def render_text(info: dict[str, Any]) -> str:
    b, t, p, tot = info["bundle"], info["target"], info["provenance"], info["totals"]
    sig = info["signature"]
    lines = [
        f"bundle   {b['name']} {b['version']}",
        "target   " + ", ".join(f"{k}={v}" for k, v in t.items()),
        f"built    {p['created']} by packager {p['packager_version']}",
        "signed   " + (f"verified, key {sig['key_id']}" if sig["checked"] else "NOT CHECKED (pass --pubkey)"),
        f"size     {human_size(tot['logical_size'])} in {tot['files']} files, "
        f"{human_size(tot['stored_size'])} stored in {tot['blobs']} blobs",
    ]
    d = info.get("delta")
    if d is not None:
        base = d["base"]
        lines += [
            f"delta    needs base {base['name']} {base['version']} (manifest sha256 {base['manifest_sha256']})",
            f"         carries {human_size(d['carried_size'])} in {d['carried_blobs']} blobs of "
            f"{human_size(tot['stored_size'])}; {human_size(d['base_size'])} in {d['base_blobs']} blobs "
            "come from the base",
        ]
    lines += [
        "",
        f"packages ({len(info['packages'])})",
    ]
    lines += _table(["name", "version", "size"],
                    [[x["name"], x["version"], human_size(x["size"])] for x in info["packages"]])
    lines += ["", f"models ({len(info['models'])})"]
    lines += _table(
        ["name", "source", "repo / path", "revision", "commit", "files", "size"],
        [
            [m["name"], m["source"], m["repo"] or "-", m["revision"] or "-", (m["commit"] or "-")[:12],
             str(m["files"]), human_size(m["size"])]
            for m in info["models"]
        ],
    )
    debs = info.get("system_packages")
    if debs is not None:
        lines += ["", f"system packages ({len(debs)}, apt repository apt/, "
                      f"{human_size(sum(d['size'] for d in debs))})"]
        lines += _table(["name", "version", "arch", "size"],
                        [[d["name"], d["version"], d["arch"], human_size(d["size"])] for d in debs])
    patches = info.get("patches")
    if patches is not None:
        words = {"applies": "applies", "not_needed": "not needed", "unchecked": "unchecked"}
        counts = ", ".join(f"{sum(x['status'] == k for x in patches)} {w}" for k, w in words.items())
        lines += ["", f"patches ({len(patches)}: {counts}; files under patches/)"]
        lines += _table(["id", "distribution", "version", "status"],
                        [[x["id"], x["distribution"], x["version"], words.get(x["status"], x["status"])]
                         for x in patches])
    c = info.get("controller")
    lines += ["", "controller " + (
        f"Python {c['python']} ({c['arch']}, manylinux {c['manylinux']}): {c['wheels']} wheels, "
        f"ansible-core {c['ansible_core'] or '-'}, packager wheel {'yes' if c['packager'] else 'NO'}, "
        f"{c['deploy_files']} deploy files, {human_size(c['size'])}; {c['bootstrap']} is blob "
        f"{c['bootstrap_sha256']}" if c else "none (the spec has no controller section)")]
    return "\n".join(lines)
