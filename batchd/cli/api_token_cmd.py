"""``batchd api-token NAME ROLE``: a new bearer token for the HTTP API over TCP.

Prints the token (give it to the client; batchd never stores it) and the line to add to the
tokens file (``$CREDENTIALS_DIRECTORY/api_tokens`` or ``[api] tokens_file``), which holds only
the token's SHA-256.
"""

from __future__ import annotations

import argparse

from batchd.cli._output import add_json, print_json


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = subparsers.add_parser(
        "api-token",
        help="make a bearer token for the HTTP API (prints it and its tokens-file line)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("name", help="the token's name: a-z, 0-9, '.', '_' and '-'")
    cmd.add_argument("role", choices=["read", "submit", "admin"], help="what the token may do")
    add_json(cmd)
    cmd.set_defaults(handler=cmd_api_token)


def cmd_api_token(args: argparse.Namespace) -> int:
    import re

    from batchd.api.auth import new_token, token_digest
    from batchd.errors import UsageError

    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,63}", args.name):
        raise UsageError(f"{args.name!r}: names are a-z, 0-9, '.', '_' and '-' (64 at most)")
    token = new_token()
    line = f"{args.name} {args.role} {token_digest(token)}"
    if args.json:
        print_json({"token": token, "line": line})
    else:
        print(f"token (give it to the client, shown once): {token}")
        print(f"tokens file line: {line}")
    return 0
