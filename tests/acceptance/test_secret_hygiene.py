"""Issue 4 / reliability target L1: a canary API key never appears in any captured log line,
traceback, database row or file, whatever happens (provider faults, a refused reload with its
traceback, a 401 from a wrong key), in any common encoding.
"""

from __future__ import annotations

import base64
import random
import signal
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

from batchd.models import SubmissionState
from batchd.webhooks.signing import new_secret
from tests.acceptance.crash_harness import WebhookReceiver
from tests.acceptance.harness import Harness, RouteSpec, chat_lines, new_api_key
from tests.acceptance.test_results import with_failures
from tests.notify_listener import is_ready

FAULTS = [
    "reset:1,route=POST /v1/files,limit=1",  # upload lost: find it again or re-upload
    "500:1,route=POST /v1/batch/jobs,limit=1",  # ambiguous create: reconcile
    "503:1,route=GET /v1/batch/jobs/*,limit=2",  # polls retried
    "reset:1,route=GET /v1/files/*/content,limit=1",  # download retried
]


def encodings(secret: str) -> set[bytes]:
    """The secret as it could be written: raw, URL-encoded, and base64 (standard and URL-safe,
    at each of the three alignments it could have inside a longer encoded string)."""
    raw = secret.encode()
    forms = {raw, urllib.parse.quote(secret, safe="").encode(), raw.hex().encode()}
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * shift + raw)
            forms.add(encoded[4:-4])  # drop the characters the padding bytes touch
    return forms


def files_under(*roots: Path) -> Iterable[Path]:
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                yield path


def leaks(paths: Iterable[Path], blobs: Iterable[bytes], secrets: Iterable[str]) -> list[str]:
    """``"<where>: <which form>"`` for every occurrence of a secret in the files or blobs."""
    forms = {form: secret for secret in secrets for form in encodings(secret)}
    found = []
    sources = [(str(p), p.read_bytes()) for p in paths] + [
        (f"blob {i}", b) for i, b in enumerate(blobs)
    ]
    for where, data in sources:
        found += [f"{where}: {form!r}" for form in forms if form in data]
    return found


def test_the_leak_scanner_finds_every_form(tmp_path: Path) -> None:
    secret = new_api_key()
    for i, data in enumerate(
        [
            f"x {secret} y".encode(),
            base64.b64encode(f"Bearer {secret}".encode()),
            base64.b64encode(f"ab:{secret}".encode()),
            base64.urlsafe_b64encode(f"a:{secret}".encode()),
            urllib.parse.quote(f"key={secret}").encode(),
        ]
    ):
        path = tmp_path / f"f{i}"
        path.write_bytes(b"\x00prefix" + data + b"suffix")
        assert leaks([path], [], [secret]), data
    assert leaks([], [b"nothing here"], [secret]) == []


async def test_canary_secrets_never_reach_logs_database_or_files(harness: Harness) -> None:
    """The API key, a wrong API key and a webhook signing secret (whose deliveries happen)."""
    wrong_key = "sk-canary-" + new_api_key()
    hook_secret = new_secret()
    receiver = WebhookReceiver(hook_secret, random.Random(1), fail_rate=0.5, slow_rate=0.0)
    await receiver.start()
    harness.start_emulator(faults=FAULTS)
    harness.configure([RouteSpec("chat")], daemon={"log_level": "debug"})
    with harness.config_path.open("a") as config:
        config.write(
            f'\n[[webhooks]]\nname = "canary"\nurl = "{receiver.url}"\n'
            'secret_env = "CANARY_HOOK_SECRET"\nallow_http = true\nallow_private = true\n'
        )
    hook_env = {"CANARY_HOOK_SECRET": hook_secret}
    await harness.start(env=hook_env)
    harness.drop("chat", "a.jsonl", chat_lines(3, "a"))
    harness.drop("chat", "b.jsonl", with_failures())
    await harness.wait_done("a.jsonl")
    await harness.wait_done("b.jsonl")
    assert harness.logged("submit.create_ambiguous")  # the faults did fire and were logged
    await harness.wait_until(lambda: len(receiver.acked) >= 3, "webhook deliveries")
    assert receiver.refused and not receiver.bad_signatures  # retried, and signed right

    # A refused reload logs a traceback.
    good = harness.config_path.read_text()
    mark = len(harness.listener.collect())
    harness.config_path.write_text(good + "\n[bogus]\n")
    harness.daemon.send(signal.SIGHUP)  # type: ignore[union-attr]
    await harness.listener.wait_for(is_ready, start=mark)
    await harness.wait_until(lambda: harness.logged("daemon.reload_failed"), "reload_failed")
    assert any("exception" in e for e in harness.logged("daemon.reload_failed"))
    harness.config_path.write_text(good)
    outputs = [await harness.cli("check", "--config", str(harness.config_path), env=hook_env)]
    sub = await harness.submission("b.jsonl")
    assert sub is not None
    outputs.append(
        await harness.cli("jobs", "show", "--json", "--config", str(harness.config_path), sub.id)
    )
    await harness.stop()

    # A wrong key: 401s, a paused provider, a provider.auth_failed event.
    await harness.start(api_key=wrong_key, env=hook_env)
    harness.drop("chat", "c.jsonl", chat_lines(2, "c"))
    await harness.wait_submission("c.jsonl", [SubmissionState.ACTIVE])

    async def auth_failed() -> bool:
        return "provider.auth_failed" in await harness.event_types()

    await harness.wait_until(auth_failed, "provider.auth_failed")
    outputs.append(
        await harness.cli(
            "check",
            "--config",
            str(harness.config_path),
            env={"MISTRAL_API_KEY": wrong_key, **hook_env},
        )
    )
    assert outputs[-1][0] == 1  # the 401 is reported, not printed with the key
    await harness.stop()
    await receiver.stop()

    blobs = [text.encode() for _, out, err in outputs for text in (out, err)]
    blobs += harness.listener.raw
    blobs += [body for bodies in receiver.received.values() for body in bodies]
    scanned = list(files_under(harness.data_dir, harness.spool_root))
    scanned += [p for run in harness.runs for p in run.log_paths]
    assert any(p.name.endswith("-wal") for p in scanned) or any(
        p.name.endswith(".sqlite3") for p in scanned
    )
    secrets = [harness.api_key, wrong_key, hook_secret, hook_secret.removeprefix("whsec_")]
    assert leaks(scanned, blobs, secrets) == []
