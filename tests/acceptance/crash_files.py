"""The files the crash test drops, and what batchd must make of each of them.

Valid files carry unique content (their name is in every prompt), some of them more requests
than ``MAX_REQUESTS_PER_JOB`` so that they split into several provider jobs, and a few requests
the endpoint refuses (per-request 4xx lines, never a failed job). Invalid files are rejected by
intake. The expected result of every request comes from the emulator's own deterministic
``Responder`` and request checks, i.e. what a fault-free run returns.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchd.emulator.outputs import STABLE_CREATED, Responder, render
from batchd.emulator.requests import check

MAX_REQUESTS_PER_JOB = 4
EMBEDDING_DIM = 8
DEFAULT_MAX_TOKENS = 16


@dataclass(frozen=True)
class Route:
    name: str
    endpoint: str
    model: str


ROUTES = (
    Route("chat", "/v1/chat/completions", "mistral-small-latest"),
    Route("embed", "/v1/embeddings", "mistral-embed"),
)
ROUTES_BY_NAME = {r.name: r for r in ROUTES}


@dataclass
class Drop:
    route: Route
    name: str
    data: bytes
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    valid: bool = True
    duplicate_of: str | None = None
    dropped_at: float | None = None

    @property
    def stem(self) -> str:
        return self.name.removesuffix(".jsonl")

    @property
    def chunks(self) -> int:
        return -(-len(self.requests) // MAX_REQUESTS_PER_JOB) if self.valid else 0


def _lines(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records)


def _chat_body(rng: random.Random, name: str, i: int) -> dict[str, Any]:
    if rng.random() < 0.1:  # refused by the endpoint: a per-request 422 line
        return {"messages": [{"role": "wizard", "content": f"{name} {i}"}]}
    body: dict[str, Any] = {"messages": [{"role": "user", "content": f"{name} question {i}"}]}
    if rng.random() < 0.5:
        body["max_tokens"] = rng.randint(1, 12)
    return body


def _embed_body(rng: random.Random, name: str, i: int) -> dict[str, Any]:
    if rng.random() < 0.1:  # refused: an input that is not a list of strings
        return {"input": [f"{name} {i}", i]}
    return {"input": [f"{name} text {i} {rng.randint(0, 999)}"]}


def valid_drop(rng: random.Random, route: Route, n: int) -> Drop:
    name = f"{route.name}-{n:04d}.jsonl"
    count = rng.choice([1, 2, 3, 4, 5, 7, 9, 13])
    make = _chat_body if route.name == "chat" else _embed_body
    requests = [(f"{route.name}{n}-r{i}", make(rng, name, i)) for i in range(count)]
    data = _lines([{"custom_id": cid, "body": body} for cid, body in requests])
    return Drop(route, name, data, requests)


INVALID = (
    b"",  # empty
    b'{"custom_id":"a","body":{"messages":[]}}\n{not json\n',
    b'{"custom_id":"a","body":{"input":["x"]}}\n{"custom_id":"a","body":{"input":["y"]}}\n',
    b'{"custom_id":"a"}\n',
    b'{"custom_id":"a","body":"a string"}\n',
)


def invalid_drop(rng: random.Random, n: int) -> Drop:
    route = rng.choice(ROUTES)
    data = rng.choice(INVALID)
    if data:  # unique content anyway: a trailing comment line would be invalid JSON too
        data += f'{{"custom_id":"pad-{n}","body":"x"}}\n'.encode()
    return Drop(route, f"bad-{n:04d}.jsonl", data, valid=False)


def duplicate_drop(original: Drop, n: int) -> Drop:
    """The same bytes as ``original`` under another name: rejected as a duplicate."""
    return Drop(
        original.route, f"dup-{n:04d}.jsonl", original.data, valid=False, duplicate_of=original.name
    )


def plan_drops(rng: random.Random, count: int) -> list[Drop]:
    drops = []
    for n in range(count):
        if rng.random() < 0.12:
            drops.append(invalid_drop(rng, n))
        else:
            drops.append(valid_drop(rng, rng.choice(ROUTES), n))
    return drops


def drop_file(spool_root: Path, drop: Drop) -> None:
    """Write ``.name.part`` in the inbox, then rename it into place (the drop contract)."""
    inbox = spool_root / drop.route.name / "inbox"
    part = inbox / f".{drop.name}.part"
    part.write_bytes(drop.data)
    os.rename(part, inbox / drop.name)


# ------------------------------------------------------------------------------ expectations

_RESPONDER = Responder(
    default_max_tokens=DEFAULT_MAX_TOKENS, embedding_dim=EMBEDDING_DIM, created=STABLE_CREATED
)


def expected_record(route: Route, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """The results.jsonl record of one request, as a fault-free run produces it."""
    problem = check(route.endpoint, route.model, body)
    if problem is None:
        _, response = _RESPONDER.respond(route.endpoint, route.model, body)
        response = json.loads(render(response))  # embeddings: vectors are inserted raw
        return {"custom_id": custom_id, "status_code": 200, "response": response, "error": None}
    return {
        "custom_id": custom_id,
        "status_code": problem.status,
        "response": problem.body,
        "error": {"message": problem.message},
    }


def expected_records(drop: Drop) -> list[dict[str, Any]]:
    return [expected_record(drop.route, cid, body) for cid, body in drop.requests]
