"""Scale: 10,000 jobs stay listable; large files are streamed, never held in memory."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import aiohttp
import psutil

from batchd.emulator import serve
from tests.integration.emulator.helpers import AUTH, Api, chat_file, stepped_config

N_JOBS = 10_000


async def test_ten_thousand_jobs_list_and_get(session: aiohttp.ClientSession) -> None:
    # Emulated time nearly stands still (1 ms per real second) so that creating 10k jobs on a
    # loaded machine moves no job past RUNNING before the explicit advance below.
    async with serve(stepped_config(speed=0.001)) as emu:
        api = Api(session, emu)
        f = await api.upload(chat_file(2))
        gate = asyncio.Semaphore(64)

        async def create(i: int) -> str:
            async with gate:
                job = await api.create(
                    input_files=[f["id"]],
                    model="even" if i % 2 == 0 else "odd",
                    metadata={"batchd_job": f"job-{i}"},
                )
                return str(job["id"])

        started = time.perf_counter()
        ids = await asyncio.gather(*(create(i) for i in range(N_JOBS)))
        created_s = time.perf_counter() - started
        await emu.settle()
        emu.advance(10.5)  # every job RUNNING

        started = time.perf_counter()
        first = await api.ok("GET", "/v1/batch/jobs", params={"page_size": 100})
        list_s = time.perf_counter() - started
        assert first["total"] == N_JOBS and len(first["data"]) == 100
        assert first["data"][0]["id"] == ids[-1]
        last = await api.ok("GET", "/v1/batch/jobs", params={"page": 99, "page_size": 100})
        assert last["data"][-1]["id"] == ids[0]

        tagged = await api.ok("GET", "/v1/batch/jobs", params={"batchd_job": "job-4321"})
        assert [j["id"] for j in tagged["data"]] == [ids[4321]] and tagged["total"] == 1
        odd = await api.ok(
            "GET", "/v1/batch/jobs", params=[("model", "odd"), ("status", "RUNNING")]
        )
        assert odd["total"] == N_JOBS // 2
        started = time.perf_counter()
        job = await api.job(ids[777])
        get_s = time.perf_counter() - started
        assert job["status"] == "RUNNING" and job["total_requests"] == 2
        print(
            f"\n10k jobs: create {created_s:.1f}s, list {list_s * 1000:.1f} ms, "
            f"get {get_s * 1000:.2f} ms"
        )


def _rss_bytes() -> int:
    return int(psutil.Process(os.getpid()).memory_info().rss)


def _write_big_file(path: Path, size_bytes: int) -> str:
    line = chat_file(1)
    digest = hashlib.sha256()
    block = line * (1024 * 1024 // len(line))
    written = 0
    with path.open("wb") as sink:
        while written < size_bytes:
            sink.write(block)
            digest.update(block)
            written += len(block)
    return digest.hexdigest()


async def test_large_file_is_streamed_both_ways(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    size_bytes = 96 * 1024 * 1024
    source = tmp_path / "big.jsonl"
    expected_sha = _write_big_file(source, size_bytes)
    actual_size = source.stat().st_size
    async with serve(stepped_config()) as emu:
        api = Api(session, emu)
        baseline = _rss_bytes()
        with source.open("rb") as handle:
            form = aiohttp.FormData()
            form.add_field("purpose", "batch")
            form.add_field("file", handle, filename="big.jsonl")
            uploaded = await api.ok("POST", "/v1/files", data=form)
        assert uploaded["bytes"] == actual_size
        assert uploaded["num_lines"] == actual_size // len(chat_file(1))
        after_upload = _rss_bytes()

        digest = hashlib.sha256()
        url = f"{api.url}/v1/files/{uploaded['id']}/content"
        async with session.get(url, headers=AUTH) as resp:
            assert int(resp.headers["Content-Length"]) == actual_size
            async for chunk in resp.content.iter_chunked(1024 * 1024):
                digest.update(chunk)
        assert digest.hexdigest() == expected_sha
        after_download = _rss_bytes()
    growth = max(after_upload, after_download) - baseline
    print(f"\nRSS growth for a {actual_size >> 20} MB round trip: {growth >> 20} MB")
    assert growth < actual_size // 3
