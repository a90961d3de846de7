"""A finished job's result files: what to write, and how they become file objects.

The writing itself (``generate``) runs in a worker thread; these helpers prepare it and
register its output in the file store (``sample_type`` batch_result / batch_error, ``source``
mistral, ``application/jsonl``). An empty result file is not kept: a job whose requests all
failed has ``output_file: null``, one without failures ``error_file: null``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from batchd.emulator.clock import IdFactory
from batchd.emulator.config import Behaviour
from batchd.emulator.faults import FaultKind, FaultRule
from batchd.emulator.files import FileRecord, FileStore
from batchd.emulator.generate import FileSummary, GenerationPlan
from batchd.emulator.lifecycle import End, JobRecord
from batchd.emulator.outputs import STABLE_CREATED, Responder

SAMPLE_TAGS = {"batch_result": "output", "batch_error": "error"}


def plan_results(
    job: JobRecord, end: End, files: FileStore, ids: IdFactory, behaviour: Behaviour
) -> tuple[GenerationPlan, Responder, str, str]:
    """The generation plan, its responder, and the ids of the output and error files."""
    out_id, err_id = ids.new(), ids.new()
    plan = GenerationPlan(
        endpoint=job.endpoint,
        model=job.model,
        sources=job.sources,
        done=end.done,
        out_path=files.new_path(out_id),
        err_path=files.new_path(err_id),
        error_field=behaviour.error_field,
    )
    responder = Responder(
        default_max_tokens=behaviour.default_max_tokens,
        embedding_dim=behaviour.embedding_dim,
        created=STABLE_CREATED if behaviour.stable_created else int(end.at),
    )
    return plan, responder, out_id, err_id


def with_fault(plan: GenerationPlan, rule: FaultRule | None) -> tuple[GenerationPlan, int | None]:
    """A result-file fault applied to a plan: ``short_results`` writes the lines of only the
    first ``fraction`` of the processed requests; ``short_counts`` writes them all and returns
    how many the finished job's counters show (``None``: the true count)."""
    if rule is None:
        return plan, None
    share = int(plan.done * rule.fraction)
    if rule.kind is FaultKind.SHORT_RESULTS:
        return dataclasses.replace(plan, done=share), None
    return plan, share


def register_result(
    files: FileStore,
    job: JobRecord,
    file_id: str,
    summary: FileSummary,
    *,
    sample_type: str,
    created_at: int,
) -> FileRecord | None:
    """Add a written result file to the store; drop it when empty or the job is gone."""
    path = files.new_path(file_id)
    if job.deleted or summary.lines == 0:
        unlink(path)
        return None
    record = FileRecord(
        id=file_id,
        filename=f"{job.id}_{SAMPLE_TAGS[sample_type]}.jsonl",
        size_bytes=summary.size_bytes,
        created_at=created_at,
        purpose="batch",
        sample_type=sample_type,
        source="mistral",
        path=path,
        num_lines=summary.lines,
        mimetype="application/jsonl",
    )
    return files.add(record)


def write_jsonl(path: Path, lines: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as sink:
        for line in lines:
            sink.write(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")


def read_jsonl(paths: list[Path], cap: int) -> list[Any]:
    out: list[Any] = []
    for path in paths:
        with path.open("rb") as handle:
            for raw in handle:
                if len(out) >= cap:
                    return out
                out.append(json.loads(raw))
    return out


def unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
