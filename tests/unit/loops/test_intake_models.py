"""Issue 13 item 14, intake half: lines that name a model other than the route's are accepted
with a warning (log and the submission.accepted event), since one job runs one model."""

from __future__ import annotations

import json
from pathlib import Path

from structlog.testing import capture_logs

from batchd.batchfile import MAX_MODELS_TRACKED, FileLimits, model_mismatch, parse_batch_file
from batchd.models import SubmissionState
from tests.unit.loops.conftest import World


def lines(*models: str | None) -> str:
    out = []
    for i, model in enumerate(models):
        body: dict[str, object] = {"messages": [{"role": "user", "content": "hi"}]}
        if model is not None:
            body["model"] = model
        out.append(json.dumps({"custom_id": f"c{i}", "body": body}) + "\n")
    return "".join(out)


async def test_lines_naming_another_model_are_accepted_with_a_warning(world: World) -> None:
    assert world.route.model == "m"
    content = lines("m", "mistral-medium-latest", None, "mistral-medium-latest", "x\x1b[0m")
    with capture_logs() as logs:
        sub = await world.accept("mixed.jsonl", content)
    assert sub.state is SubmissionState.ACTIVE
    [event] = await world.store.list_events(limit=10)
    expected = {
        "route_model": "m",
        "line_models": {"mistral-medium-latest": 2, "x\\x1b[0m": 1},
        "requests": 3,
        "first_line": 2,
    }
    assert event.data["model_mismatch"] == expected
    [warning] = [e for e in logs if e["event"] == "intake.model_mismatch"]
    assert warning["submission_id"] == sub.id
    assert {k: warning[k] for k in expected} == expected


async def test_lines_that_agree_with_the_route_or_name_no_model_give_no_warning(
    world: World,
) -> None:
    with capture_logs() as logs:
        sub = await world.accept("same.jsonl", lines("m", None, "m"))
    assert sub.state is SubmissionState.ACTIVE
    [event] = await world.store.list_events(limit=10)
    assert "model_mismatch" not in event.data
    assert not [e for e in logs if e["event"] == "intake.model_mismatch"]


def test_models_are_counted_with_their_first_line_and_bounded(tmp_path: Path) -> None:
    names = [f"m{i}" for i in range(MAX_MODELS_TRACKED + 5)]
    path = tmp_path / "in.jsonl"
    path.write_text(lines("a", None, "b", "a", *names))
    limits = FileLimits(max_file_bytes=1 << 20, max_line_bytes=4096, max_lines=1000)
    parsed = parse_batch_file(path, endpoint="/v1/chat/completions", limits=limits)
    assert parsed.models["a"] == (2, 1)
    assert parsed.models["b"] == (1, 3)
    assert len(parsed.models) == MAX_MODELS_TRACKED
    assert model_mismatch(None, parsed.models) == {}  # no route model: nothing to compare
    assert model_mismatch("a", {"a": (3, 1)}) == {}
    assert len(model_mismatch("a", parsed.models)["line_models"]) == 5
