"""One exception tree for batchd.

Foreign exceptions (aiohttp, aiosqlite, pydantic, json) are wrapped where the library is
imported and chained with ``from``; they never travel past the module that uses the library.
"""

from __future__ import annotations

from dataclasses import dataclass


class BatchdError(Exception):
    """Root of every error batchd raises on purpose."""


class ConfigError(BatchdError):
    """The configuration is invalid; the message names the file, the key and the problem."""


class UsageError(BatchdError):
    """The command line is invalid (exit code 2)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found in a batch file: a 1-based line number (0 = whole file) and a reason."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}" if self.line else self.reason


class IntakeRejected(BatchdError):
    """A dropped batch file is invalid. Carries every problem found (up to a cap)."""

    def __init__(self, problems: list[Problem], *, truncated: bool = False) -> None:
        self.problems = problems
        self.truncated = truncated
        first = problems[0] if problems else Problem(0, "rejected")
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{first}{more}")

    @property
    def line(self) -> int:
        return self.problems[0].line if self.problems else 0

    @property
    def reason(self) -> str:
        return self.problems[0].reason if self.problems else "rejected"


class ProviderError(BatchdError):
    """A provider call failed. ``status`` is the HTTP status when there was a response."""

    def __init__(self, message: str, *, status: int | None = None, body: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body


class ProviderTransient(ProviderError):
    """Worth retrying later: connection errors, timeouts, truncated bodies, 408/425/429/5xx."""


class RateLimited(ProviderTransient):
    """429 (or a client-side limit): retry no sooner than ``retry_after_s``."""

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        status: int | None = 429,
        body: str | None = None,
    ) -> None:
        super().__init__(message, status=status, body=body)
        self.retry_after_s = retry_after_s


class ProviderPermanent(ProviderError):
    """The provider refused the request (4xx other than auth and rate limits): do not retry."""


class NotFound(ProviderPermanent):
    """The provider does not know this id (404)."""


class AuthError(ProviderPermanent):
    """401/403: the API key is missing, wrong or lacks permission. Never retried."""


class StoreError(BatchdError):
    """The job store failed (disk full, I/O error, corrupt or too new a database)."""


class StaleState(StoreError):
    """A compare-and-set transition found the row in a different state than expected."""

    def __init__(self, entity: str, expected: object, actual: object) -> None:
        super().__init__(f"{entity}: expected state {expected}, found {actual}")
        self.entity = entity
        self.expected = expected
        self.actual = actual


class SchemaMismatch(StoreError):
    """A store opened without migrating found another schema version than this code's."""

    def __init__(self, path: object, found: int, expected: int) -> None:
        if found < expected:
            advice = "start the upgraded daemon (`batchd run` migrates it), then try again"
        else:
            advice = "this batchd is older than the one that wrote it: use the newer batchd"
        super().__init__(
            f"{path} has schema version {found}, this batchd expects {expected}: {advice}"
        )
        self.found = found
        self.expected = expected


class WebhookError(BatchdError):
    """A webhook endpoint is misconfigured or unsafe (for example, a private address)."""
