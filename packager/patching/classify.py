"""Which patches a set of resolved versions needs: applies, not needed, or unchecked (docs/patches.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from packager.errors import PatchError
from packager.patching.meta import Fixed, Patch, Variant

Status = Literal["applies", "not_needed", "unchecked"]
STATUS_WORDS: dict[str, str] = {"applies": "applies", "not_needed": "not needed", "unchecked": "unchecked"}


@dataclass(frozen=True)
class Decision:
    patch: Patch
    distribution: str  # normalised
    version: str
    status: Status
    variant: Variant | None = None  # the matching variant when status is "applies"
    fixed: Fixed | None = None  # the matching fixed range when status is "not_needed"

    @property
    def id(self) -> str:
        return self.patch.id


def match(patch: Patch, version: str) -> tuple[Variant | None, Fixed | None]:
    """The variant (first match) or else the fixed range (first match) that covers ``version``.

    Pre-releases count as inside a range; a version that is not PEP 440 is covered by nothing.
    """
    try:
        v = Version(version)
    except InvalidVersion:
        return None, None
    for variant in patch.meta.variants:
        if variant.specifier.contains(v, prereleases=True):
            return variant, None
    for fixed in patch.meta.fixed:
        if fixed.specifier.contains(v, prereleases=True):
            return None, fixed
    return None, None


def classify(patches: Iterable[Patch], versions: Mapping[str, str]) -> list[Decision]:
    """One decision per patch whose distribution is in ``versions`` (normalised name -> version)."""
    have: dict[str, str] = {canonicalize_name(k): v for k, v in versions.items()}
    out: list[Decision] = []
    for p in patches:
        version = have.get(p.dist)
        if version is None:
            continue
        variant, fixed = match(p, version)
        status: Status = "applies" if variant is not None else "not_needed" if fixed is not None else "unchecked"
        out.append(Decision(patch=p, distribution=p.dist, version=version, status=status, variant=variant,
                            fixed=fixed))
    return out


def refuse_unchecked(decisions: Iterable[Decision], allow: bool) -> None:
    """Raise PatchError for decisions that are unchecked, unless ``allow``."""
    bad = [d for d in decisions if d.status == "unchecked"]
    if not bad or allow:
        return
    names = "; ".join(f"patch {d.id} for {d.distribution} {d.version}" for d in bad)
    raise PatchError(
        f"{len(bad)} patch(es) not checked against the resolved version: {names} (the version is in neither a "
        "variant nor a fixed range of the catalogue)",
        hint="check that version and add it to the catalogue (a variant or a fixed range; `python -m packager "
             "patches check` proves it), or set `patches.allow_unchecked: true` in the spec to build without",
    )
