"""Lint a ``ccmsetup.exe`` command line against the IBCM site it will be used with.

``ibcm-lab ccmsetup "COMMAND LINE" [--site-code XYZ] [--intranet-fqdn FQDN]
[--internet-fqdn FQDN] [--https-or-http]`` reports every mistake of the seed document's
section 3 (and the neighbouring ones support engineers meet), each with a one-line reason,
its source, the fix and the corrected command line, then one line with every fix applied.

Two stages:

1. **Syntax.** :func:`lab.configmgr.ccmsetup.parse_ccmsetup` rejects malformed lines (unbalanced
   quotes, unknown names, bad values). Each rejection becomes an *error* finding with the parser's
   message; the linter repairs the line (closes the quote, corrects the spelling, drops what
   cannot be saved) and parses again, until the line parses. The corrected line of a syntax
   finding is that first parseable line (every syntax repair applied), so it always parses.
2. **Semantics.** The parseable line is checked against the site: ``/UsePKICert``,
   ``SMSMP``'s scheme and host, ``SMSSITECODE``, ``CCMHOSTNAME``, ``CCMALWAYSINF``,
   ``/NoCRLCheck``, ``/mp``, parameter order and property spelling. The corrected line of a
   semantic finding applies that one fix to the parseable line.

The final *corrected* line applies every fix (info ones too: they turn the line into the
seed's recommended form), re-linting until nothing fixable is left. A fix that needs a value
the linter was not given (the site code, the internet FQDN) has no corrected line; its fix text
names the option to pass.

Corrected lines are re-quoted with :func:`join_windows_command_line`, the inverse of
:func:`lab.configmgr.ccmsetup.split_windows_command_line`; quoting may therefore look
different from the original while meaning the same arguments.

Sources: ``../shared/reference/ibcm-fidelity.md`` (cited as "fidelity §") and the seed
document (``../shared/seed/README.md``, cited as "seed §").
"""

from __future__ import annotations

import argparse
import copy
import difflib
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from lab.configmgr.ccmsetup import (
    KNOWN_PARAMETERS,
    KNOWN_PROPERTIES,
    CcmsetupCommand,
    MpAddress,
    parse_ccmsetup,
    split_windows_command_line,
)
from lab.errors import CcmsetupSyntaxError, UsageError

__all__ = [
    "Finding",
    "LintReport",
    "SiteContext",
    "cli_main",
    "join_windows_command_line",
    "lint_ccmsetup",
    "quote_windows_argument",
    "render_text",
]

Severity = Literal["error", "warning", "info"]

# --------------------------------------------------------------------------------------------
# Sources, cited by every finding
# --------------------------------------------------------------------------------------------

_SRC_SYNTAX: Final = "fidelity §1.1 [V] (ccmsetup syntax: /parameter:value, then PROPERTY=value)"
_SRC_QUOTING: Final = (
    "CommandLineToArgvW quoting rules (lab/configmgr/ccmsetup.py split_windows_command_line); "
    "fidelity §1.1 [V] (values with spaces must be quoted)"
)
_SRC_USEPKICERT: Final = (
    "seed §3; fidelity §1.2 /UsePKICert [V] (without it the client filters out HTTPS MPs), "
    "§6.3 (0x87D00269)"
)
_SRC_SMSMP: Final = "seed §3; fidelity §1.3 SMSMP [V] and §1.4c [I] (the 403.4 that follows)"
_SRC_SMSMPLIST: Final = "fidelity §1.3 SMSMPLIST [V] (same https:// rule per entry)"
_SRC_SITECODE: Final = "seed §3; fidelity §1.3 SMSSITECODE and §1.4 option A [V]"
_SRC_CCMHOSTNAME: Final = "seed §3; fidelity §1.3 CCMHOSTNAME [V]"
_SRC_MISSING_HOSTNAME: Final = "seed §3 supplement 2; fidelity §1.4 options A and B [V]"
_SRC_ALWAYSINF: Final = "fidelity §1.3 CCMALWAYSINF [V] (use with CCMHOSTNAME, /UsePKICert, " \
    "SMSSITECODE)"
_SRC_NOCRLCHECK: Final = (
    "seed §4; fidelity §1.4b and §2.3 [V] (/NoCRLCheck covers the bootstrap only)"
)
_SRC_MP: Final = "fidelity §1.2 /mp and §1.4c [V] (only a CMG URL needs https://)"
_SRC_ORDER: Final = "fidelity §1.1 [V] (\"Specify CCMSetup parameters before you specify " \
    "properties for client.msi\")"
_SRC_CASE: Final = "fidelity §1.1 [V] (properties are UPPER CASE)"

# --------------------------------------------------------------------------------------------
# Windows quoting: the inverse of split_windows_command_line
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


def _quote_token(token: str) -> str:
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
    return " ".join(_quote_token(a) for a in args)


# --------------------------------------------------------------------------------------------
# Public data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteContext:
    """What the linter knows about the site the line is for."""

    site_code: str | None = None
    """The site code (``SMSSITECODE`` should name it)."""
    intranet_fqdn: str | None = None
    """The MP's intranet FQDN (``SMSMP`` should name it)."""
    internet_fqdn: str | None = None
    """The internet-facing MP's FQDN (``CCMHOSTNAME`` should name it)."""
    https_only: bool = True
    """The site's MPs accept HTTPS only (``SMSMP`` needs ``https://``)."""

    def describe(self) -> str:
        parts = [
            f"site code {self.site_code or '(not given)'}",
            f"intranet MP {self.intranet_fqdn or '(not given)'}",
            f"internet MP {self.internet_fqdn or '(not given)'}",
            "HTTPS only" if self.https_only else "HTTPS or HTTP",
        ]
        return ", ".join(parts)


@dataclass(frozen=True)
class Finding:
    """One problem of the line, with its fix."""

    severity: Severity
    """``error`` (the client will fail or the line is malformed), ``warning`` (works, but
    against the documentation or the site), ``info`` (advice)."""
    code: str
    """Stable identifier (``missing-usepkicert``)."""
    reason: str
    """One line: what is wrong and the rule it breaks."""
    fix: str
    """What to change."""
    source: str
    """Where the rule comes from (seed section, fidelity reference section)."""
    corrected: str | None
    """The command line with this fix applied (and, for a syntax finding, every syntax
    repair), or ``None`` when the fix needs a value the linter was not given."""

    def to_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "reason": self.reason,
            "fix": self.fix,
            "source": self.source,
            "corrected": self.corrected,
        }


@dataclass(frozen=True)
class LintReport:
    """The findings for one command line."""

    line: str
    """The command line as given."""
    site: SiteContext
    findings: tuple[Finding, ...]
    corrected: str | None
    """The line with every fix applied, or ``None`` when a syntax error could not be
    repaired."""

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(f.code for f in self.findings)

    @property
    def exit_code(self) -> int:
        """0 without error findings, 1 with at least one."""
        return 1 if self.errors else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "site": {
                "site_code": self.site.site_code,
                "intranet_fqdn": self.site.intranet_fqdn,
                "internet_fqdn": self.site.internet_fqdn,
                "https_only": self.site.https_only,
            },
            "findings": [f.to_json() for f in self.findings],
            "corrected": self.corrected,
        }


# --------------------------------------------------------------------------------------------
# Helpers shared by both stages
# --------------------------------------------------------------------------------------------

_PARAM_BY_LOWER: Final = {name.lower(): name for name in KNOWN_PARAMETERS}
_SITE_CODE_RE: Final = re.compile(r"[A-Za-z0-9]{3}")
_HOST_RE: Final = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?")
_URLISH_RE: Final = re.compile(
    r"(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?(?P<host>[^/:]*)(?::(?P<port>[^/]*))?"
    r"(?P<path>/.*)?",
    re.DOTALL,
)
_CMG_PATH_RE: Final = re.compile(r"/CCM_Proxy_(?:MutualAuth|ServerAuth)/", re.IGNORECASE)
_TYPOGRAPHIC_QUOTES: Final = "\u201c\u201d\u201e\u201f\u2033"  # “ ” „ ‟ ″
_DASHES: Final = "-\u2010\u2011\u2012\u2013\u2014\u2212"  # - ‐ ‑ ‒ – — −
_SINGLE_QUOTES: Final = "'\u2018\u2019"


def _same_host(a: str, b: str) -> bool:
    return a.rstrip(".").lower() == b.rstrip(".").lower()


def _parses(line: str) -> CcmsetupCommand | None:
    try:
        return parse_ccmsetup(line)
    except CcmsetupSyntaxError:
        return None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# --------------------------------------------------------------------------------------------
# Stage 1: syntax repairs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Repair:
    line: str
    code: str
    reason: str
    fix: str
    source: str = _SRC_SYNTAX


def _pre_repairs(line: str) -> tuple[str, list[_Repair]]:
    """Line-level mistakes that change how the line splits: line breaks, typographic quotes."""
    repairs: list[_Repair] = []
    if any(c in line for c in "\r\n"):
        fixed = re.sub(r"[\r\n]+", " ", line)
        repairs.append(_Repair(
            fixed, "line-break",
            "the command line contains a line break: cmd.exe ends the command there and "
            "ccmsetup never sees the rest",
            "put the whole command on one line", _SRC_QUOTING))
        line = fixed
    if any(c in line for c in _TYPOGRAPHIC_QUOTES):
        fixed = "".join('"' if c in _TYPOGRAPHIC_QUOTES else c for c in line)
        shown = "".join(sorted({c for c in line if c in _TYPOGRAPHIC_QUOTES}))
        repairs.append(_Repair(
            fixed, "typographic-quote",
            f"the line contains typographic quotes ({shown}, typically pasted from a document): "
            "Windows quotes only with the ASCII double quote, so they end up inside the values",
            'replace them with straight double quotes (")', _SRC_QUOTING))
        line = fixed
    return line, repairs


_QUOTE_COL_RE: Final = re.compile(r"the quote at column (\d+) ")
_ESCAPED_COL_RE: Final = re.compile(r"the backslash before the quote at column (\d+) makes it")


def _starts_new_argument(word: str) -> bool:
    """``word`` (a whitespace-separated piece of raw text) looks like a ccmsetup argument."""
    if word[:1] == "/" or (word[:1] in _DASHES and len(word) > 1):
        return word[1:].partition(":")[0].lower() in _PARAM_BY_LOWER
    name, eq, _ = word.partition("=")
    return bool(eq) and name.upper() in KNOWN_PROPERTIES


def _repair_quote(line: str, message: str) -> _Repair | None:
    """Close an unbalanced double quote where it was most likely lost."""
    escaped = _ESCAPED_COL_RE.search(message)
    if escaped:
        at = int(escaped.group(1)) - 1
        fixed = line[:at] + "\\" + line[at:]
        if _splits(fixed):
            return _Repair(
                fixed, "unbalanced-quote", message,
                "double the backslash before the closing quote (\\\" is a literal quote; "
                "\\\\\" ends the value with one backslash)", _SRC_QUOTING)
    opened = _QUOTE_COL_RE.search(message)
    candidates: list[str] = []
    if opened:
        start = int(opened.group(1))  # index just after the opening quote
        for m in re.finditer(r"[ \t]+(\S+)", line[start:]):
            if _starts_new_argument(m.group(1)):
                at = start + m.start()
                run = len(line[:at]) - len(line[:at].rstrip("\\"))
                candidates.append(line[:at] + "\\" * run + '"' + line[at:])
                break
    stripped = line.rstrip(" \t")
    run = len(stripped) - len(stripped.rstrip("\\"))
    candidates.append(stripped + "\\" * run + '"')
    for fixed in candidates:
        if _splits(fixed):
            where = ("before the next argument" if fixed is not candidates[-1]
                     else "at the end of the line")
            return _Repair(fixed, "unbalanced-quote", message,
                           f"close the quote {where}", _SRC_QUOTING)
    return None


def _splits(line: str) -> bool:
    try:
        split_windows_command_line(line)
    except CcmsetupSyntaxError:
        return False
    return True


def _culprit(tokens: list[str], message: str, hint: int | None = None) -> int | None:
    """Index of the token the parser's ``message`` is about: the parser's own ``hint`` when
    it names a token that carries the message, else the end of the shortest prefix of
    ``tokens`` that fails with the same message."""
    if hint is not None and 0 <= hint < len(tokens):
        return hint
    for k in range(1, len(tokens) + 1):
        try:
            parse_ccmsetup(join_windows_command_line(tokens[:k]))
        except CcmsetupSyntaxError as e:
            if e.message == message:
                return k - 1
    return None


def _site_value(name: str, site: SiteContext) -> str | None:
    """The value the site implies for a property, when the linter knows it."""
    if name == "SMSSITECODE":
        return site.site_code
    if name == "SMSMP" and site.intranet_fqdn:
        return ("https://" if site.https_only else "") + site.intranet_fqdn
    if name == "CCMHOSTNAME":
        return site.internet_fqdn
    return None


def _clean_mp_entry(entry: str, *, keep_path: bool, https_only: bool) -> str | None:
    """A management point entry with stray quotes, bad schemes, ports and paths removed."""
    entry = entry.strip("\"'" + _SINGLE_QUOTES + " \t")
    m = _URLISH_RE.fullmatch(entry)
    if not m or not m.group("host") or not _HOST_RE.fullmatch(m.group("host")):
        return None
    scheme = (m.group("scheme") or "").lower()
    if scheme not in ("", "http", "https"):
        scheme = "https" if https_only else ""
    path = (m.group("path") or "").rstrip("/") if keep_path else ""
    return (f"{scheme}://" if scheme else "") + m.group("host") + path


def _fixed_value(name: str, value: str, site: SiteContext) -> str | None:
    """A repaired value for a property or parameter whose value the parser refused."""
    if name == "SMSSITECODE":
        stripped = value.strip("\"' \t")
        if _SITE_CODE_RE.fullmatch(stripped) or stripped.upper() == "AUTO":
            return stripped
        return site.site_code
    if name in ("CCMALWAYSINF", "CCMFIRSTCERT", "CCMCERTNAMECHECK"):
        return {"true": "1", "yes": "1", "on": "1", "false": "0", "no": "0", "off": "0"}.get(
            value.strip().lower())
    if name in ("SMSMP", "SMSMPLIST", "mp"):
        entries = [_clean_mp_entry(e, keep_path=name == "mp", https_only=site.https_only)
                   for e in value.split(";") if e.strip()]
        kept = [e for e in entries if e]
        if kept:
            return ";".join(kept if name != "SMSMP" else kept[:1])
        return _site_value(name, site)
    return None


def _repair_tokens(tokens: list[str], message: str, site: SiteContext,
                   hint: int | None = None) -> _Repair | None:
    """Repair the token the parser refused (found by :func:`_culprit`)."""
    at = _culprit(tokens, message, hint)
    if at is None:
        return None
    tok = tokens[at]
    # A value swallowed by "/name: value" belongs to the parameter before it.
    start = at
    if (at > 0 and not tok.startswith("/") and tokens[at - 1].startswith("/")
            and tokens[at - 1].endswith(":")):
        start = at - 1
    before, after = tokens[:start], tokens[at + 1:]

    def done(new: list[str], code: str, fix: str, source: str = _SRC_SYNTAX) -> _Repair:
        return _Repair(join_windows_command_line(new), code, message, fix, source)

    def swap(code: str, new_tok: str, fix: str) -> _Repair:
        return done([*before, new_tok, *after], code, fix)

    def drop(code: str, why: str = "") -> _Repair:
        gone = " ".join(tokens[start:at + 1])
        return done([*before, *after], code, f"remove {gone!r}" + (f" ({why})" if why else ""))

    def as_property(name: str, value: str) -> _Repair:
        upper = name.upper()
        value = value or (_site_value(upper, site) or "")
        if not value and upper != "CCMALLOWSILENTREBOOT":
            return drop("property-as-parameter", f"{upper} needs a value: write {upper}=...")
        new_tok = f"{upper}={value}" if value else upper
        return done([*before, *after, new_tok], "property-as-parameter",
                    f"write {new_tok} after the parameters")

    def param_token(canonical: str, value: str) -> str:
        return f"/{canonical}" + (f":{value}" if KNOWN_PARAMETERS[canonical] else "")

    if "unknown client.msi property" in message:
        name, eq, value = tok.partition("=")
        close = difflib.get_close_matches(name.upper(), sorted(KNOWN_PROPERTIES), n=1)
        if close:
            return swap("unknown-property", close[0] + eq + value,
                        f"write {close[0]} (the documented spelling)")
        merged = _merge_with_previous(tokens, at)  # CCMCERTISSUERS=CN=Root CA; O=Contoso
        if merged is not None:
            return done(merged, "unquoted-space",
                        f"quote the value that contains a space: {_quote_token(merged[at - 1])}",
                        _SRC_QUOTING)
        return drop("unknown-property", "not a documented client.msi property")
    if "is a ccmsetup parameter, not a client.msi property" in message:
        name, _, value = tok.partition("=")
        new_tok = param_token(_PARAM_BY_LOWER[name.lower()], value)
        rest = [*before, *after]
        where = next((i for i, t in enumerate(rest) if not t.startswith("/") and "=" in t),
                     len(rest))
        return done([*rest[:where], new_tok, *rest[where:]], "parameter-as-property",
                    f"write {new_tok} before the properties")
    if "it is a property of ccmsetup.msi" in message:
        try:
            inner = split_windows_command_line(tok.partition("=")[2])
        except CcmsetupSyntaxError:
            inner = []
        return done([*before, *inner, *after], "ccmsetup-msi-property",
                    "put the content of CCMSETUPCMD on the ccmsetup.exe line directly")
    if "unknown ccmsetup parameter" in message:
        prop, eq, value = tok[1:].partition("=")
        if eq and prop.upper() in KNOWN_PROPERTIES:  # "/SMSSITECODE=P01"
            return as_property(prop, value)
        name, _, value = tok[1:].partition(":")
        close = difflib.get_close_matches(name.lower(), list(_PARAM_BY_LOWER), n=1)
        if close:
            canonical = _PARAM_BY_LOWER[close[0]]
            return swap("unknown-parameter", param_token(canonical, value),
                        f"write /{canonical} (the documented spelling)")
        return drop("unknown-parameter", "not a documented ccmsetup parameter")
    if "parameters take their value after ':'" in message:
        name, _, value = tok[1:].partition("=")
        new_tok = param_token(_PARAM_BY_LOWER[name.lower()], value)
        return swap("parameter-with-equals", new_tok, f"write {new_tok}")
    if "is a client.msi property, not a ccmsetup parameter" in message:
        name, _, value = tok[1:].partition(":")
        return as_property(name, value)
    if "is given twice" in message:
        return drop("duplicate", "given twice; the first one is kept")
    if "takes no value" in message:
        canonical = _PARAM_BY_LOWER[tok[1:].partition(":")[0].lower()]
        return swap("unexpected-value", f"/{canonical}", f"write /{canonical} alone")
    if "expects a value" in message:
        if not tok.startswith("/"):
            upper = tok.partition("=")[0].upper()
            site_value = _site_value(upper, site)
            if site_value:
                return swap("missing-value", f"{upper}={site_value}",
                            f"write {upper}={site_value}")
        return drop("missing-value", "it has no value")
    if "unexpected argument" in message:
        return _repair_stray(tokens, at, done, drop)
    # Everything else is a value the parser refused: site code, 0/1, port, minutes, MP.
    head = tokens[start]
    if head.startswith("/"):
        name, _, value = head[1:].partition(":")
        canonical = _PARAM_BY_LOWER.get(name.lower(), name)
        fixed = _fixed_value(canonical, value if start == at else tok, site)
        repaired = f"/{canonical}:{fixed}" if fixed else ""
    else:
        name, _, value = tok.partition("=")
        fixed = _fixed_value(name.upper(), value, site)
        repaired = f"{name.upper()}={fixed}" if fixed else ""
    if repaired and _parses(join_windows_command_line([repaired])) is not None:
        return swap("bad-value", repaired, f"write {repaired}")
    return drop("bad-value", "its value cannot be repaired; write a valid one")


def _repair_stray(tokens: list[str], at: int, done: Callable[..., _Repair],
                  drop: Callable[..., _Repair]) -> _Repair:
    """An argument that is neither a /parameter nor a NAME=value property."""
    tok = tokens[at]
    if not tok:
        return drop("empty-argument", '"" is an empty argument')
    if tok[0] in _DASHES and tok[1:2] != "" and _starts_new_argument("/" + tok[1:]):
        return done([*tokens[:at], "/" + tok[1:], *tokens[at + 1:]], "dash-parameter",
                    f"write /{tok[1:]}: ccmsetup parameters start with '/'")
    if at == 0:
        # An unquoted program path with spaces: C:\Program Files\...\ccmsetup.exe
        for end in range(1, len(tokens)):
            merged = " ".join(tokens[: end + 1])
            cmd = _parses(join_windows_command_line([merged]))
            if cmd is not None and cmd.program is not None:
                return done([merged, *tokens[end + 1:]], "unquoted-space",
                            f"quote the program path: {quote_windows_argument(merged)}",
                            _SRC_QUOTING)
        if tok.lower().endswith(".exe"):
            return done(["ccmsetup.exe", *tokens[1:]], "wrong-program",
                        "the program is ccmsetup.exe")
        return drop("unexpected-argument", "not a /parameter or a NAME=value property")
    merged_line = _merge_with_previous(tokens, at)
    if merged_line is not None:
        return done(merged_line, "unquoted-space",
                    f"quote the value that contains a space: "
                    f"{_quote_token(merged_line[at - 1])}", _SRC_QUOTING)
    return drop("unexpected-argument", "not a /parameter or a NAME=value property")


#: Values that may contain spaces (paths, certificate selection, issuer lists): a stray word
#: right after one of them is most likely the rest of an unquoted value.
_SPACED_PARAMETERS: Final = frozenset({"source", "config"})
_SPACED_PROPERTIES: Final = frozenset({
    "CCMADMINS", "CCMCERTISSUERS", "CCMCERTSEL", "CCMCERTSTORE", "CCMINSTALLDIR",
    "SMSCACHEDIR", "SMSROOTKEYPATH", "SMSSIGNCERT",
})


def _merge_with_previous(tokens: list[str], at: int) -> list[str] | None:
    """``tokens`` with ``tokens[at]`` joined by a space to the value before it, when that value
    may contain spaces and the joined argument parses; else ``None``."""
    if at < 1:
        return None
    prev = tokens[at - 1]
    owner = prev
    if not prev.startswith("/") and "=" not in prev and at >= 2 \
            and tokens[at - 2].startswith("/") and tokens[at - 2].endswith(":"):
        owner = tokens[at - 2]  # "/source: D:\My Clients"
    if owner.startswith("/"):
        if owner[1:].partition(":")[0].lower() not in _SPACED_PARAMETERS:
            return None
    elif owner.partition("=")[0].upper() not in _SPACED_PROPERTIES:
        return None
    merged = [*tokens[: at - 1], prev + " " + tokens[at], *tokens[at + 1:]]
    if _parses(join_windows_command_line(merged[:at])) is None:
        return None
    return merged


def _syntax_stage(line: str, site: SiteContext) -> tuple[str | None, list[_Repair]]:
    """Repair ``line`` until it parses; return the parseable line (or ``None``) and repairs."""
    current, repairs = _pre_repairs(line)
    seen = {current}
    for _ in range(64):
        try:
            parse_ccmsetup(current)
        except CcmsetupSyntaxError as e:
            if "unbalanced double quote" in e.message:
                repair = _repair_quote(current, e.message)
            else:
                repair = _repair_tokens(split_windows_command_line(current), e.message, site,
                                        e.token_index)
            if repair is None or repair.line in seen:
                repairs.append(_Repair(current, "syntax-error", e.message,
                                       "correct the argument by hand"))
                return None, repairs
            if repair.code == "unquoted-space" and repairs and repairs[-1].code == repair.code:
                # One unquoted value with several spaces is one mistake.
                repair = _Repair(repair.line, repair.code, repairs.pop().reason, repair.fix,
                                 repair.source)
            repairs.append(repair)
            seen.add(repair.line)
            current = repair.line
            continue
        if repairs:  # re-quote the repaired line the way every corrected line is quoted
            current = join_windows_command_line(split_windows_command_line(current))
        return current, repairs
    return None, repairs  # pragma: no cover - 64 repairs without converging


# --------------------------------------------------------------------------------------------
# Stage 2: the parseable line against the site
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)  # identity: two "/source: D:\x" arguments are distinct
class _Arg:
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


def _args_of(line: str, cmd: CcmsetupCommand) -> list[_Arg]:
    tokens = split_windows_command_line(line)
    args: list[_Arg] = []
    i = 0
    if cmd.program is not None:
        args.append(_Arg("program", tokens[0], tokens[0], None, (tokens[0],)))
        i = 1
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if tok.startswith("/"):
            written, colon, value = tok[1:].partition(":")
            canonical = _PARAM_BY_LOWER[written.lower()]
            toks: tuple[str, ...] = (tok,)
            if KNOWN_PARAMETERS[canonical] and colon and not value:  # "/source: D:\Clients"
                value = tokens[i]
                toks = (tok, tokens[i])
                i += 1
            args.append(_Arg("param", canonical, written, value if colon else None, toks))
        else:
            written, eq, value = tok.partition("=")
            args.append(_Arg("prop", written.upper(), written, value if eq else None, (tok,)))
    return args


def _render(args: list[_Arg]) -> str:
    return join_windows_command_line([t for a in args for t in a.render()])


def _find(args: list[_Arg], kind: str, name: str) -> _Arg | None:
    return next((a for a in args if a.kind == kind and a.name == name), None)


Fix = Callable[[list["_Arg"]], None]

_PROPERTY_RANK: Final = {"SMSSITECODE": 0, "SMSMP": 1, "SMSMPLIST": 2, "CCMHOSTNAME": 3}


def _set_prop(args: list[_Arg], name: str, value: str) -> None:
    """Set property ``name``: change it in place, or insert it in the seed's order."""
    found = _find(args, "prop", name)
    if found is not None:
        found.set(value)
        return
    new = _Arg("prop", name, name, value, None)
    rank = _PROPERTY_RANK.get(name, len(_PROPERTY_RANK))
    props = [i for i, a in enumerate(args) if a.kind == "prop"]
    for i in props:
        if _PROPERTY_RANK.get(args[i].name, len(_PROPERTY_RANK)) > rank:
            args.insert(i, new)
            return
    args.insert(props[-1] + 1 if props else len(args), new)


def _setter(name: str, value: str) -> Fix:
    def apply(args: list[_Arg]) -> None:
        _set_prop(args, name, value)

    return apply


def _add_flag(args: list[_Arg], name: str) -> None:
    """Add ``/UsePKICert`` first, ``/NoCRLCheck`` after it (the seed's order)."""
    if _find(args, "param", name) is not None:
        return
    at = 1 if args and args[0].kind == "program" else 0
    if name != "UsePKICert":
        pki = _find(args, "param", "UsePKICert")
        if pki is not None:
            at = args.index(pki) + 1
    args.insert(at, _Arg("param", name, name, None, None))


@dataclass
class _Pending:
    severity: Severity
    code: str
    reason: str
    fix: str
    source: str
    apply: Fix | None = field(default=None)


def _hostname_parts(value: str) -> re.Match[str] | None:
    return _URLISH_RE.fullmatch(value)


def _set_or_remove(args: list[_Arg], arg: _Arg, value: str) -> None:
    """Give ``arg`` a new value; an argument left without a value is removed."""
    if value:
        arg.set(value)
    else:
        args.remove(arg)


def _shown(arg: _Arg) -> str:
    if arg.kind == "param":
        return f"/{arg.written}:{arg.value}"
    return f"{arg.written}={arg.value}"


def _check_quoting(args: list[_Arg], out: list[_Pending]) -> None:
    """Values that kept quote characters: single quotes, literal double quotes."""
    single = [a for a in args if a.kind != "program" and a.value is not None
              and len(a.value) >= 2 and a.value[0] in _SINGLE_QUOTES
              and a.value[-1] in _SINGLE_QUOTES]
    if single:
        def unquote(args: list[_Arg], names: tuple[str, ...] = tuple(a.name for a in single)
                    ) -> None:
            for a in list(args):
                if a.name in names and a.value is not None and len(a.value) >= 2 \
                        and a.value[0] in _SINGLE_QUOTES and a.value[-1] in _SINGLE_QUOTES:
                    _set_or_remove(args, a, a.value[1:-1])

        shown = ", ".join(_shown(a) for a in single)
        out.append(_Pending(
            "error", "single-quoted-value",
            f"{shown}: Windows does not quote with single quotes, so ccmsetup receives them "
            "as part of the value",
            "quote with double quotes, or not at all when the value has no space",
            _SRC_QUOTING, unquote))
    literal = [a for a in args if a.kind != "program" and a.value is not None
               and '"' in a.value]
    if literal:
        def strip_quotes(args: list[_Arg], names: tuple[str, ...] = tuple(
                a.name for a in literal)) -> None:
            for a in list(args):
                if a.name in names and a.value is not None and '"' in a.value:
                    _set_or_remove(args, a, a.value.replace('"', ""))

        shown = ", ".join(_shown(a) for a in literal)
        out.append(_Pending(
            "warning", "literal-quote-in-value",
            f"{shown}: after Windows unquoting the value still contains a double quote "
            '(written \\" or """), which ccmsetup takes literally',
            "remove the escaped quotes", _SRC_QUOTING, strip_quotes))


def _check_usepkicert(args: list[_Arg], cmd: CcmsetupCommand, site: SiteContext,
                      out: list[_Pending]) -> None:
    if cmd.use_pki_cert:
        return
    why: list[str] = []
    if site.https_only:
        why.append("the site's MPs accept HTTPS only")
    if cmd.ccmhostname is not None:
        why.append("CCMHOSTNAME names an internet MP, which is always HTTPS")
    if cmd.always_internet:
        why.append("CCMALWAYSINF=1 must be used with /UsePKICert")
    if any(mp.https for mp in (cmd.smsmp, *cmd.smsmplist) if mp is not None):
        why.append("SMSMP names an HTTPS MP")
    if not why:
        return
    out.append(_Pending(
        "error", "missing-usepkicert",
        "/UsePKICert is missing although " + " and ".join(why) + ": without it the client "
        "filters out every HTTPS MP and finds none (0x87D00269, required management point "
        "not found)",
        "add /UsePKICert", _SRC_USEPKICERT, lambda a: _add_flag(a, "UsePKICert")))


def _check_smsmp(args: list[_Arg], cmd: CcmsetupCommand, site: SiteContext,
                 out: list[_Pending]) -> None:
    smsmp = cmd.smsmp
    if smsmp is not None and site.https_only and not smsmp.https:
        good = f"https://{smsmp.host}"
        was = "http://" if smsmp.scheme == "http" else "no scheme"
        out.append(_Pending(
            "error", "smsmp-without-https",
            f"SMSMP={smsmp.raw} has {was} but the MP accepts HTTPS only: \"prefix the "
            "management point name with https://\"; the client first posts over HTTP and "
            "IIS answers 403.4 (SSL required)",
            f"write SMSMP={good}", _SRC_SMSMP,
            _setter("SMSMP", good)))
    if cmd.smsmplist and site.https_only:
        bad = [e for e in cmd.smsmplist if not e.https]
        if bad:
            fixed = ";".join(f"https://{e.host}" for e in cmd.smsmplist)
            out.append(_Pending(
                "error", "smsmplist-without-https",
                f"SMSMPLIST entries {', '.join(e.raw for e in bad)} lack https:// but the MPs "
                "accept HTTPS only; the https:// rule applies to every entry",
                f"write SMSMPLIST={fixed}", _SRC_SMSMPLIST,
                _setter("SMSMPLIST", fixed)))
    if smsmp is not None and site.intranet_fqdn and not _same_host(smsmp.host,
                                                                   site.intranet_fqdn):
        scheme = "https://" if site.https_only or smsmp.https else (
            "http://" if smsmp.scheme == "http" else "")
        good = scheme + site.intranet_fqdn
        extra = ""
        if site.internet_fqdn and _same_host(smsmp.host, site.internet_fqdn):
            extra = " (that is the internet FQDN, which belongs in CCMHOSTNAME)"
        out.append(_Pending(
            "warning", "smsmp-host-mismatch",
            f"SMSMP names {smsmp.host}{extra}, not the site's intranet MP "
            f"{site.intranet_fqdn}: SMSMP is the MP the new client talks to first, on the "
            "intranet",
            f"write SMSMP={good} (ignore this if {smsmp.host} is another MP of the site)",
            _SRC_SMSMP, _setter("SMSMP", good)))


def _check_site_code(args: list[_Arg], cmd: CcmsetupCommand, site: SiteContext,
                     out: list[_Pending]) -> None:
    internet = cmd.ccmhostname is not None or cmd.always_internet
    which = "CCMHOSTNAME" if cmd.ccmhostname is not None else "CCMALWAYSINF=1"
    code = site.site_code
    apply: Fix | None = _setter("SMSSITECODE", code) if code else None
    fix = f"write SMSSITECODE={code}" if code else \
        "write SMSSITECODE=<site code> (pass --site-code for the corrected line)"
    value = cmd.site_code
    if value is None:
        if internet:
            out.append(_Pending(
                "error", "missing-smssitecode",
                f"SMSSITECODE is missing (which means AUTO) while {which} is given: internet "
                "clients must be directly assigned; automatic site assignment is not "
                "supported on the internet", fix, _SRC_SITECODE, apply))
        elif code or site.internet_fqdn:
            out.append(_Pending(
                "info", "missing-smssitecode",
                "SMSSITECODE is missing, which means AUTO: assignment then needs AD DS or "
                "boundary groups on the intranet, and a client that later goes to the internet "
                "must have been directly assigned; the seed's line names the site",
                fix, _SRC_SITECODE, apply))
        return
    if value.upper() == "AUTO":
        if internet:
            out.append(_Pending(
                "error", "smssitecode-auto-with-ccmhostname",
                f"SMSSITECODE=AUTO together with {which}: \"Do not use AUTO together with "
                "CCMHOSTNAME\"; internet clients must be directly assigned",
                fix, _SRC_SITECODE, apply))
        elif code or site.internet_fqdn:
            out.append(_Pending(
                "info", "smssitecode-auto",
                "SMSSITECODE=AUTO works only on the intranet (AD DS or boundary groups); a "
                "client meant to roam to the internet should be directly assigned",
                fix, _SRC_SITECODE, apply))
        return
    if code and value.upper() != code.upper():
        out.append(_Pending(
            "error", "smssitecode-mismatch",
            f"SMSSITECODE={value} but the site is {code}: the client would try to assign "
            "itself to another site and never take this site's policy",
            fix, _SRC_SITECODE, apply))


def _check_ccmhostname(args: list[_Arg], cmd: CcmsetupCommand, site: SiteContext,
                       out: list[_Pending]) -> None:
    value = cmd.ccmhostname
    internet = site.internet_fqdn
    set_internet: Fix | None = _setter("CCMHOSTNAME", internet) \
        if internet else None
    fix_internet = f"write CCMHOSTNAME={internet}" if internet else \
        "write CCMHOSTNAME=<internet MP FQDN> (pass --internet-fqdn for the corrected line)"
    if value is None:
        if cmd.always_internet:
            out.append(_Pending(
                "error", "alwaysinf-without-ccmhostname",
                "CCMALWAYSINF=1 without CCMHOSTNAME: an always-internet client never talks to "
                "the intranet, so it can learn no internet MP; use it with CCMHOSTNAME",
                fix_internet, _SRC_ALWAYSINF, set_internet))
        elif internet:
            out.append(_Pending(
                "info", "missing-ccmhostname",
                f"CCMHOSTNAME is not given: the client learns the internet MP {internet} at "
                "its first site refresh on the intranet, but one that goes to the internet "
                "before that refresh finds no internet MP",
                fix_internet, _SRC_MISSING_HOSTNAME, set_internet))
        return
    m = _hostname_parts(value)
    if m is None:  # pragma: no cover - the pattern matches every string
        return
    scheme, host, port, path = m.group("scheme"), m.group("host"), m.group("port"), \
        m.group("path")
    cmg = bool(path and _CMG_PATH_RE.match(path))

    def rebuild(a: list[_Arg], *, keep_scheme: bool, keep_port: bool, keep_path: bool) -> None:
        found = _find(a, "prop", "CCMHOSTNAME")
        if found is None or found.value is None:
            return
        parts = _hostname_parts(found.value)
        if parts is None:  # pragma: no cover
            return
        new = ""
        if keep_scheme and parts.group("scheme"):
            new += parts.group("scheme") + "://"
        new += parts.group("host")
        if keep_port and parts.group("port") is not None:
            new += ":" + parts.group("port")
        if keep_path and parts.group("path"):
            new += parts.group("path")
        found.set(new)

    if scheme:
        out.append(_Pending(
            "error", "ccmhostname-scheme",
            f"CCMHOSTNAME={value} has the scheme {scheme}://: CCMHOSTNAME is the internet MP's "
            "FQDN (even a CMG value is written without https://), and the client builds its "
            "URLs from it",
            "remove the scheme", _SRC_CCMHOSTNAME,
            lambda a: rebuild(a, keep_scheme=False, keep_port=True, keep_path=True)))
    if path and not cmg:
        what = "a trailing slash" if path == "/" else f"the path {path}"
        out.append(_Pending(
            "error", "ccmhostname-path",
            f"CCMHOSTNAME={value} has {what}: it must be the internet MP's FQDN alone (only "
            "a CMG value carries a path, /CCM_Proxy_MutualAuth/<id>)",
            "remove everything after the host name", _SRC_CCMHOSTNAME,
            lambda a: rebuild(a, keep_scheme=True, keep_port=True, keep_path=False)))
    if port is not None:
        out.append(_Pending(
            "warning", "ccmhostname-port",
            f"CCMHOSTNAME={value} has a port: it must be the FQDN alone; the HTTPS port "
            "comes from CCMHTTPSPORT (default 443)",
            "remove the port (use CCMHTTPSPORT for a port other than 443)", _SRC_CCMHOSTNAME,
            lambda a: rebuild(a, keep_scheme=True, keep_port=False, keep_path=True)))
    if cmg:
        return
    if not host or not _HOST_RE.fullmatch(host):
        out.append(_Pending(
            "error", "ccmhostname-invalid",
            f"CCMHOSTNAME={value}: {host!r} is not a host name", fix_internet,
            _SRC_CCMHOSTNAME, set_internet))
        return
    if site.intranet_fqdn and _same_host(host, site.intranet_fqdn) and not (
            internet and _same_host(internet, site.intranet_fqdn)):
        out.append(_Pending(
            "error", "ccmhostname-mismatch",
            f"CCMHOSTNAME names the intranet FQDN {host}: on the internet that name does not "
            "resolve; CCMHOSTNAME is the internet MP's FQDN",
            fix_internet, _SRC_CCMHOSTNAME, set_internet))
    elif internet and not _same_host(host, internet):
        out.append(_Pending(
            "warning", "ccmhostname-mismatch",
            f"CCMHOSTNAME names {host}, not the site's internet MP {internet}",
            f"{fix_internet} (ignore this if {host} is another internet MP of the site)",
            _SRC_CCMHOSTNAME, set_internet))


def _check_mp(args: list[_Arg], cmd: CcmsetupCommand, site: SiteContext,
              out: list[_Pending]) -> None:
    if not cmd.mp:
        return
    plain_https = [e for e in cmd.mp if e.https and not _is_cmg(e)]
    cmg_plain = [e for e in cmd.mp if _is_cmg(e) and not e.https]

    def rewrite(a: list[_Arg]) -> None:
        found = _find(a, "param", "mp")
        if found is None or found.value is None:
            return
        entries = []
        for raw in found.value.split(";"):
            m = _URLISH_RE.fullmatch(raw)
            if not raw or m is None:
                entries.append(raw)
                continue
            path = m.group("path") or ""
            if path and _CMG_PATH_RE.match(path):
                entries.append("https://" + raw.split("://", 1)[-1])
            elif (m.group("scheme") or "").lower() == "https":
                entries.append(raw.split("://", 1)[1].rstrip("/"))
            else:
                entries.append(raw)
        found.set(";".join(entries))

    if cmg_plain:
        out.append(_Pending(
            "error", "mp-cmg-without-https",
            f"/mp entry {cmg_plain[0].raw} is a cloud management gateway URL without "
            "https://: \"For a CMG it must be a URL starting with https://\"",
            "prefix the CMG URL with https://", _SRC_MP, rewrite))
    if plain_https:
        out.append(_Pending(
            "info", "mp-https-not-cmg",
            f"/mp entry {plain_https[0].raw} has https:// but is not a cloud management "
            "gateway: /mp needs only the FQDN (matching the MP certificate); only a CMG URL "
            "starts with https://",
            "write the FQDN without https://", _SRC_MP, rewrite))


def _is_cmg(entry: MpAddress) -> bool:
    rest = entry.raw.split("://", 1)[-1]
    return bool(_CMG_PATH_RE.match("/" + rest.partition("/")[2]))


def _check_nocrlcheck(args: list[_Arg], cmd: CcmsetupCommand, site: SiteContext,
                      out: list[_Pending]) -> None:
    if cmd.no_crl_check or not (cmd.use_pki_cert or site.https_only):
        return
    out.append(_Pending(
        "info", "missing-nocrlcheck",
        "/NoCRLCheck is not given: if the CRL is not published where internet (or workgroup) "
        "clients reach it, add /NoCRLCheck for the bootstrap and clear the site's \"Clients "
        "check the certificate revocation list (CRL) for site systems\" box",
        "add /NoCRLCheck (and clear the site box), unless the CRL is reachable over HTTP "
        "from everywhere", _SRC_NOCRLCHECK, lambda a: _add_flag(a, "NoCRLCheck")))


def _check_notes(args: list[_Arg], cmd: CcmsetupCommand, site: SiteContext,
                 out: list[_Pending]) -> None:
    order_notes = [n for n in cmd.notes if n.startswith("parameter ")]
    case_notes = [n for n in cmd.notes if n.startswith("property name ")]
    if order_notes:
        def move(a: list[_Arg]) -> None:
            first = next((i for i, x in enumerate(a) if x.kind == "prop"), None)
            if first is None:
                return
            late = [x for x in a[first:] if x.kind == "param"]
            for x in late:
                a.remove(x)
            for offset, x in enumerate(late):
                a.insert(first + offset, x)

        out.append(_Pending(
            "warning", "parameter-after-property", "; ".join(order_notes),
            "move the parameters before the first property", _SRC_ORDER, move))
    if case_notes:
        def upper(a: list[_Arg]) -> None:
            for x in a:
                if x.kind == "prop" and x.written != x.name:
                    x.written = x.name
                    x.tokens = None

        out.append(_Pending(
            "warning", "property-name-case", "; ".join(case_notes),
            "write the property names in upper case", _SRC_CASE, upper))


_CHECKS: Final = (
    _check_usepkicert,
    _check_smsmp,
    _check_site_code,
    _check_ccmhostname,
    _check_mp,
    _check_nocrlcheck,
    _check_notes,
)


def _analyse(line: str, site: SiteContext) -> tuple[list[_Arg], list[_Pending]]:
    cmd = parse_ccmsetup(line)
    args = _args_of(line, cmd)
    pending: list[_Pending] = []
    _check_quoting(args, pending)
    for check in _CHECKS:
        check(args, cmd, site, pending)
    return args, pending


def _applied(args: list[_Arg], fixes: Sequence[Fix]) -> str | None:
    """The line with ``fixes`` applied to a copy of ``args``; ``None`` if it would not parse
    (never expected: every fix keeps the syntax)."""
    changed = copy.deepcopy(args)
    for fix in fixes:
        fix(changed)
    line = _render(changed)
    return line if _parses(line) is not None else None


def _semantic_stage(line: str, site: SiteContext) -> list[Finding]:
    args, pending = _analyse(line, site)
    return [
        Finding(p.severity, p.code, p.reason, p.fix, p.source,
                _applied(args, [p.apply]) if p.apply is not None else None)
        for p in pending
    ]


def _fully_corrected(line: str, site: SiteContext) -> str:
    """Apply every fix (fixes find their argument by name, so they compose), re-lint, repeat
    until nothing fixable is left."""
    seen = {line}
    for _ in range(8):
        args, pending = _analyse(line, site)
        fixes = [p.apply for p in pending if p.apply is not None]
        new = _applied(args, fixes) if fixes else None
        if new is None or new in seen:
            break
        seen.add(new)
        line = new
    return line


# --------------------------------------------------------------------------------------------
# The linter
# --------------------------------------------------------------------------------------------


def _site_context(site_code: str | None, intranet_fqdn: str | None, internet_fqdn: str | None,
                  https_only: bool) -> SiteContext:
    if site_code is not None and not _SITE_CODE_RE.fullmatch(site_code):
        raise UsageError(f"--site-code expects a 3-character site code (letters and digits), "
                         f"got {site_code!r}")
    for flag, value in (("--intranet-fqdn", intranet_fqdn), ("--internet-fqdn", internet_fqdn)):
        if value is not None and not _HOST_RE.fullmatch(value):
            hint = " (without https:// or a path)" if "/" in value or ":" in value else ""
            raise UsageError(f"{flag} expects a host name{hint}, got {value!r}")
    return SiteContext(site_code, intranet_fqdn, internet_fqdn, https_only)


def lint_ccmsetup(line: str, *, site_code: str | None = None,
                  intranet_fqdn: str | None = None, internet_fqdn: str | None = None,
                  https_only: bool = True) -> LintReport:
    """Lint ``line`` against the site; see the module docstring.

    Raises :class:`~lab.errors.UsageError` only when the line cannot be used at all (empty,
    or nothing in it is a ccmsetup argument) or a site option is malformed.
    """
    site = _site_context(site_code, intranet_fqdn, internet_fqdn, https_only)
    if not line.strip():
        raise UsageError("the ccmsetup command line is empty: pass the whole line in quotes, "
                         "for example 'ccmsetup.exe /UsePKICert SMSSITECODE=P01'")
    base, repairs = _syntax_stage(line, site)
    if base is not None and not split_windows_command_line(base):
        raise UsageError(f"{line!r} is not a ccmsetup command line: none of its arguments is "
                         "a ccmsetup parameter or a client.msi property")
    findings = [Finding("error", r.code, r.reason, r.fix, r.source, base) for r in repairs]
    if base is None:
        return LintReport(line, site, tuple(findings), None)
    findings.extend(_semantic_stage(base, site))
    corrected = _fully_corrected(base, site) if findings else line
    return LintReport(line, site, tuple(findings), corrected)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def render_text(report: LintReport) -> str:
    lines = [f"ccmsetup line  {report.line}", f"site           {report.site.describe()}", ""]
    for f in report.findings:
        lines.append(f"{f.severity.upper():<8} {f.code}: {f.reason}")
        lines.append(f"    fix        {f.fix}")
        lines.append(f"    source     {f.source}")
        lines.append(f"    corrected  {f.corrected if f.corrected is not None else '(none)'}")
        lines.append("")
    counts = {s: sum(f.severity == s for f in report.findings)
              for s in ("error", "warning", "info")}
    if report.findings:
        lines.append(f"{_plural(counts['error'], 'error')}, "
                     f"{_plural(counts['warning'], 'warning')}, {counts['info']} info")
    else:
        lines.append("No findings: the line fits the site.")
    lines.append("Corrected:")
    lines.append(report.corrected if report.corrected is not None
                 else "(none: a syntax error could not be repaired automatically)")
    return "\n".join(lines) + "\n"


def cli_main(args: argparse.Namespace) -> int:
    """``ibcm-lab ccmsetup``: 0 no error finding, 1 at least one, 2 unusable line."""
    report = lint_ccmsetup(
        args.line,
        site_code=args.site_code,
        intranet_fqdn=args.intranet_fqdn,
        internet_fqdn=args.internet_fqdn,
        https_only=not args.https_or_http,
    )
    if args.format == "json":
        sys.stdout.write(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_text(report))
    return report.exit_code
