"""What the API remembers of the files it handed to an inbox: who posted each one (its owner,
for cancel) and under which ``Idempotency-Key``.

One JSON line per posted file in ``<data_dir>/api/ledger.jsonl`` (0600), appended and fsynced
before the file is renamed into the inbox, so a submission that exists always has its line. A
line is keyed by the file's path in ``processing/`` (``<inode>-<name>``: what intake records as
the submission's ``processing_path``), which is known before the submission's id is.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Entry:
    processing_path: str
    owner: str
    body_sha256: str
    key: str | None = None  # sha256 of "<owner>\n<Idempotency-Key>"


def key_of(owner: str, idempotency_key: str) -> str:
    return hashlib.sha256(f"{owner}\n{idempotency_key}".encode()).hexdigest()


class Ledger:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._by_path: dict[str, Entry] = {}
        self._by_key: dict[str, Entry] = {}

    def load(self) -> None:
        self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self._path.exists():
            return
        for line in self._path.read_text(encoding="utf-8").splitlines():
            try:
                self._remember(Entry(**json.loads(line)))
            except (ValueError, TypeError):
                continue  # a line torn by a crash: its file never reached the inbox

    def _remember(self, entry: Entry) -> None:
        self._by_path[entry.processing_path] = entry
        if entry.key:
            self._by_key[entry.key] = entry

    def record(self, entry: Entry) -> None:
        data = (json.dumps(asdict(entry)) + "\n").encode()
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._remember(entry)

    def by_key(self, key: str) -> Entry | None:
        return self._by_key.get(key)

    def owner_of(self, processing_path: str | None) -> str | None:
        entry = self._by_path.get(processing_path or "")
        return entry.owner if entry else None
