"""``batchd completion SHELL`` and ``batchd man``: generated from the parser itself (shtab for
the shell scripts), so they always match ``--help``."""

from __future__ import annotations

import argparse
import sys

from batchd.errors import BatchdError

SHELLS = ("bash", "zsh", "tcsh")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    completion = subparsers.add_parser(
        "completion",
        help="print a shell completion script",
        description="Print a completion script, e.g. `batchd completion bash > "
        "/etc/bash_completion.d/batchd` or `batchd completion zsh > ~/.zfunc/_batchd`.",
    )
    completion.add_argument("shell", choices=SHELLS, help="the shell to complete for")
    completion.set_defaults(handler=cmd_completion)
    man = subparsers.add_parser(
        "man",
        help="print the man page (roff), e.g. batchd man | man -l -",
        description="Print batchd(1) in roff: `batchd man > /usr/local/share/man/man1/batchd.1`.",
    )
    man.set_defaults(handler=cmd_man)


def cmd_completion(args: argparse.Namespace) -> int:
    from batchd.cli import build_parser

    try:
        import shtab
    except ImportError as exc:  # an environment installed before batchd depended on it
        raise BatchdError("shtab is missing: reinstall batchd (pip install -e .)") from exc

    sys.stdout.write(shtab.complete(build_parser(), shell=args.shell))
    return 0


def cmd_man(_args: argparse.Namespace) -> int:
    from batchd import __version__
    from batchd.cli import build_parser
    from batchd.cli._manpage import render

    sys.stdout.write(render(build_parser(), __version__))
    return 0
