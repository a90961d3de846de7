"""One download of one file, in a fresh process, with its time and peak RSS growth.

Variants:

- ``batchd``: ``MistralProvider.download_file`` (what the collector calls): streamed in 1 MiB
  chunks to a temp file, fsync, rename, directory fsync, length checked.
- ``aiohttp``: a bare aiohttp streaming download into a file (1 MiB chunks, no fsync).
- ``aiohttp-fsync``: the same plus one fsync at the end (the price of durability alone).
- ``sdk``: the script's path, ``client.files.download(file_id=...).read()`` written to a file.

RSS growth = peak RSS during the download minus RSS just before it. The peak is the larger of a
5 ms sampler's maximum and ``ru_maxrss`` when that rose during the download.

    python -m tests.benchmarks.download_child VARIANT --server URL --file-id ID --dest PATH
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
CHUNK = 1024 * 1024
MeasureAsync = Callable[[Awaitable[int]], Awaitable[int]]
MeasureSync = Callable[[Callable[[], int]], int]


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


def maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class RssPeak:
    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            self._stop.wait(0.005)

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


async def with_batchd(server: str, file_id: str, dest: Path, measure: MeasureAsync) -> int:
    import aiohttp

    from batchd.providers.base import ProviderSettings
    from batchd.providers.mistral import MistralProvider
    from batchd.secret import Secret

    settings = ProviderSettings(
        name="mistral", base_url=server, api_key=Secret(os.environ["MISTRAL_API_KEY"])
    )
    async with aiohttp.ClientSession() as session:
        provider = MistralProvider(settings, session)
        return await measure(provider.download_file(file_id, dest))


async def with_aiohttp(
    server: str, file_id: str, dest: Path, measure: MeasureAsync, *, fsync: bool
) -> int:
    import aiohttp

    async def fetch() -> int:
        size = 0
        headers = {"Authorization": f"Bearer {os.environ['MISTRAL_API_KEY']}"}
        url = f"{server}/v1/files/{file_id}/content"
        async with session.get(url, headers=headers) as resp:
            resp.raise_for_status()
            with dest.open("wb") as out:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    out.write(chunk)
                    size += len(chunk)
                if fsync:
                    out.flush()
                    os.fsync(out.fileno())
        return size

    async with aiohttp.ClientSession() as session:
        return await measure(fetch())


def with_sdk(server: str, file_id: str, dest: Path, measure: MeasureSync) -> int:
    from mistralai.client import Mistral

    client = Mistral(api_key=os.environ["MISTRAL_API_KEY"], server_url=server)

    def fetch() -> int:
        output = client.files.download(file_id=file_id)
        content = output.read()
        dest.write_bytes(content)
        return len(content)

    return measure(fetch)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variant", choices=["batchd", "aiohttp", "aiohttp-fsync", "sdk"])
    parser.add_argument("--server", required=True)
    parser.add_argument("--file-id", required=True)
    parser.add_argument("--dest", type=Path, required=True)
    args = parser.parse_args()
    record: dict[str, float] = {}

    async def measure_async(coro: Awaitable[int]) -> int:
        record["rss_before"], record["maxrss_before"] = rss_bytes(), maxrss_bytes()
        with RssPeak() as peak:
            started = time.perf_counter()
            size = await coro
            record["seconds"] = time.perf_counter() - started
        record["peak"] = peak.peak
        return size

    def measure_sync(fn: Callable[[], int]) -> int:
        record["rss_before"], record["maxrss_before"] = rss_bytes(), maxrss_bytes()
        with RssPeak() as peak:
            started = time.perf_counter()
            size = fn()
            record["seconds"] = time.perf_counter() - started
        record["peak"] = peak.peak
        return size

    if args.variant == "batchd":
        size = asyncio.run(with_batchd(args.server, args.file_id, args.dest, measure_async))
    elif args.variant.startswith("aiohttp"):
        fsync = args.variant == "aiohttp-fsync"
        size = asyncio.run(
            with_aiohttp(args.server, args.file_id, args.dest, measure_async, fsync=fsync)
        )
    else:
        size = with_sdk(args.server, args.file_id, args.dest, measure_sync)
    maxrss_after = maxrss_bytes()
    peak = record["peak"]
    if maxrss_after > record["maxrss_before"]:
        peak = max(peak, maxrss_after)
    result = {
        "variant": args.variant,
        "bytes": size,
        "on_disk": args.dest.stat().st_size,
        "seconds": record["seconds"],
        "mb_per_s": size / record["seconds"] / 1e6,
        "rss_before": record["rss_before"],
        "rss_growth": max(0.0, peak - record["rss_before"]),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
