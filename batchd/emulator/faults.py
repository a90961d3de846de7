"""Fault injection: rules, their text syntax, and the seeded decision of which request fails.

A rule names a kind (``429``, ``500``, ``502``, ``503``, ``latency``, ``reset``, ``truncate``,
``late``, ``late_reset``), a probability, a route pattern and a phase:

- ``before``: the fault replaces the handler; the request has no effect (429/5xx, a reset
  connection) or is delayed before it runs (latency: the body is read after the delay, so a
  client that gave up meanwhile makes the request fail without effect).
- ``after``: the handler ran and its effect happened, then the response is lost (reset), delayed
  (latency) or replaced by an error status.

``late`` and ``late_reset`` (phase ``before`` only) model a provider slow to process a request:
the body is read at once, then the handler runs ``delay`` seconds later *whether or not the
client is still connected* (a client that timed out or died meanwhile still gets its job
created); ``late`` then answers as usual, ``late_reset`` drops the connection instead. They need
a handler that reads its body whole (create and cancel, not uploads).

``truncate`` applies to file-content responses only: the full ``Content-Length`` is announced,
``fraction`` of the bytes is sent, then the connection is closed.

``short_results`` and ``short_counts`` apply to a job's result files when they are written (no
request is involved; ``route`` matches the job's endpoint, ``"/v1/chat/completions"``; the k-th
job finalised is the k-th the rule sees). ``short_results`` writes the lines of only the first
``fraction`` of the processed requests while the counters still count them all (the real API
has returned fewer result lines than it counted: mistralai/client-python#159); ``short_counts``
writes every line while the counters of the finished job count only ``fraction`` of them.

Routes are ``fnmatch`` patterns over ``"METHOD /route/{template}"`` (``"POST /v1/batch/jobs"``,
``"GET /v1/files/*"``); a pattern without a method matches every method; no pattern means every
``/v1`` route. Decisions are reproducible: the k-th request a rule sees fires when
``hash(seed, rule index, k) < probability``, independent of timing.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any

from pydantic import ConfigDict, TypeAdapter


class FaultKind(StrEnum):
    RATE_LIMIT = "429"
    INTERNAL = "500"
    BAD_GATEWAY = "502"
    UNAVAILABLE = "503"
    LATENCY = "latency"
    RESET = "reset"
    TRUNCATE = "truncate"
    SHORT_RESULTS = "short_results"
    SHORT_COUNTS = "short_counts"
    LATE = "late"
    LATE_RESET = "late_reset"


class Phase(StrEnum):
    BEFORE = "before"
    AFTER = "after"


STATUS_KINDS = frozenset(
    {FaultKind.RATE_LIMIT, FaultKind.INTERNAL, FaultKind.BAD_GATEWAY, FaultKind.UNAVAILABLE}
)
RESULT_KINDS = frozenset({FaultKind.SHORT_RESULTS, FaultKind.SHORT_COUNTS})
RESULTS_KEY = "RESULTS "  # the "route" of a job's result files: "RESULTS /v1/chat/completions"
LATE_KINDS = frozenset({FaultKind.LATE, FaultKind.LATE_RESET})


STRICT = ConfigDict(extra="forbid")  # an unknown key in PUT /_emulator/faults is a 422
MAX_DELAY_S = 86_400.0


@dataclass(frozen=True)
class FaultRule:
    __pydantic_config__ = STRICT
    kind: FaultKind
    probability: float = 1.0
    route: str | None = None
    phase: Phase = Phase.BEFORE
    delay_s: float = 1.0  # latency, late, late_reset: real seconds
    retry_after_s: int = 1  # 429: the Retry-After header
    fraction: float = 0.5  # truncate: share of the body sent; short_*: share written/counted
    limit: int | None = None  # fire at most this many times

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be in [0, 1]")
        if not 0.0 <= self.fraction < 1.0:
            raise ValueError("fraction must be in [0, 1)")
        if self.delay_s < 0 or self.retry_after_s < 0:
            raise ValueError("delay_s and retry_after_s must be >= 0")
        if not math.isfinite(self.delay_s) or self.delay_s > MAX_DELAY_S:
            raise ValueError(f"delay_s must be finite and at most {MAX_DELAY_S:g}")
        if self.kind in LATE_KINDS and self.phase is not Phase.BEFORE:
            raise ValueError(f"{self.kind.value} applies before the handler only (phase=before)")

    def matches(self, route_key: str) -> bool:
        if self.route is None:
            return route_key.split(" ", 1)[-1].startswith("/v1/")
        if " " in self.route:
            return fnmatchcase(route_key, self.route)
        return fnmatchcase(route_key.split(" ", 1)[-1], self.route)


@dataclass(frozen=True)
class FaultConfig:
    __pydantic_config__ = STRICT
    rules: tuple[FaultRule, ...] = ()
    seed: int | None = None  # None: the emulator's seed

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_CONFIG_ADAPTER: TypeAdapter[FaultConfig] = TypeAdapter(FaultConfig)


def fault_config_from_json(data: object) -> FaultConfig:
    """Validate a JSON document; raises ``pydantic.ValidationError``."""
    return _CONFIG_ADAPTER.validate_python(data)


_SPEC_KEYS = {
    "route": "route",
    "phase": "phase",
    "delay": "delay_s",
    "retry_after": "retry_after_s",
    "fraction": "fraction",
    "limit": "limit",
}


def parse_fault_spec(spec: str) -> FaultRule:
    """``KIND[:PROB][,key=value...]`` with keys route, phase, delay, retry_after, fraction,
    limit. Example: ``"reset:1,route=POST /v1/batch/jobs,phase=after,limit=1"``."""
    head, *pairs = [part.strip() for part in spec.split(",")]
    kind, _, prob = head.partition(":")
    data: dict[str, Any] = {"kind": kind.strip(), "probability": prob.strip() or "1"}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key.strip() not in _SPEC_KEYS:
            raise ValueError(f"unknown fault option {pair!r} (known: {', '.join(_SPEC_KEYS)})")
        data[_SPEC_KEYS[key.strip()]] = value.strip()
    try:
        return TypeAdapter(FaultRule).validate_python(data)
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        raise ValueError(f"invalid fault {spec!r}: {exc}") from exc


def _uniform(seed: int | None, rule_index: int, k: int) -> float:
    if seed is None:
        return random.random()
    digest = hashlib.blake2b(f"{seed}:{rule_index}:{k}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass
class FaultInjector:
    """Decides, per request, which rule fires. Counters restart when the config changes."""

    config: FaultConfig = field(default_factory=FaultConfig)
    default_seed: int | None = None
    _seen: list[int] = field(default_factory=list)
    _fired: list[int] = field(default_factory=list)
    injected: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.set(self.config)

    def set(self, config: FaultConfig) -> None:
        self.config = config
        self._seen = [0] * len(config.rules)
        self._fired = [0] * len(config.rules)

    @property
    def seed(self) -> int | None:
        return self.config.seed if self.config.seed is not None else self.default_seed

    def decide(self, route_key: str, phase: Phase | None) -> FaultRule | None:
        """The first rule that fires for this request in this phase (``None`` for the
        body phase of a download, where only ``truncate`` rules are considered)."""
        for index, rule in enumerate(self.config.rules):
            if not self._eligible(rule, route_key, phase):
                continue
            k = self._seen[index]
            self._seen[index] += 1
            if rule.limit is not None and self._fired[index] >= rule.limit:
                continue
            if _uniform(self.seed, index, k) < rule.probability:
                self._fired[index] += 1
                self.injected[rule.kind.value] = self.injected.get(rule.kind.value, 0) + 1
                return rule
        return None

    def decide_results(self, endpoint: str) -> FaultRule | None:
        """The first result-file rule (``short_results``, ``short_counts``) that fires for a
        job of ``endpoint`` whose result files are about to be written."""
        return self.decide(RESULTS_KEY + endpoint, None)

    @staticmethod
    def _eligible(rule: FaultRule, route_key: str, phase: Phase | None) -> bool:
        if (rule.kind in RESULT_KINDS) != route_key.startswith(RESULTS_KEY):
            return False
        if rule.kind in RESULT_KINDS:
            return rule.matches(route_key)
        if (rule.kind is FaultKind.TRUNCATE) != (phase is None):
            return False
        if phase is not None and rule.phase is not phase:
            return False
        return rule.matches(route_key)
