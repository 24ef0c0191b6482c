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
  state:
    description:
      - C(planned) works out the missing blobs; C(present) builds the release; C(active) also switches C(current)
        to it and prunes old releases.
      - C(switched) points C(current) at a release already unpacked on this host (a rollback), given by its
        C(manifest) (e.g. C(releases/<version>/manifest.json)); which files it holds is not checked again and
        nothing is pruned.
    type: str
    default: present
    choices: [planned, present, active, switched]
  previous:
    description:
      - With C(state=active) or C(state=switched), the release version C(previous) points at afterwards
        (it must be unpacked on this host); by default the release C(current) leaves. An empty string removes
        C(previous) (what a host had before its first upgrade).
    type: str
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
release_sha256:
  description: The release's identity, the sha256 of its manifest without a delta's base reference (equal for the
    full bundle and a delta of the same release)
  returned: always
  type: str
running:
  description: What C(current) pointed at when the module started (version, release_sha256), or null
  returned: always
  type: dict
previous_version:
  description: The version C(previous) pointed at when the module started, or null
  returned: always
  type: str
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


def release_sha256(raw):
    """The release's identity: the sha256 of its manifest as the full bundle has it (a delta's manifest is the
    full one plus a "base" key; without it, it serialises byte for byte like the full bundle's)."""
    data = json.loads(raw)
    if not isinstance(data, dict) or "base" not in data:
        return hashlib.sha256(raw).hexdigest()
    data.pop("base")
    full = json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    return hashlib.sha256(full.encode("utf-8")).hexdigest()


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
        self.release_sha256 = release_sha256(raw)
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

    def identity(self, marker, release_dir):
        """The release_sha256 of an installed release (older markers lack it: from its manifest.json)."""
        if marker.get("release_sha256"):
            return marker["release_sha256"]
        try:
            with open(os.path.join(release_dir, "manifest.json"), "rb") as f:
                return release_sha256(f.read())
        except (OSError, ValueError):
            return marker.get("manifest_sha256")

    def complete(self, check_paths=True):
        m = self.marker()
        if m is None:
            return False
        installed = self.identity(m, self.release)
        if installed != self.release_sha256:
            running = self.running()
            where = "the running release" if running and running["version"] == self.version else "release"
            self.module.fail_json(
                msg="%s %s is already installed on this host from a different bundle (release sha256 %s, this "
                    "bundle %s): a version is never reused for other content, so nothing was installed. If this "
                    "bundle is the newer build, bump bundle.version in its spec (a version above %s), build and "
                    "sign it again and deploy that; if the host's release is the one you want, deploy its own "
                    "bundle." % (where, self.version, installed, self.release_sha256, self.version),
                version=self.version, release=self.release, installed_sha256=installed,
                bundle_sha256=self.release_sha256)
        if not check_paths:
            return True
        return sorted(m.get("paths", [])) == sorted(f["path"] for f in self.files)

    def running(self):
        """The release current points at: its version and identity, or None."""
        target = self.current_target()
        if not target:
            return None
        path = os.path.join(self.root, target)
        try:
            with open(os.path.join(path, MARKER)) as f:
                m = json.load(f)
        except (OSError, ValueError):
            return {"version": os.path.basename(target), "release_sha256": None}
        return {"version": m.get("version") or os.path.basename(target), "release_sha256": self.identity(m, path)}

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
                json.dump({"manifest_sha256": self.manifest_sha256, "release_sha256": self.release_sha256,
                           "version": self.version,
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

    def activate(self, previous=None):
        """Point current at this release (and previous at the one it replaces, or at the release `previous`),
        each with one rename. Returns whether a link changed."""
        rel = os.path.join("releases", self.version)
        old = self.current_target()
        changed = False
        if previous == "":  # no previous link at all
            prev = None
            if os.path.lexists(os.path.join(self.root, "previous")):
                os.unlink(os.path.join(self.root, "previous"))
                changed = True
        elif previous is not None:
            prev = os.path.join("releases", previous)
        else:
            prev = old if old != rel else self._link("previous")
        for name, target in (("previous", prev), ("current", rel)):
            if target is None or self._link(name) == target:
                continue
            changed = True
            tmp = os.path.join(self.root, ".%s.%d" % (name, os.getpid()))
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(target, tmp)
            os.replace(tmp, os.path.join(self.root, name))
        return changed

    def check_previous(self, previous):
        if not previous:
            return
        if previous == self.version or "/" in previous or previous.startswith("."):
            self.module.fail_json(msg="previous=%r must name another release version than %s"
                                      % (previous, self.version))
        if not os.path.isfile(os.path.join(self.releases, previous, MARKER)):
            self.module.fail_json(
                msg="previous=%s: release %s is not unpacked on this host (releases: %s)"
                    % (previous, previous, ", ".join(self.installed()) or "none"))

    def switch_pending(self, previous):
        """Whether activate(previous) would change a link."""
        if previous == "":
            return self.current_target() != os.path.join("releases", self.version) or self._link("previous") is not None
        return self.current_target() != os.path.join("releases", self.version) or (
            previous is not None and self._link("previous") != os.path.join("releases", previous))

    def installed(self):
        if not os.path.isdir(self.releases):
            return []
        return sorted(n for n in os.listdir(self.releases)
                      if not n.startswith(".") and os.path.isfile(os.path.join(self.releases, n, MARKER)))

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


def switched(module, r, previous, result):
    """A rollback to a release already on this host: it must be complete and the one this manifest names."""
    if not r.complete(check_paths=False):
        module.fail_json(msg="release %s is not unpacked on this host (releases: %s); nothing was switched"
                             % (r.version, ", ".join(r.installed()) or "none"), **result)
    r.check_previous(previous)
    result.update(complete=True, missing=[], missing_small=[], missing_large=[], changed=r.switch_pending(previous))
    if result["changed"] and not module.check_mode:
        r.activate(previous)
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            manifest=dict(type="path", required=True),
            content=dict(type="str"),
            include=dict(type="list", elements="str", default=["*"]),
            exclude=dict(type="list", elements="str", default=["controller/*"]),
            state=dict(type="str", default="present", choices=["planned", "present", "active", "switched"]),
            previous=dict(type="str"),
            keep=dict(type="int", default=3),
            batch_max_size=dict(type="int", default=16 << 20),
            verify_store=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    r = Release(module)
    state = module.params["state"]
    previous = module.params["previous"]  # None: the release current leaves; "": no previous link
    result = dict(changed=False, version=r.version, release=r.release, files=len(r.files),
                  release_sha256=r.release_sha256, running=r.running(),
                  previous_version=os.path.basename(r._link("previous")) if r._link("previous") else None)
    if state == "switched":
        switched(module, r, previous, result)
    complete = r.complete()
    missing = [] if complete else r.missing()
    small = [d for d in missing if r.needed[d]["size"] <= module.params["batch_max_size"]]
    result.update(missing=missing, complete=complete, missing_small=small,
                  missing_large=[d for d in missing if d not in set(small)])
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
    if complete:
        r.check_previous(previous)
    if r.switch_pending(previous):
        result["changed"] = True
        if not module.check_mode:
            r.activate(previous)
    if not module.check_mode:
        removed, freed = r.prune()
        result.update(pruned=removed, freed_bytes=freed, changed=result["changed"] or bool(removed))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
