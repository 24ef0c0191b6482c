#!/usr/bin/python
# Copyright: Airlock contributors. Apache-2.0.
"""Install one release of a verified Airlock bundle on a host: blob store, release tree, current link."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: airlock_release
short_description: Land a verified Airlock bundle on a host as a release directory
description:
  - Reads the bundle's manifest (already verified on the control node) and works out which content
    blobs this host still needs (C(state=planned)), or adopts received blobs into the content store after
    checking each one's sha256, builds C(releases/<version>/) from hard links into the store, and
    switches the C(current) link atomically (C(state=present)).
  - A blob whose digest does not match is moved aside and the module fails naming it; a re-run
    transfers it again. An interrupted or failed build leaves no release directory behind.
options:
  root: {description: Airlock's root folder on the host, type: path, required: true}
  manifest: {description: Path of the bundle's manifest.json on the host, type: path, required: true}
  content:
    description:
      - The manifest's text, read only when C(manifest) is not on the host: a check run does not copy a
        new bundle's manifest there, and still plans its blobs and release from this. The role passes it
        in check mode only.
    type: str
  include:
    description: fnmatch patterns of the logical paths this host needs (meta/* is always included)
    type: list
    elements: str
    default: ['*']
  exclude:
    description: fnmatch patterns of logical paths this host never needs, applied after include
    type: list
    elements: str
    default: ['controller/*']
  state: {description: planned or present or active, type: str, default: present, choices: [planned, present, active]}
  batch_max_size:
    description: Missing blobs up to this size are listed in missing_small (sent together in one archive)
    type: int
    default: 16777216
  keep: {description: Releases to keep (current and previous are always kept), type: int, default: 3}
  verify_store: {description: Re-hash blobs already in the store when building a new release, type: bool, default: true}
"""

RETURN = r"""
version: {description: The bundle version, returned: always, type: str}
release: {description: The release directory, returned: always, type: str}
missing: {description: Digests this host still needs, returned: always, type: list}
missing_small: {description: The missing digests up to batch_max_size, returned: always, type: list}
missing_large: {description: The missing digests above batch_max_size, returned: always, type: list}
complete: {description: Whether the release directory is complete, returned: always, type: bool}
"""

import errno
import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

MARKER = ".airlock-release.json"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Release:
    def __init__(self, module):
        p = module.params
        self.module = module
        self.root = p["root"]
        self.store = os.path.join(self.root, "store", "sha256")
        self.incoming = os.path.join(self.root, "store", "incoming")
        self.quarantine = os.path.join(self.root, "store", "quarantine")
        try:
            with open(p["manifest"], "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            if p["content"] is None:
                raise
            raw = p["content"].encode("utf-8")  # a check run: the manifest was not copied to the host
        self.manifest_raw = raw
        self.manifest_sha256 = hashlib.sha256(raw).hexdigest()
        self.manifest = json.loads(raw)
        self.version = self.manifest["bundle"]["version"]
        self.releases = os.path.join(self.root, "releases")
        self.release = os.path.join(self.releases, self.version)
        patterns = list(p["include"]) + ["meta/*"]
        self.files = [
            f for f in self.manifest["files"]
            if any(fnmatch.fnmatchcase(f["path"], pat) for pat in patterns)
            and not any(fnmatch.fnmatchcase(f["path"], pat) for pat in p["exclude"])
        ]
        self.needed = {}
        for f in self.files:
            self.needed.setdefault(f["sha256"], f)

    # -- state ---------------------------------------------------------------------------------------
    def marker(self):
        try:
            with open(os.path.join(self.release, MARKER)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def complete(self):
        m = self.marker()
        if m is None:
            return False
        if m.get("manifest_sha256") != self.manifest_sha256:
            self.module.fail_json(
                msg="release %s is already installed on this host from a different bundle (manifest sha256 %s, "
                    "this bundle %s); a version is never reused for other content: bump bundle.version"
                    % (self.version, m.get("manifest_sha256"), self.manifest_sha256),
                version=self.version, release=self.release)
        return sorted(m.get("paths", [])) == sorted(f["path"] for f in self.files)

    def in_store(self, digest, size):
        try:
            return os.stat(os.path.join(self.store, digest)).st_size == size
        except OSError:
            return False

    def missing(self):
        out = []
        for digest, f in sorted(self.needed.items()):
            if self.in_store(digest, f["size"]):
                continue
            try:
                if os.stat(os.path.join(self.incoming, digest)).st_size == f["size"]:
                    continue
            except OSError:
                pass
            out.append(digest)
        return out

    def current_target(self):
        try:
            return os.readlink(os.path.join(self.root, "current"))
        except OSError:
            return None

    # -- changes -------------------------------------------------------------------------------------
    def _bad_blob(self, digest, where, found):
        f = self.needed[digest]
        os.makedirs(self.quarantine, exist_ok=True)
        aside = os.path.join(self.quarantine, "%s.%d" % (digest, int(time.time())))
        try:
            os.replace(where, aside)
        except OSError:
            aside = "(could not be moved aside)"
        self.module.fail_json(
            msg="blob for %s does not match the signed manifest on this host: expected sha256 %s, found %s; "
                "moved to %s. Re-run the play to transfer it again; the running release was not touched."
                % (f["path"], digest, found, aside),
            path=f["path"], expected=digest, found=found, version=self.version)

    def adopt(self):
        """Check every received blob (and, if asked, every stored one this release uses)."""
        os.makedirs(self.store, exist_ok=True)
        adopted = 0
        for digest, f in sorted(self.needed.items()):
            target = os.path.join(self.store, digest)
            if self.in_store(digest, f["size"]):
                if self.module.params["verify_store"]:
                    found = sha256_file(target)
                    if found != digest:
                        self._bad_blob(digest, target, found)
                continue
            src = os.path.join(self.incoming, digest)
            if not os.path.exists(src):
                self.module.fail_json(
                    msg="blob for %s (sha256 %s) was not transferred to this host" % (f["path"], digest),
                    path=f["path"], version=self.version)
            found = sha256_file(src)
            if found != digest:
                self._bad_blob(digest, src, found)
            os.chmod(src, 0o444)
            os.replace(src, target)
            adopted += 1
        return adopted

    def build(self):
        os.makedirs(self.releases, exist_ok=True)
        work = tempfile.mkdtemp(prefix=".%s.partial-" % self.version, dir=self.releases)
        try:
            for f in self.files:
                dst = os.path.join(work, f["path"])
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                src = os.path.join(self.store, f["sha256"])
                try:
                    os.link(src, dst)
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.EMLINK, errno.EPERM):
                        raise
                    shutil.copyfile(src, dst)  # releases/ on another filesystem than the store
                    os.chmod(dst, 0o444)
            with open(os.path.join(work, "manifest.json"), "wb") as out:
                out.write(self.manifest_raw)
            with open(os.path.join(work, MARKER), "w") as out:
                json.dump({"manifest_sha256": self.manifest_sha256, "version": self.version,
                           "installed": int(time.time()), "paths": sorted(f["path"] for f in self.files)}, out)
            os.chmod(work, 0o755)
            if os.path.isdir(self.release):
                shutil.rmtree(self.release)  # an older, incomplete tree of this version (other include set)
            os.rename(work, self.release)
        except OSError as exc:
            shutil.rmtree(work, ignore_errors=True)
            if exc.errno == errno.ENOSPC:
                self.module.fail_json(
                    msg="disk full on this host while unpacking release %s into %s; nothing was left behind and "
                        "the running release was not touched. Free space (or lower keep) and re-run."
                        % (self.version, self.releases), version=self.version)
            raise

    def activate(self):
        """Point current at this release (and previous at the one it replaces), each with one rename."""
        rel = os.path.join("releases", self.version)
        old = self.current_target()
        if old == rel:
            return False
        for name, target in (("previous", old), ("current", rel)):
            if target is None:
                continue
            tmp = os.path.join(self.root, ".%s.%d" % (name, os.getpid()))
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(target, tmp)
            os.replace(tmp, os.path.join(self.root, name))
        return True

    def prune(self):
        keep = self.module.params["keep"]
        protected = {os.path.basename(t) for t in (self.current_target(), self._link("previous"), self.release) if t}
        entries = []
        for name in os.listdir(self.releases) if os.path.isdir(self.releases) else []:
            path = os.path.join(self.releases, name)
            if name.startswith(".") and ".partial-" in name:
                shutil.rmtree(path, ignore_errors=True)  # a build killed half way
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                try:
                    entries.append((os.stat(os.path.join(path, MARKER)).st_mtime, name))
                except OSError:
                    entries.append((0, name))
        entries.sort(reverse=True)
        removed = [name for i, (_, name) in enumerate(entries) if i >= keep and name not in protected]
        for name in removed:
            shutil.rmtree(os.path.join(self.releases, name))
        freed = 0
        if removed and os.path.isdir(self.store):
            for digest in os.listdir(self.store):
                path = os.path.join(self.store, digest)
                st = os.stat(path)
                if st.st_nlink == 1:  # no release links to it any more
                    os.unlink(path)
                    freed += st.st_size
        return removed, freed

    def _link(self, name):
        try:
            return os.readlink(os.path.join(self.root, name))
        except OSError:
            return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            manifest=dict(type="path", required=True),
            content=dict(type="str"),
            include=dict(type="list", elements="str", default=["*"]),
            exclude=dict(type="list", elements="str", default=["controller/*"]),
            state=dict(type="str", default="present", choices=["planned", "present", "active"]),
            keep=dict(type="int", default=3),
            batch_max_size=dict(type="int", default=16 << 20),
            verify_store=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    r = Release(module)
    result = dict(changed=False, version=r.version, release=r.release, files=len(r.files))
    complete = r.complete()
    missing = [] if complete else r.missing()
    small = [d for d in missing if r.needed[d]["size"] <= module.params["batch_max_size"]]
    result.update(missing=missing, complete=complete, missing_small=small,
                  missing_large=[d for d in missing if d not in set(small)])
    state = module.params["state"]
    if state == "planned":
        module.exit_json(**result)
    if state == "present":
        if not complete:
            result["changed"] = True
            if not module.check_mode:
                result["adopted"] = r.adopt()
                r.build()
                result["complete"] = True
                result["missing"] = []
        module.exit_json(**result)
    # active
    if not complete and not module.check_mode:
        module.fail_json(msg="release %s is not installed on this host; run the bundle role first" % r.version,
                         **result)
    if r.current_target() != os.path.join("releases", r.version):
        result["changed"] = True
        if not module.check_mode:
            r.activate()
    if not module.check_mode:
        removed, freed = r.prune()
        result.update(pruned=removed, freed_bytes=freed, changed=result["changed"] or bool(removed))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
