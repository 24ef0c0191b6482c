# Copyright: Airlock contributors. Apache-2.0.
"""Compare bundle versions on the control node the way the packager does (packager/bundle/delta.py).

    {{ '1.10.0' | airlock_version_compare('1.9.0') }}   -> 1     (-1 older, 0 equal, 1 newer)

PEP 440 order when both versions are PEP 440 (``2.0.0rc1`` is older than ``2.0.0``); otherwise the numeric
order of the version's parts (``1.10.0`` is newer than ``1.9.0``, never compared as text). ``packaging``
comes with ansible-core, so this needs nothing beyond the controller's Ansible.
"""

from __future__ import annotations

import re
from typing import Any

from packaging.version import InvalidVersion, Version


def _key(v: str) -> tuple[tuple[int, int, str], ...]:
    return tuple((0, int(x), "") if x.isdigit() else (1, 0, x) for x in re.findall(r"\d+|[A-Za-z]+", v))


def airlock_version_compare(a: Any, b: Any) -> int:
    """-1 when a is older than b, 0 when they are the same version, 1 when a is newer."""
    sa, sb = str(a), str(b)
    try:
        va, vb = Version(sa), Version(sb)
        return (va > vb) - (va < vb)
    except InvalidVersion:
        ka, kb = _key(sa), _key(sb)
        return (ka > kb) - (ka < kb)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"airlock_version_compare": airlock_version_compare}
