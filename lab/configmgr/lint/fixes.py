"""The corrected line: a parseable line as editable arguments, the fixes that edit them.

A fix (:data:`Fix`) finds its argument by name, so fixes compose; :func:`applied` runs some on
a copy and renders the result with :func:`lab.configmgr.winargs.join_windows_command_line`
(quoting may therefore look different from the original while meaning the same arguments).
A rule's finding comes with its fix as a :class:`Pending`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from lab.configmgr.ccmsetup import KNOWN_PARAMETERS, CcmsetupCommand
from lab.configmgr.lint.report import Severity, SiteContext
from lab.configmgr.lint.shared import PARAM_BY_LOWER, parses
from lab.configmgr.winargs import join_windows_command_line, split_windows_command_line


@dataclass(eq=False)  # identity: two "/source: D:\x" arguments are distinct
class Arg:
    """One argument of a parseable line; ``tokens`` is ``None`` once it was changed."""

    kind: Literal["program", "param", "prop"]
    name: str
    """Canonical parameter name, upper-case property name, or the program as written."""
    written: str
    """The name as written (``MP``, ``smsmp``)."""
    value: str | None
    tokens: tuple[str, ...] | None

    def set(self, value: str | None) -> None:
        self.value = value
        self.tokens = None

    def render(self) -> list[str]:
        if self.tokens is not None:
            return list(self.tokens)
        if self.kind == "program":
            return [self.written]
        if self.kind == "param":
            return [f"/{self.written}" + (f":{self.value}" if self.value is not None else "")]
        return [self.written + (f"={self.value}" if self.value is not None else "")]


def args_of(line: str, cmd: CcmsetupCommand) -> list[Arg]:
    tokens = split_windows_command_line(line)
    args: list[Arg] = []
    i = 0
    if cmd.program is not None:
        args.append(Arg("program", tokens[0], tokens[0], None, (tokens[0],)))
        i = 1
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if tok.startswith("/"):
            written, colon, value = tok[1:].partition(":")
            canonical = PARAM_BY_LOWER[written.lower()]
            toks: tuple[str, ...] = (tok,)
            if KNOWN_PARAMETERS[canonical] and colon and not value:  # "/source: D:\Clients"
                value = tokens[i]
                toks = (tok, tokens[i])
                i += 1
            args.append(Arg("param", canonical, written, value if colon else None, toks))
        else:
            written, eq, value = tok.partition("=")
            args.append(Arg("prop", written.upper(), written, value if eq else None, (tok,)))
    return args


def render_args(args: list[Arg]) -> str:
    return join_windows_command_line([t for a in args for t in a.render()])


def find_arg(args: list[Arg], kind: str, name: str) -> Arg | None:
    return next((a for a in args if a.kind == kind and a.name == name), None)


Fix = Callable[[list[Arg]], None]

_PROPERTY_RANK: Final = {"SMSSITECODE": 0, "SMSMP": 1, "SMSMPLIST": 2, "CCMHOSTNAME": 3}


def set_prop(args: list[Arg], name: str, value: str) -> None:
    """Set property ``name``: change it in place, or insert it in the seed's order."""
    found = find_arg(args, "prop", name)
    if found is not None:
        found.set(value)
        return
    new = Arg("prop", name, name, value, None)
    rank = _PROPERTY_RANK.get(name, len(_PROPERTY_RANK))
    props = [i for i, a in enumerate(args) if a.kind == "prop"]
    for i in props:
        if _PROPERTY_RANK.get(args[i].name, len(_PROPERTY_RANK)) > rank:
            args.insert(i, new)
            return
    args.insert(props[-1] + 1 if props else len(args), new)


def setter(name: str, value: str) -> Fix:
    def apply(args: list[Arg]) -> None:
        set_prop(args, name, value)

    return apply


def add_flag(args: list[Arg], name: str) -> None:
    """Add ``/UsePKICert`` first, ``/NoCRLCheck`` after it (the seed's order)."""
    if find_arg(args, "param", name) is not None:
        return
    at = 1 if args and args[0].kind == "program" else 0
    if name != "UsePKICert":
        pki = find_arg(args, "param", "UsePKICert")
        if pki is not None:
            at = args.index(pki) + 1
    args.insert(at, Arg("param", name, name, None, None))


def set_or_remove(args: list[Arg], arg: Arg, value: str) -> None:
    """Give ``arg`` a new value; an argument left without a value is removed."""
    if value:
        arg.set(value)
    else:
        args.remove(arg)


def applied(args: list[Arg], fixes: Sequence[Fix]) -> str | None:
    """The line with ``fixes`` applied to a copy of ``args``; ``None`` if it would not parse
    (never expected: every fix keeps the syntax)."""
    changed = copy.deepcopy(args)
    for fix in fixes:
        fix(changed)
    line = render_args(changed)
    return line if parses(line) is not None else None


@dataclass
class Pending:
    """A finding of a rule and the fix that removes it, before its corrected line is worked
    out."""

    severity: Severity
    code: str
    reason: str
    fix: str
    source: str
    apply: Fix | None = field(default=None)


Rule = Callable[[list[Arg], CcmsetupCommand, SiteContext], Pending | None]
"""A stage 2 rule: the line's arguments, the parsed command, the site -> a finding or None."""
