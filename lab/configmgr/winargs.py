"""Windows command lines: split them like ``CommandLineToArgvW`` and join them back.

:func:`split_windows_command_line` is how Windows hands a ccmsetup line to ccmsetup.exe;
:func:`join_windows_command_line` is its inverse (the linter writes corrected lines with it):
``split_windows_command_line(join_windows_command_line(args)) == list(args)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from lab.errors import CcmsetupSyntaxError

__all__ = [
    "join_windows_command_line",
    "quote_token",
    "quote_windows_argument",
    "show",
    "split_windows_command_line",
]

_MAX_SHOWN: Final = 80


def show(text: str) -> str:
    """Quote ``text`` for a one-line message (control characters escaped, long text cut)."""
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    if len(shown) > _MAX_SHOWN:
        shown = shown[: _MAX_SHOWN - 3] + "..."
    return f"'{shown}'"


def split_windows_command_line(line: str) -> list[str]:
    r'''Split ``line`` into arguments like ``CommandLineToArgvW``.

    * Arguments are separated by spaces and tabs outside a quoted region.
    * ``2n`` backslashes followed by ``"`` give ``n`` backslashes, and the quote opens or
      closes a quoted region; ``2n+1`` backslashes followed by ``"`` give ``n`` backslashes
      and a literal ``"``. Backslashes not followed by ``"`` are literal (``C:\dir\``).
    * Inside a quoted region, ``""`` gives a literal ``"`` and (undocumented, as in
      ``CommandLineToArgvW`` and the pre-2008 C runtime) ends the region, so ``"a""b c"`` is
      ``a"b`` then ``c`` plus an unclosed quote; write ``"a"""b c"`` to keep quoting.
    * ``""`` on its own is an empty argument.

    Every argument, the first included, follows these rules (``CommandLineToArgvW`` reads the
    program name with simpler ones; the difference only matters for a program path that
    contains ``\"``). Windows silently runs an unclosed quote to the end of the line; the lab
    refuses it, because it almost always means a lost closing quote.

    Raises :class:`~lab.errors.CcmsetupSyntaxError` naming the 1-based column where the
    unclosed quote opened.
    '''
    args: list[str] = []
    current: list[str] | None = None
    quotes = 0  # CommandLineToArgvW's qcount: 0 outside a quoted region, 1 inside
    opened_at = 0  # index of the quote that opened the current region
    escaped_in_region: int | None = None  # index of a \" seen inside the current region
    i = 0
    n = len(line)
    while i < n:
        c = line[i]
        if c in " \t" and quotes == 0:
            if current is not None:
                args.append("".join(current))
                current = None
            i += 1
            continue
        if current is None:
            current = []
        if c == "\\":
            j = i
            while j < n and line[j] == "\\":
                j += 1
            count = j - i
            if j == n or line[j] != '"':
                current.append("\\" * count)
                i = j
                continue
            current.append("\\" * (count // 2))
            if count % 2:
                current.append('"')
                if quotes == 1:
                    escaped_in_region = j
            else:
                quotes += 1
                if quotes == 1:
                    opened_at, escaped_in_region = j, None
            i = j + 1
        elif c == '"':
            quotes += 1
            if quotes == 1:
                opened_at, escaped_in_region = i, None
            i += 1
        else:
            current.append(c)
            i += 1
            continue
        # A run of further quotes right after a quote: every third one is literal.
        while i < n and line[i] == '"':
            quotes += 1
            if quotes == 3:
                current.append('"')
                quotes = 0
            elif quotes == 1:
                opened_at, escaped_in_region = i, None
            i += 1
        if quotes == 2:
            quotes = 0
    if quotes:
        hint = ""
        if escaped_in_region is not None:
            hint = (
                f" (the backslash before the quote at column {escaped_in_region + 1} makes it "
                "a literal quote; double that backslash to end the value with a backslash)"
            )
        raise CcmsetupSyntaxError(
            f"unbalanced double quote: the quote at column {opened_at + 1} "
            f"({show(line[opened_at:])}) is never closed; expected a closing '\"'{hint}"
        )
    if current is not None:
        args.append("".join(current))
    return args


# --------------------------------------------------------------------------------------------
# The inverse: quoting
# --------------------------------------------------------------------------------------------

_NEEDS_QUOTES: Final = frozenset(' \t"')
_PROPERTY_PREFIX_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*=")


def quote_windows_argument(arg: str) -> str:
    r'''Quote one argument so that ``CommandLineToArgvW`` gives it back unchanged.

    An argument without spaces, tabs or double quotes is written as is (backslashes not
    followed by a quote are literal). Otherwise it is wrapped in double quotes; a literal
    ``"`` becomes ``\"``, and the backslashes right before a ``"`` (literal or closing) are
    doubled. The empty argument is ``""``.
    '''
    if arg and not _NEEDS_QUOTES.intersection(arg):
        return arg
    out = ['"']
    backslashes = 0
    for c in arg:
        if c == "\\":
            backslashes += 1
            continue
        if c == '"':
            out.append("\\" * (2 * backslashes + 1) + '"')
        else:
            out.append("\\" * backslashes + c)
        backslashes = 0
    out.append("\\" * (2 * backslashes) + '"')
    return "".join(out)


def quote_token(token: str) -> str:
    """Quote only the value of ``/name:value`` and ``NAME=value`` when the name is plain.

    ``/source:"C:\\Client Files"`` and ``CCMCERTSEL="SubjectStr:Contoso Ltd"`` are the forms
    Microsoft's documentation uses; ``CommandLineToArgvW`` joins the unquoted prefix and the
    quoted value into one argument.
    """
    if token and not _NEEDS_QUOTES.intersection(token):
        return token
    prefix = ""
    if token.startswith("/") and ":" in token:
        prefix = token[: token.index(":") + 1]
    else:
        m = _PROPERTY_PREFIX_RE.match(token)
        if m:
            prefix = m.group(0)
    if prefix and not _NEEDS_QUOTES.intersection(prefix):
        return prefix + quote_windows_argument(token[len(prefix):])
    return quote_windows_argument(token)


def join_windows_command_line(args: Sequence[str]) -> str:
    """Join arguments into one command line; the inverse of ``split_windows_command_line``.

    ``split_windows_command_line(join_windows_command_line(args)) == list(args)`` for every
    list of strings.
    """
    return " ".join(quote_token(a) for a in args)

