"""Per-provider gates shared by the loops: an auth failure pauses a provider, a 429 slows it,
and the last provider error is kept for ``STATUS=`` and ``batchd check``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ProviderGate:
    auth_pause_s: float = 300.0
    paused_until: dict[str, float] = field(default_factory=dict)
    slow_until: dict[str, float] = field(default_factory=dict)
    last_error: str | None = None

    def is_open(self, provider: str, now: float) -> bool:
        return self.open_at(provider) <= now

    def open_at(self, provider: str) -> float:
        """When the provider may be called again (0.0: it is not paused or slowed)."""
        return max(self.paused_until.get(provider, 0.0), self.slow_until.get(provider, 0.0))

    def ready_at(self, provider: str, due: float) -> float:
        """When work of ``provider`` that is due at ``due`` can actually run: a loop waits for
        this, not for ``due`` alone, or it spins while the provider is paused."""
        return max(due, self.open_at(provider))

    def pause_for_auth(self, provider: str, now: float, error: str) -> bool:
        """Pause the provider; True when this starts a new pause (announce it once)."""
        self.last_error = f"{provider}: {error}"
        if self.paused_until.get(provider, 0.0) > now:
            return False
        self.paused_until[provider] = now + self.auth_pause_s
        return True

    def slow_down(self, provider: str, until: float) -> None:
        self.slow_until[provider] = max(self.slow_until.get(provider, 0.0), until)

    def record_error(self, provider: str, error: str) -> None:
        self.last_error = f"{provider}: {error}"

    def reset(self) -> None:
        """A reload may have fixed the key: let every provider try again."""
        self.paused_until.clear()
        self.slow_until.clear()
