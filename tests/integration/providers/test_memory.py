"""A 200 MB file goes up and comes back down with flat client memory (measured in a child
process: ``ru_maxrss`` and psutil-sampled peaks before vs after; no timing assertions)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from pathlib import Path

from batchd.emulator import Emulator

SIZE_BYTES = 200 * 1024 * 1024
LIMIT_BYTES = 50 * 1024 * 1024
REPO = Path(__file__).resolve().parents[3]


def write_big_jsonl(path: Path) -> str:
    """About 200 MB of valid batch lines, 1 KiB each; returns the sha256."""
    digest = hashlib.sha256()
    pad = "x" * 900
    with path.open("wb") as out:
        for start in range(0, SIZE_BYTES // 1024, 4096):
            block = b"".join(
                f'{{"custom_id":"{i:09d}","body":{{"messages":[{{"role":"user","content":"{pad}"}}]}}}}'.encode().ljust(
                    1023
                )
                + b"\n"
                for i in range(start, start + 4096)
            )
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def test_200mb_round_trip_keeps_memory_flat(emulator: Emulator, tmp_path: Path) -> None:
    source = tmp_path / "big.jsonl"
    expected = write_big_jsonl(source)
    target = tmp_path / "back" / "big.jsonl"
    target.parent.mkdir()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.providers.memory_child",
        emulator.url,
        emulator.config.api_keys[0],
        str(source),
        str(target),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), timeout=100)
    assert child.returncode == 0, err.decode()[-2000:]
    report = json.loads(out.decode().strip().splitlines()[-1])
    print("memory report:", json.dumps(report))

    assert report["size"] == source.stat().st_size >= SIZE_BYTES - 1024 * 1024
    assert sha256(target) == expected
    for op in ("upload", "download"):
        figures = report[op]
        assert figures["sampled_peak"] - figures["rss_before"] < LIMIT_BYTES, (op, figures)
        assert figures["maxrss_after"] - figures["maxrss_before"] < LIMIT_BYTES, (op, figures)
