"""Stage 1: repair a line the parser refuses, one mistake at a time, until it parses.

Each refusal of :func:`lab.configmgr.ccmsetup.parse_ccmsetup` becomes a :class:`Repair`: the
parser's message, the fix, and the line with that fix applied (the quote closed, the spelling
corrected, or what cannot be saved dropped). :func:`syntax_stage` repeats until the line parses.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from lab.configmgr.ccmsetup import (
    KNOWN_PARAMETERS,
    KNOWN_PROPERTIES,
    control_characters,
    parse_ccmsetup,
)
from lab.configmgr.lint.report import SiteContext
from lab.configmgr.lint.shared import PARAM_BY_LOWER, SINGLE_QUOTES, URLISH_RE, parses
from lab.configmgr.lint.sources import SRC_QUOTING, SRC_SYNTAX
from lab.configmgr.winargs import (
    join_windows_command_line,
    quote_token,
    quote_windows_argument,
    show,
    split_windows_command_line,
)
from lab.errors import CcmsetupSyntaxError
from lab.names import is_ccm_host, is_site_code

_TYPOGRAPHIC_QUOTES: Final = "\u201c\u201d\u201e\u201f\u2033"  # “ ” „ ‟ ″
_DASHES: Final = "-\u2010\u2011\u2012\u2013\u2014\u2212"  # - ‐ ‑ ‒ – — −


@dataclass(frozen=True)
class Repair:
    """One syntax mistake: the line with it repaired, and why."""

    line: str
    code: str
    reason: str
    fix: str
    source: str = SRC_SYNTAX


def _pre_repairs(line: str) -> tuple[str, list[Repair]]:
    """Line-level mistakes that change how the line splits: line breaks, typographic quotes."""
    repairs: list[Repair] = []
    if any(c in line for c in "\r\n"):
        fixed = re.sub(r"[\r\n]+", " ", line)
        repairs.append(Repair(
            fixed, "line-break",
            "the command line contains a line break: cmd.exe ends the command there and "
            "ccmsetup never sees the rest",
            "put the whole command on one line", SRC_QUOTING))
        line = fixed
    bad = control_characters(line)
    if bad:  # the parser refuses them (so does the scenario loader): one rule
        fixed = "".join(c for c in line if c not in bad)
        repairs.append(Repair(
            fixed, "control-character",
            f"the line contains the control character{'s' if len(bad) > 1 else ''} "
            f"{show(bad)}: ccmsetup would take {'them' if len(bad) > 1 else 'it'} into a value "
            "(no ccmsetup value has one; typically pasted from a terminal or a document)",
            "remove the control characters", SRC_QUOTING))
        line = fixed
    if any(c in line for c in _TYPOGRAPHIC_QUOTES):
        fixed = "".join('"' if c in _TYPOGRAPHIC_QUOTES else c for c in line)
        shown = "".join(sorted({c for c in line if c in _TYPOGRAPHIC_QUOTES}))
        repairs.append(Repair(
            fixed, "typographic-quote",
            f"the line contains typographic quotes ({shown}, typically pasted from a document): "
            "Windows quotes only with the ASCII double quote, so they end up inside the values",
            'replace them with straight double quotes (")', SRC_QUOTING))
        line = fixed
    return line, repairs


_QUOTE_COL_RE: Final = re.compile(r"the quote at column (\d+) ")
_ESCAPED_COL_RE: Final = re.compile(r"the backslash before the quote at column (\d+) makes it")


def _starts_new_argument(word: str) -> bool:
    """``word`` (a whitespace-separated piece of raw text) looks like a ccmsetup argument."""
    if word[:1] == "/" or (word[:1] in _DASHES and len(word) > 1):
        return word[1:].partition(":")[0].lower() in PARAM_BY_LOWER
    name, eq, _ = word.partition("=")
    return bool(eq) and name.upper() in KNOWN_PROPERTIES


def _repair_quote(line: str, message: str) -> Repair | None:
    """Close an unbalanced double quote where it was most likely lost."""
    escaped = _ESCAPED_COL_RE.search(message)
    if escaped:
        at = int(escaped.group(1)) - 1
        fixed = line[:at] + "\\" + line[at:]
        if _splits(fixed):
            return Repair(
                fixed, "unbalanced-quote", message,
                "double the backslash before the closing quote (\\\" is a literal quote; "
                "\\\\\" ends the value with one backslash)", SRC_QUOTING)
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
            return Repair(fixed, "unbalanced-quote", message,
                           f"close the quote {where}", SRC_QUOTING)
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
    entry = entry.strip("\"'" + SINGLE_QUOTES + " \t")
    m = URLISH_RE.fullmatch(entry)
    if not m or not m.group("host") or not is_ccm_host(m.group("host")):
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
        if is_site_code(stripped) or stripped.upper() == "AUTO":
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
                   hint: int | None = None) -> Repair | None:
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

    def done(new: list[str], code: str, fix: str, source: str = SRC_SYNTAX) -> Repair:
        return Repair(join_windows_command_line(new), code, message, fix, source)

    def swap(code: str, new_tok: str, fix: str) -> Repair:
        return done([*before, new_tok, *after], code, fix)

    def drop(code: str, why: str = "") -> Repair:
        gone = " ".join(tokens[start:at + 1])
        return done([*before, *after], code, f"remove {gone!r}" + (f" ({why})" if why else ""))

    def as_property(name: str, value: str) -> Repair:
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
                        f"quote the value that contains a space: {quote_token(merged[at - 1])}",
                        SRC_QUOTING)
        return drop("unknown-property", "not a documented client.msi property")
    if "is a ccmsetup parameter, not a client.msi property" in message:
        name, _, value = tok.partition("=")
        new_tok = param_token(PARAM_BY_LOWER[name.lower()], value)
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
        close = difflib.get_close_matches(name.lower(), list(PARAM_BY_LOWER), n=1)
        if close:
            canonical = PARAM_BY_LOWER[close[0]]
            return swap("unknown-parameter", param_token(canonical, value),
                        f"write /{canonical} (the documented spelling)")
        return drop("unknown-parameter", "not a documented ccmsetup parameter")
    if "parameters take their value after ':'" in message:
        name, _, value = tok[1:].partition("=")
        new_tok = param_token(PARAM_BY_LOWER[name.lower()], value)
        return swap("parameter-with-equals", new_tok, f"write {new_tok}")
    if "is a client.msi property, not a ccmsetup parameter" in message:
        name, _, value = tok[1:].partition(":")
        return as_property(name, value)
    if "is given twice" in message:
        return drop("duplicate", "given twice; the first one is kept")
    if "takes no value" in message:
        canonical = PARAM_BY_LOWER[tok[1:].partition(":")[0].lower()]
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
        canonical = PARAM_BY_LOWER.get(name.lower(), name)
        fixed = _fixed_value(canonical, value if start == at else tok, site)
        repaired = f"/{canonical}:{fixed}" if fixed else ""
    else:
        name, _, value = tok.partition("=")
        fixed = _fixed_value(name.upper(), value, site)
        repaired = f"{name.upper()}={fixed}" if fixed else ""
    if repaired and parses(join_windows_command_line([repaired])) is not None:
        return swap("bad-value", repaired, f"write {repaired}")
    return drop("bad-value", "its value cannot be repaired; write a valid one")


def _repair_stray(tokens: list[str], at: int, done: Callable[..., Repair],
                  drop: Callable[..., Repair]) -> Repair:
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
            cmd = parses(join_windows_command_line([merged]))
            if cmd is not None and cmd.program is not None:
                return done([merged, *tokens[end + 1:]], "unquoted-space",
                            f"quote the program path: {quote_windows_argument(merged)}",
                            SRC_QUOTING)
        if tok.lower().endswith(".exe"):
            return done(["ccmsetup.exe", *tokens[1:]], "wrong-program",
                        "the program is ccmsetup.exe")
        return drop("unexpected-argument", "not a /parameter or a NAME=value property")
    merged_line = _merge_with_previous(tokens, at)
    if merged_line is not None:
        return done(merged_line, "unquoted-space",
                    f"quote the value that contains a space: "
                    f"{quote_token(merged_line[at - 1])}", SRC_QUOTING)
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
    if parses(join_windows_command_line(merged[:at])) is None:
        return None
    return merged


def syntax_stage(line: str, site: SiteContext) -> tuple[str | None, list[Repair]]:
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
                repairs.append(Repair(current, "syntax-error", e.message,
                                       "correct the argument by hand"))
                return None, repairs
            if repair.code == "unquoted-space" and repairs and repairs[-1].code == repair.code:
                # One unquoted value with several spaces is one mistake.
                repair = Repair(repair.line, repair.code, repairs.pop().reason, repair.fix,
                                 repair.source)
            repairs.append(repair)
            seen.add(repair.line)
            current = repair.line
            continue
        if repairs:  # re-quote the repaired line the way every corrected line is quoted
            current = join_windows_command_line(split_windows_command_line(current))
        return current, repairs
    return None, repairs  # pragma: no cover - 64 repairs without converging
