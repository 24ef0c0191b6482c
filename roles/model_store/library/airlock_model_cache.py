#!/usr/bin/python
# Copyright: Airlock contributors. Apache-2.0.
"""Publish a release's model folders in the Hugging Face and ModelScope cache layouts (links only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: airlock_model_cache
short_description: Lay out a release's models as the hub clients' offline caches
description:
  - Checks that every model folder of the release exists, then links each one into
    C(hf_home/hub/models--{org}--{name}/snapshots/{commit}) with C(refs/{revision}) (huggingface_hub,
    read with HF_HUB_OFFLINE=1) and into C(modelscope_cache/models/{owner}/{name}) (modelscope, read with
    local_files_only=True). Nothing is copied. Links left dangling by pruned releases are removed.
options:
  release: {description: The release folder (holds models/<name>), type: path, required: true}
  hf_home: {description: HF_HOME of the services, type: path, required: true}
  modelscope_cache: {description: MODELSCOPE_CACHE of the services, type: path, required: true}
  models:
    description: The manifest's models (name, source, repo, revision, commit); each must be in the release
    type: list
    elements: dict
    default: []
  aliases:
    description: Repo ids for local models, {name; org/name}; they appear in both caches
    type: dict
    default: {}
  version: {description: The bundle version (names the snapshot of an aliased local model), type: str, required: true}
"""

import os

from ansible.module_utils.basic import AnsibleModule


class Layout:
    def __init__(self, module):
        self.module = module
        self.changed = []

    def mkdir(self, path):
        if not os.path.isdir(path):
            self.changed.append(path)
            if not self.module.check_mode:
                os.makedirs(path, 0o755, exist_ok=True)

    def link(self, target, path):
        if os.path.islink(path) and os.readlink(path) == target:
            return
        self.changed.append(path)
        if self.module.check_mode:
            return
        self.mkdir(os.path.dirname(path))
        tmp = path + ".airlock-tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(target, tmp)
        if os.path.isdir(path) and not os.path.islink(path):
            self.module.fail_json(msg="%s is a real folder, not a link Airlock made; move it away first" % path)
        os.replace(tmp, path)

    def write(self, path, text):
        try:
            with open(path) as f:
                if f.read() == text:
                    return
        except OSError:
            pass
        self.changed.append(path)
        if not self.module.check_mode:
            self.mkdir(os.path.dirname(path))
            with open(path + ".airlock-tmp", "w") as f:
                f.write(text)
            os.replace(path + ".airlock-tmp", path)

    def sweep(self, root):
        """Remove links into releases that no longer exist."""
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                p = os.path.join(folder, name)
                if os.path.islink(p) and not os.path.exists(p):
                    self.changed.append(p)
                    if not self.module.check_mode:
                        os.unlink(p)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            release=dict(type="path", required=True),
            hf_home=dict(type="path", required=True),
            modelscope_cache=dict(type="path", required=True),
            models=dict(type="list", elements="dict", default=[]),
            aliases=dict(type="dict", default={}),
            version=dict(type="str", required=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    models = os.path.join(p["release"], "models")
    aliases = p["aliases"]
    absent = [m["name"] for m in p["models"] if not os.path.isdir(os.path.join(models, m["name"]))]
    if absent and not module.check_mode:
        module.fail_json(msg="model(s) %s missing from %s on this host (does bundle_include leave models/ out?)"
                         % (", ".join(absent), models))
    lay = Layout(module)
    hub = os.path.join(p["hf_home"], "hub")
    for m in p["models"]:
        if m["source"] != "huggingface" and m["name"] not in aliases:
            continue
        repo = aliases.get(m["name"], m.get("repo"))
        commit = m["commit"] if m["source"] == "huggingface" else "airlock-" + p["version"]
        repo_dir = os.path.join(hub, "models--" + repo.replace("/", "--"))
        lay.link(os.path.join(models, m["name"]), os.path.join(repo_dir, "snapshots", commit))
        for ref in sorted({"main", m.get("revision") or "main"}):
            if ref != commit:
                lay.write(os.path.join(repo_dir, "refs", ref), commit)
    for m in p["models"]:
        if m["source"] != "modelscope" and m["name"] not in aliases:
            continue
        owner, name = aliases.get(m["name"], m.get("repo")).split("/", 1)
        lay.link(os.path.join(models, m["name"]),
                 os.path.join(p["modelscope_cache"], "models", owner, name.replace(".", "___")))
    lay.mkdir(hub)
    lay.mkdir(os.path.join(p["modelscope_cache"], "models"))
    lay.sweep(hub)
    lay.sweep(os.path.join(p["modelscope_cache"], "models"))
    module.exit_json(changed=bool(lay.changed), paths=lay.changed)


if __name__ == "__main__":
    main()
