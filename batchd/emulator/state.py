"""The shared state of one emulator instance (what every handler reaches through the app)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from batchd.emulator.clock import EmulatedClock, IdFactory
from batchd.emulator.config import EmulatorConfig
from batchd.emulator.engine import Engine
from batchd.emulator.faults import FaultInjector
from batchd.emulator.files import FileStore


class UrlSigner:
    """HMAC signatures for the unauthenticated download URLs (``se`` = expiry, unix s)."""

    def __init__(self, seed: int | None) -> None:
        self._key = (
            hashlib.sha256(f"signer:{seed}".encode()).digest()
            if seed is not None
            else secrets.token_bytes(32)
        )

    def sign(self, file_id: str, expires_at: int) -> str:
        message = f"{file_id}:{expires_at}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def verify(self, file_id: str, expires_at: int, signature: str) -> bool:
        return hmac.compare_digest(self.sign(file_id, expires_at), signature)


@dataclass
class EmulatorState:
    config: EmulatorConfig
    clock: EmulatedClock
    files: FileStore
    engine: Engine
    faults: FaultInjector
    signer: UrlSigner
    stats: Counter[str] = field(default_factory=Counter)

    @classmethod
    def build(cls, config: EmulatorConfig, data_dir: Path) -> EmulatorState:
        clock = EmulatedClock(config.speed)
        ids = IdFactory(config.seed)
        files = FileStore(data_dir, clock, ids, config.behaviour.max_upload_bytes)
        faults = FaultInjector(config.faults, default_seed=config.seed)
        engine = Engine(config, clock, ids, files, faults)
        return cls(config, clock, files, engine, faults, UrlSigner(config.seed))

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


STATE: web.AppKey[EmulatorState] = web.AppKey("emulator_state", EmulatorState)
