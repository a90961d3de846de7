"""Child process for the memory test: upload a big file, download it back, report RSS.

Usage: ``python -m tests.integration.providers.memory_child URL KEY SOURCE TARGET``. Prints one
JSON object: resident-set figures in bytes (``ru_maxrss`` peaks and psutil-sampled peaks) taken
before and after each operation, plus the file id and the downloaded size.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import threading
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from batchd.providers.base import ProviderSettings
from batchd.providers.mistral import MistralProvider
from batchd.secret import Secret


class PeakSampler:
    """Samples this process's RSS every few milliseconds in a thread."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Measure:
    """RSS before, sampled peak during, and ``ru_maxrss`` before/after one operation."""

    def __init__(self, report: dict[str, Any], name: str) -> None:
        self.report = report
        self.name = name
        self.sampler = PeakSampler()

    def __enter__(self) -> None:
        self.report[self.name] = {
            "rss_before": psutil.Process().memory_info().rss,
            "maxrss_before": maxrss_bytes(),
        }
        self.sampler.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.sampler.__exit__()
        self.report[self.name]["sampled_peak"] = self.sampler.peak
        self.report[self.name]["maxrss_after"] = maxrss_bytes()


def maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


async def main(url: str, key: str, source: Path, target: Path) -> dict[str, Any]:
    settings = ProviderSettings(
        name="mem", base_url=url, api_key=Secret(key), requests_per_second=0
    )
    async with aiohttp.ClientSession() as session:
        provider = MistralProvider(settings, session)
        await provider.list_files()  # warm up: imports, connection pool, TLS-free loopback
        report: dict[str, Any] = {}
        with Measure(report, "upload"):
            ref = await provider.upload_file(source, filename="big.jsonl")
        with Measure(report, "download"):
            report["size"] = await provider.download_file(ref.id, target)
        report["file_id"] = ref.id
        return report


if __name__ == "__main__":
    url, key, source, target = sys.argv[1:5]
    print(json.dumps(asyncio.run(main(url, key, Path(source), Path(target)))))
