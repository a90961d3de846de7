"""The long-running fuzz target (tests/fuzz/fuzz_batchfile.py) keeps working: a short plain run
and its seeds, so that it does not rot between the times someone runs it for hours."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz import fuzz_batchfile
from tests.fuzz.fuzz_batchfile import SEEDS, check, plain_fuzz


@pytest.mark.parametrize("data", SEEDS)
def test_each_seed_passes_the_target(data: bytes, tmp_path: Path) -> None:
    check(data, tmp_path)


def test_a_short_plain_fuzzing_run_finds_no_crash() -> None:
    assert plain_fuzz(seconds=30.0, seed=13, iterations=300) == 300


def test_the_target_reports_what_the_parser_must_never_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def buggy(*_args: object, **_kwargs: object) -> None:
        raise RecursionError("a parser bug")

    monkeypatch.setattr(fuzz_batchfile, "parse_batch_file", buggy)
    with pytest.raises(RecursionError):  # a crash for the fuzzer, never swallowed
        check(SEEDS[0], tmp_path)
