"""``batchd api-token``: the printed line parses and matches the printed token."""

from __future__ import annotations

import json
from typing import Any

from batchd.api.auth import Principal, Role, check_token, parse_tokens
from batchd.cli import run


def test_the_line_matches_the_token(capsys: Any) -> None:
    assert run(["api-token", "ci", "submit", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["token"] not in out["line"]
    entries = parse_tokens(out["line"], "tokens")
    assert check_token(entries, out["token"]) == Principal("token:ci", Role.SUBMIT)


def test_a_bad_name_is_a_usage_error(capsys: Any) -> None:
    assert run(["api-token", "Bad Name", "read"]) == 2
