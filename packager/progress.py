"""Progress reporting: a tqdm bar on a terminal, plain log lines otherwise (CI logs, pipes).

Set ``AIRLOCK_PROGRESS=0`` to silence bars, ``=1`` to force them.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tqdm import tqdm as tqdm_type

log = logging.getLogger("packager")


def _bars_enabled() -> bool:
    env = os.environ.get("AIRLOCK_PROGRESS")
    if env is not None:
        return env not in ("0", "false", "no")
    return sys.stderr.isatty()


def _tqdm() -> type[tqdm_type[Any]] | None:
    """tqdm, if installed: the offline control node runs verify/unpack without it (plain log lines)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


class Progress:
    """Byte progress for one stage. Thread-safe; ``update`` may be called from worker threads."""

    def __init__(self, desc: str, total: int | None = None, unit: str = "B") -> None:
        self.desc = desc
        self.total = total
        self.done = 0
        self._lock = threading.Lock()
        self._last_log = 0.0
        self._bar = None
        tqdm = _tqdm() if _bars_enabled() else None
        if tqdm is not None:
            self._bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, unit_divisor=1024,
                             file=sys.stderr, leave=True)
        else:
            log.info("%s: starting (%s)", desc, _human(total) if total else "size unknown")

    def update(self, n: int) -> None:
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(n)
            elif time.monotonic() - self._last_log > 10:
                self._last_log = time.monotonic()
                log.info("%s: %s of %s", self.desc, _human(self.done), _human(self.total) if self.total else "?")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            log.info("%s: done, %s", self.desc, _human(self.done))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


human_size = _human
