"""A man page (roff, section 1) generated from the argument parser: every command, every
option and its help, so the page can never drift from ``--help``."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

EXIT_STATUS = (
    ("0", "success (status: idle; submit --wait: every request answered without an error)"),
    ("1", "runtime failure (a provider unreachable, a database error, ...)"),
    ("2", "usage error"),
    ("3", "configuration or start-up failure"),
    ("4", "status: busy; submit --wait: answered, some requests with an error"),
    ("5", "submit --wait: partial (some requests have no answer)"),
    ("6", "submit --wait: failed"),
    ("7", "submit: rejected (invalid, or a duplicate of content batchd already ran)"),
    ("8", "submit --wait: cancelled"),
    ("9", "submit --wait: --wait-timeout passed first"),
    ("130", "interrupted"),
)


def escape(text: str) -> str:
    """Text safe in roff: backslashes escaped, hyphens literal, no line starting a request."""
    out = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line[:1] in {".", "'"} else line for line in out.split("\n"))


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str, argparse.ArgumentParser]]:
    """Every (sub)command as (words, help, parser), depth first, in registration order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield (*path, name), helps.get(name, ""), sub
                yield from commands(sub, (*path, name))


def metavar(action: argparse.Action, *, upper: bool = True) -> str:
    shown = action.metavar or (action.dest.upper() if upper else action.dest)
    return " ".join(shown) if isinstance(shown, tuple) else shown


def option_lines(parser: argparse.ArgumentParser) -> list[str]:
    lines = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        if action.option_strings:
            names = ", ".join(f"\\fB{escape(o)}\\fR" for o in action.option_strings)
            if action.nargs != 0:
                names += f" \\fI{escape(metavar(action))}\\fR"
        else:
            names = f"\\fI{escape(metavar(action, upper=False))}\\fR"
        help_text = (action.help or "") % {"default": action.default, "prog": parser.prog}
        lines += [".TP", names, escape(help_text)]
    return lines


def render(parser: argparse.ArgumentParser, version: str) -> str:
    lines = [
        f'.TH BATCHD 1 "" "batchd {escape(version)}" "User Commands"',
        ".SH NAME",
        f"batchd \\- {escape(parser.description or '')}",
        ".SH SYNOPSIS",
        ".B batchd",
        "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]",
        ".SH OPTIONS",
        *option_lines(parser),
        ".SH COMMANDS",
    ]
    for words, help_text, sub in commands(parser):
        lines += [f'.SS "batchd {escape(" ".join(words))}"', escape(help_text)]
        if sub.description and sub.description != help_text:
            lines += [".PP", escape(sub.description)]
        lines += option_lines(sub)
    lines += [".SH ENVIRONMENT", escape(parser.epilog or ""), ".SH EXIT STATUS"]
    for code, meaning in EXIT_STATUS:
        lines += [".TP", f"\\fB{code}\\fR", escape(meaning)]
    return "\n".join(lines) + "\n"
