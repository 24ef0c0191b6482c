"""One error hierarchy for the whole packager.

Every error carries a message (what went wrong), an optional ``where`` (file, field or URL it is about)
and an optional ``hint`` (how to fix it). The CLI formats them in one place and maps each class to an
exit code, so scripts can tell a bad spec from a tampered bundle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class AirlockError(Exception):
    """Base class of every error the packager raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class SpecError(AirlockError):
    """models.yaml is missing, unreadable or invalid."""

    exit_code = 2


class LockError(AirlockError):
    """Resolution for the target failed (no wheel, unknown revision, CUDA mismatch, ...)."""

    exit_code = 3


class NoWheelError(LockError):
    """One or more requirements have no wheel for the target."""


class CudaMismatchError(LockError):
    """The resolved torch build does not match ``target.cuda``."""


class HubError(AirlockError):
    """A model hub answered with an error or could not be reached."""

    exit_code = 4


class FetchError(AirlockError):
    """A download failed or delivered other bytes than the lock promised."""

    exit_code = 4


class CacheError(AirlockError):
    """The local content-addressed cache is unusable (permissions, disk full)."""

    exit_code = 5


class KeyFileError(AirlockError):
    """A key file is unreadable, malformed, or cannot be decrypted."""

    exit_code = 6


class SignatureError(AirlockError):
    """A signature does not verify with the given key (or was made by another key)."""

    exit_code = 7


@dataclass(frozen=True)
class Problem:
    """One verification finding: which logical file, what was expected, what was found."""

    path: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.path}: expected {self.expected}, found {self.found}"


class VerifyError(AirlockError):
    """A bundle's contents do not match its signed manifest. Lists every problem found."""

    exit_code = 8

    def __init__(self, message: str, problems: Sequence[Problem], *, where: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, where=where, hint=hint)
        self.problems = tuple(problems)

    def __str__(self) -> str:
        lines = [super().__str__()]
        shown = self.problems[:50]
        lines += [f"  - {p}" for p in shown]
        if len(self.problems) > len(shown):
            lines.append(f"  ... and {len(self.problems) - len(shown)} more")
        return "\n".join(lines)


class BundleError(AirlockError):
    """A bundle directory is malformed, or a bundle cannot be written/unpacked."""

    exit_code = 9


class PatchError(AirlockError):
    """An offline patch is malformed, does not match the files it pins, or covers no checked version."""

    exit_code = 10
