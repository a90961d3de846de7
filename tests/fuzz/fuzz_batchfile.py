"""Fuzz the batch-file parser for as long as you like (issue 13 item 12).

Whatever the bytes, ``parse_batch_file`` must return a ``ParsedFile`` whose chunks can be
written and read back, or raise ``IntakeRejected``: any other exception, or a broken invariant,
is a crash. The invariants are those of the property test (tests/unit/batchfile/
test_properties.py), which runs a bounded number of examples in CI; this target is the long run.

Coverage-guided, with atheris (libFuzzer; ``pip install -e '.[fuzz]'``)::

    python -m tests.fuzz.fuzz_batchfile -max_total_time=3600 tests/fuzz/corpus

(libFuzzer options after the module name; the corpus folder is created and grows with every
new path found; a crash is written to ``crash-<sha1>`` and can be replayed by passing the file.)
Where atheris does not install, the same target runs under a plain mutation fuzzer::

    python -m tests.fuzz.fuzz_batchfile --plain --seconds 600 [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from batchd.batchfile import FileLimits, parse_batch_file
from batchd.chunks import plan_chunks, write_chunk
from batchd.errors import IntakeRejected

CHAT = "/v1/chat/completions"
LIMITS = FileLimits(max_file_bytes=1 << 16, max_line_bytes=4096, max_lines=200, max_problems=20)
SEEDS: list[bytes] = [
    b'{"custom_id": "a", "body": {"model": "m", "messages": []}}\n',
    b'{"body": {"messages": [{"role": "user", "content": "hi \\u00e9"}]}}\r\n\n',
    b'{"custom_id": "a", "custom_id": "b", "body": {}}\n',
    b'{"method": "POST", "url": "/v1/chat/completions", "body": {"a": [1, 2.5, null]}}\n',
    b'\xef\xbb\xbf{"custom_id": "line-2", "body": {}}\n{"body": {}}\n',
    b'{"body": {"a": ' + b"[" * 70 + b"]" * 70 + b"}}\n",
]


def check(data: bytes, workdir: Path) -> None:
    """One input: parse it; if accepted, write its chunks and read them back."""
    path = workdir / "in.jsonl"
    path.write_bytes(data)
    try:
        parsed = parse_batch_file(path, endpoint=CHAT, limits=LIMITS)
    except IntakeRejected as exc:
        check_rejection(exc, data)
        return
    n = parsed.request_count
    assert n >= 1 and parsed.size_bytes == len(data)
    assert len(set(parsed.custom_ids)) == len(parsed.line_numbers) == n
    assert parsed.line_numbers == sorted(set(parsed.line_numbers))
    written = b""
    for chunk in plan_chunks(parsed.normalized_sizes, max_requests=7, max_bytes=1 << 20):
        dest = workdir / f"chunk-{chunk.index}.jsonl"
        assert write_chunk(path, parsed, chunk, dest, endpoint=CHAT) == chunk.byte_count
        written += dest.read_bytes()
    records = [json.loads(line) for line in written.splitlines()]
    assert [r["custom_id"] for r in records] == parsed.custom_ids
    assert all(list(r) == ["custom_id", "body"] and isinstance(r["body"], dict) for r in records)


def check_rejection(exc: IntakeRejected, data: bytes) -> None:
    problems = exc.problems
    assert 1 <= len(problems) <= LIMITS.max_problems, problems
    assert all(0 <= p.line <= data.count(b"\n") + 1 for p in problems), problems
    assert all("\n" not in str(p) for p in problems), problems  # one line each in reason.txt


# ------------------------------------------------------------------------------ plain fuzzer


def _mutate(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        at = rng.randint(0, len(buf))
        if op == 0 and buf:  # flip a bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # insert interesting bytes
            buf[at:at] = rng.choice([b"\n", b"\r", b"\x00", b"\xff", b"{", b"}", b'"', b"\\u"])
        elif op == 2 and buf:  # delete a run
            del buf[at : at + rng.randint(1, 8)]
        elif op == 3:  # splice a piece of another input
            other = rng.choice(pool)
            start = rng.randint(0, len(other))
            buf[at:at] = other[start : start + rng.randint(1, 64)]
        elif op == 4:  # repeat a line
            lines = bytes(buf).split(b"\n")
            buf = bytearray(b"\n".join([*lines, rng.choice(lines)]))
        else:  # a key or value seen in batch files
            buf[at:at] = rng.choice([b'"custom_id": ', b'"body": {}', b"1e999", b"NaN", b"[["])
    return bytes(buf)


def plain_fuzz(*, seconds: float, seed: int, iterations: int | None = None) -> int:
    """Mutate the seeds for ``seconds`` (or ``iterations`` inputs); returns inputs checked.
    An input that breaks the target is written to ``crash-plain-<seed>-<i>`` and re-raised."""
    rng = random.Random(seed)
    pool = list(SEEDS)
    deadline = time.monotonic() + seconds
    count = 0
    with tempfile.TemporaryDirectory() as tmp:
        while time.monotonic() < deadline and (iterations is None or count < iterations):
            data = _mutate(rng.choice(pool), rng, pool)[: LIMITS.max_file_bytes * 2]
            try:
                check(data, Path(tmp))
            except BaseException:
                Path(f"crash-plain-{seed}-{count}").write_bytes(data)
                raise
            if len(pool) < 1000 and rng.random() < 0.05:
                pool.append(data)
            count += 1
    return count


# ------------------------------------------------------------------------------ entry point


def _atheris_main(argv: list[str]) -> None:
    import atheris

    workdir = Path(tempfile.mkdtemp(prefix="batchd-fuzz-"))
    corpus = [a for a in argv[1:] if not a.startswith("-")]
    for folder in corpus:  # libFuzzer starts from the seeds when the corpus is new
        os.makedirs(folder, exist_ok=True)
        if not os.listdir(folder):
            for i, data in enumerate(SEEDS):
                Path(folder, f"seed-{i}").write_bytes(data)

    def target(data: bytes) -> None:
        check(data, workdir)

    atheris.Setup(argv, target)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv if argv is None else argv
    if "--plain" not in args:
        try:
            import atheris
        except ImportError:
            print(
                "atheris is not installed (pip install -e '.[fuzz]'); use --plain", file=sys.stderr
            )
            raise SystemExit(2) from None
        atheris.instrument_all()  # coverage of everything loaded: the parser, the chunk writer
        _atheris_main(args)
        return
    parser = argparse.ArgumentParser(description="plain mutation fuzzing of the batch-file parser")
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=random.SystemRandom().randrange(1, 2**31))
    opts = parser.parse_args(args[1:])
    print(f"plain fuzzing for {opts.seconds} s, seed {opts.seed}", file=sys.stderr)
    count = plain_fuzz(seconds=opts.seconds, seed=opts.seed)
    print(f"{count} inputs, no crash", file=sys.stderr)


if __name__ == "__main__":
    main()
