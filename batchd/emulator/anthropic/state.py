"""The shared state of one Anthropic emulator (what every handler reaches through the app)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from batchd.emulator.anthropic.engine import BatchEngine
from batchd.emulator.clock import EmulatedClock, IdFactory
from batchd.emulator.config import EmulatorConfig
from batchd.emulator.faults import FaultInjector


@dataclass
class AnthropicState:
    config: EmulatorConfig
    clock: EmulatedClock
    engine: BatchEngine
    faults: FaultInjector
    stats: Counter[str] = field(default_factory=Counter)
    base_url: str = ""  # scheme://host:port of this server, set once it listens (results_url)

    @classmethod
    def build(cls, config: EmulatorConfig, data_dir: Path) -> AnthropicState:
        clock = EmulatedClock(config.speed)
        engine = BatchEngine(config, clock, IdFactory(config.seed), data_dir)
        return cls(config, clock, engine, FaultInjector(config.faults, default_seed=config.seed))

    def stats_snapshot(self) -> dict[str, int]:
        out = dict(self.stats)
        out["total"] = sum(self.stats.values())
        out["faults_injected"] = sum(self.faults.injected.values())
        for kind, count in self.faults.injected.items():
            out[f"faults.{kind}"] = count
        return out

    def reset_stats(self) -> None:
        self.stats.clear()
        self.faults.injected.clear()


STATE: web.AppKey[AnthropicState] = web.AppKey("anthropic_state", AnthropicState)
