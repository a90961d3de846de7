"""Input files: chat-completion batch files of ``lines`` requests, unique per file and run."""

from __future__ import annotations

import json
from pathlib import Path

WORDS: tuple[str, ...] = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")
WORDS += ("golf", "hotel", "india", "juliet", "kilo", "lima")


def batch_lines(tag: str, index: int, lines: int, *, max_tokens: int = 16) -> bytes:
    records = []
    for i in range(lines):
        words = " ".join(WORDS[(index + i + k) % len(WORDS)] for k in range(6))
        body = {
            "messages": [{"role": "user", "content": f"{tag} {index} {i}: {words}?"}],
            "max_tokens": max_tokens,
        }
        records.append(json.dumps({"custom_id": f"r{i}", "body": body}, separators=(",", ":")))
    return ("\n".join(records) + "\n").encode()


def write_batch_files(folder: Path, tag: str, count: int, lines: int) -> list[Path]:
    """``count`` files named ``f0000.jsonl``... in ``folder`` (which is created)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"f{index:04d}.jsonl"
        path.write_bytes(batch_lines(tag, index, lines))
        paths.append(path)
    return paths
