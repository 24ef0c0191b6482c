"""Unified diffs (``diff -u``), parsed and applied exactly: no fuzz, no offset search.

Everything works on bytes so a file's hash before and after is exactly what the catalogue pins. Lines
are split on ``\\n`` only and keep it; ``\\ No newline at end of file`` drops it from the line before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from packager.errors import PatchError

_HUNK_RE = re.compile(rb"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_NO_NEWLINE = b"\\ No newline at end of file"


@dataclass(frozen=True)
class Hunk:
    old_start: int
    old_len: int
    new_start: int
    new_len: int
    #: (tag, content): tag is b" ", b"-" or b"+"; content keeps its b"\n" unless the file lacks it there
    lines: tuple[tuple[bytes, bytes], ...]

    def old_lines(self) -> list[bytes]:
        return [text for tag, text in self.lines if tag != b"+"]

    def new_lines(self) -> list[bytes]:
        return [text for tag, text in self.lines if tag != b"-"]

    def reversed(self) -> Hunk:
        swap = {b"-": b"+", b"+": b"-", b" ": b" "}
        return Hunk(self.new_start, self.new_len, self.old_start, self.old_len,
                    tuple((swap[tag], text) for tag, text in self.lines))


@dataclass(frozen=True)
class FileDiff:
    path: str  # relative path the diff touches (a/ and b/ prefixes removed)
    hunks: tuple[Hunk, ...]


def _path(raw: bytes, source: str, lineno: int) -> str:
    text = raw.split(b"\t", 1)[0].decode("utf-8", "strict").rstrip("\r")
    if text == "/dev/null":
        raise PatchError("creating or deleting files is not supported: a patch changes existing files",
                         where=f"{source}:{lineno}")
    return text


def _safe(path: str, source: str, lineno: int) -> str:
    p = PurePosixPath(path)
    if not path or p.is_absolute() or ".." in p.parts or "\\" in path or str(p) != path:
        raise PatchError(f"unsafe path {path!r} in the diff (paths are relative to site-packages)",
                         where=f"{source}:{lineno}")
    return path


def parse_diff(text: bytes | str, source: str = "<diff>") -> list[FileDiff]:
    """Parse every file of a unified diff. Raises PatchError naming the file and line of any problem."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out: list[FileDiff] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not (line.startswith(b"--- ") and i + 1 < len(lines) and lines[i + 1].startswith(b"+++ ")):
            if line.startswith(b"@@"):
                raise PatchError("hunk outside of a file (no ---/+++ header before it)", where=f"{source}:{i + 1}")
            i += 1  # headers git and diff write (diff --git, index, Only in ...) carry nothing we need
            continue
        old = _path(line[4:], source, i + 1)
        new = _path(lines[i + 1][4:], source, i + 2)
        if old.startswith("a/") and new.startswith("b/"):
            old, new = old[2:], new[2:]
        if old != new:
            raise PatchError(f"the diff renames {old!r} to {new!r}; a patch changes files in place",
                             where=f"{source}:{i + 1}")
        path = _safe(new, source, i + 1)
        i += 2
        hunks: list[Hunk] = []
        while i < len(lines) and lines[i].startswith(b"@@"):
            hunk, i = _parse_hunk(lines, i, source, path, len(hunks) + 1)
            hunks.append(hunk)
        if not hunks:
            raise PatchError(f"{path}: no hunks", where=f"{source}:{i}")
        if any(d.path == path for d in out):
            raise PatchError(f"{path} appears twice in the diff; put all its hunks under one header",
                             where=source)
        out.append(FileDiff(path, tuple(hunks)))
    if not out:
        raise PatchError("no file diffs found (expected ---/+++ headers and @@ hunks)", where=source)
    return out


def _parse_hunk(lines: list[bytes], i: int, source: str, path: str, number: int) -> tuple[Hunk, int]:
    m = _HUNK_RE.match(lines[i])
    where = f"{source}:{i + 1}"
    if m is None:
        raise PatchError(f"{path} hunk {number}: malformed hunk header {lines[i][:80]!r}", where=where)
    old_start, new_start = int(m.group(1)), int(m.group(3))
    old_len = int(m.group(2)) if m.group(2) is not None else 1
    new_len = int(m.group(4)) if m.group(4) is not None else 1
    i += 1
    body: list[tuple[bytes, bytes]] = []
    old_seen = new_seen = 0
    while old_seen < old_len or new_seen < new_len:
        if i >= len(lines):
            raise PatchError(f"{path} hunk {number}: ends early ({old_seen}/{old_len} old, "
                             f"{new_seen}/{new_len} new lines)", where=where)
        line = lines[i]
        tag, content = (line[:1], line[1:]) if line else (b" ", b"")  # an empty line: context stripped of its blank
        if tag not in (b" ", b"-", b"+"):
            raise PatchError(f"{path} hunk {number}: unexpected line {line[:80]!r} (counts say "
                             f"{old_len - old_seen} old / {new_len - new_seen} new lines are still to come)",
                             where=f"{source}:{i + 1}")
        body.append((tag, content + b"\n"))
        old_seen += tag != b"+"
        new_seen += tag != b"-"
        i += 1
        if i < len(lines) and lines[i].startswith(_NO_NEWLINE):
            body[-1] = (tag, content)
            i += 1
    if old_seen != old_len or new_seen != new_len:
        raise PatchError(f"{path} hunk {number}: line counts do not match the header", where=where)
    return Hunk(old_start, old_len, new_start, new_len, tuple(body)), i


def split_lines(data: bytes) -> list[bytes]:
    """Lines of ``data``, each keeping its ``\\n`` (the last one may lack it)."""
    parts = data.split(b"\n")
    out = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def apply_file(diff: FileDiff, data: bytes, *, reverse: bool = False, where: str | None = None) -> bytes:
    """Apply (or reverse) one file's hunks to ``data`` exactly: every context and removed line must be at the
    stated line. Raises PatchError naming the file and hunk that does not match."""
    name = where or diff.path
    lines = split_lines(data)
    out: list[bytes] = []
    pos = 0  # index into lines: everything before it is already copied
    for number, hunk0 in enumerate(diff.hunks, 1):
        hunk = hunk0.reversed() if reverse else hunk0
        old = hunk.old_lines()
        start = hunk.old_start - 1 if hunk.old_len > 0 else hunk.old_start
        if start < pos:
            raise PatchError(f"hunk {number} (@@ -{hunk.old_start},{hunk.old_len} @@) overlaps the hunk before it",
                             where=name)
        found = lines[start:start + len(old)]
        if found != old:
            bad = next((k for k, (a, b) in enumerate(zip(old, found, strict=False)) if a != b), len(found))
            detail = (f"line {start + bad + 1} is {found[bad][:80]!r}, the diff expects {old[bad][:80]!r}"
                      if bad < len(found) else f"the file ends at line {len(lines)}")
            raise PatchError(f"hunk {number} (@@ -{hunk.old_start},{hunk.old_len} @@) does not match"
                             f"{' in reverse' if reverse else ''}: {detail}", where=name)
        out += lines[pos:start]
        out += hunk.new_lines()
        pos = start + len(old)
    out += lines[pos:]
    return b"".join(out)


def apply_all(diffs: list[FileDiff], files: dict[str, bytes], *, reverse: bool = False) -> dict[str, bytes]:
    """Apply every file diff to ``files`` (path -> bytes); returns the changed contents by path."""
    out: dict[str, bytes] = {}
    for d in diffs:
        if d.path not in files:
            raise PatchError("the diff touches this file but it was not given", where=d.path)
        out[d.path] = apply_file(d, files[d.path], reverse=reverse)
    return out
