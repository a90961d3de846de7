"""The parser is the single source of ``--help``, the man page and shell completion: every
command and option has help text, and the generated artefacts cover all of them."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from typing import Any

import pytest

from batchd.cli import build_parser, run
from batchd.cli._manpage import commands
from batchd.cli.emulator_cmd import DEFAULT_PORT


def every_parser() -> list[tuple[str, argparse.ArgumentParser]]:
    root = build_parser()
    return [("batchd", root)] + [
        ("batchd " + " ".join(words), sub) for words, _, sub in commands(root)
    ]


def test_every_command_and_option_has_help():
    missing = [
        f"{name} {' '.join(a.option_strings) or a.dest}"
        for name, parser in every_parser()
        for a in parser._actions
        if not isinstance(a, argparse._SubParsersAction) and not a.help
    ]
    missing += [
        f"batchd {' '.join(words)}" for words, text, _ in commands(build_parser()) if not text
    ]
    assert missing == []


def test_remote_help_names_the_emulators_real_port(capsys: Any):
    with pytest.raises(SystemExit):
        run(["remote", "--help"])
    out = capsys.readouterr().out
    assert f"http://127.0.0.1:{DEFAULT_PORT}" in out
    with pytest.raises(SystemExit):
        run(["emulator", "--help"])
    assert f"default {DEFAULT_PORT}" in capsys.readouterr().out


def test_the_man_page_covers_every_command_and_option(capsys: Any):
    assert run(["man"]) == 0
    page = capsys.readouterr().out
    assert page.startswith(".TH BATCHD 1")
    for name, parser in every_parser():
        if name != "batchd":
            assert f'.SS "{name.replace("-", chr(92) + "-")}"' in page, name
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for option in action.option_strings:
                assert option.replace("-", "\\-") in page, (name, option)


@pytest.mark.skipif(shutil.which("groff") is None, reason="needs groff")
def test_the_man_page_renders_without_warnings(capsys: Any):
    assert run(["man"]) == 0
    page = capsys.readouterr().out
    done = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z"],
        input=page,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_knows_every_command(shell: str, capsys: Any):
    assert run(["completion", shell]) == 0
    script = capsys.readouterr().out
    for word in ("jobs", "status", "check", "submit", "--cursor", "--json"):
        assert word in script
    if shell == "bash" and shutil.which("bash"):
        checked = subprocess.run(
            ["bash", "-n"], input=script, capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stderr


# Commands that print a document of their own (a script, a page, a file, a secret) or run until
# stopped; every other command prints data and takes --json.
NO_JSON = {
    "completion",
    "man",
    "config example",
    "run",
    "demo",
    "emulator",
    "jobs watch",
    "webhooks new-secret",
}


def test_every_command_that_prints_data_takes_json():
    leaves = [
        (" ".join(words), sub)
        for words, _, sub in commands(build_parser())
        if not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions)
    ]
    missing = [
        name
        for name, sub in leaves
        if name not in NO_JSON and not any("--json" in a.option_strings for a in sub._actions)
    ]
    assert missing == []
    assert {"gc", "check", "submit", "cancel", "events replay", "webhooks test"} <= {
        name for name, _ in leaves
    } - NO_JSON


def test_config_goes_before_or_after_every_command():
    """``batchd --config F CMD ...`` and ``batchd CMD ... --config F`` mean the same: no
    command's own --config has a default that would hide the top-level one."""
    root = build_parser()
    hiding = [
        " ".join(words)
        for words, _, sub in commands(root)
        for a in sub._actions
        if "--config" in a.option_strings and a.default is not argparse.SUPPRESS
    ]
    assert hiding == []
    for argv in (["jobs", "list"], ["remote", "list"], ["check"], ["status"], ["gc"]):
        before = root.parse_args(["--config", "a.toml", *argv])
        after = root.parse_args([*argv, "--config", "b.toml"])
        assert (str(before.config), str(after.config)) == ("a.toml", "b.toml"), argv
        assert root.parse_args(argv).config is None
