"""Parse a ``ccmsetup.exe`` command line the way Windows and ccmsetup would read it.

Two layers:

* :func:`lab.configmgr.winargs.split_windows_command_line` turns the line into arguments with
  the ``CommandLineToArgvW`` rules (backslashes, double quotes, the undocumented ``""`` rule).
* :func:`parse_ccmsetup` checks each argument against the documented ccmsetup parameters and
  client.msi properties and returns a frozen :class:`CcmsetupCommand`.

Source of every parameter and property: Microsoft Learn "About client installation parameters
and properties in Configuration Manager" (GitHub MicrosoftDocs/memdocs,
``memdocs/configmgr/core/clients/deploy/about-client-installation-properties.md``, version with
``ms.date: 04/05/2022``). ``SMSDIRECTORYLOOKUP`` is listed in the older version of that page
(``sccm/core/clients/deploy/about-client-installation-properties.md``) and is still in the
current source, hidden in an HTML comment. ``CCMHTTPSSTATE`` is undocumented today; the console
puts it in generated CMG command lines (see ``docs/reference.md`` §1.5).

The parser rejects only *syntax*: unknown names, missing or unexpected values, malformed
numbers, site codes and management point addresses, parameters after properties. It accepts
*semantic* mistakes (``CCMHOSTNAME=https://...``, ``SMSSITECODE=AUTO`` with ``CCMHOSTNAME``,
``SMSMP`` without ``https://`` for an HTTPS-only MP) so the simulated client can fail on them
the way Windows would. Every rejection is a :class:`~lab.errors.CcmsetupSyntaxError` with a
one-line message that quotes the offending token and says what was expected; the caller adds
the file, line and key.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from lab.configmgr.winargs import show, split_windows_command_line
from lab.errors import CcmsetupSyntaxError
from lab.names import is_ccm_host, is_site_code

__all__ = [
    "KNOWN_PARAMETERS",
    "KNOWN_PROPERTIES",
    "URLISH_RE",
    "CcmsetupCommand",
    "MpAddress",
    "ccmhostname_problem",
    "control_characters",
    "parse_ccmsetup",
]

# --------------------------------------------------------------------------------------------
# What ccmsetup.exe knows
# --------------------------------------------------------------------------------------------

#: Documented ccmsetup.exe parameters, canonical spelling (the doc's headings, without ``/``)
#: -> ``True`` when the parameter takes a value after ``:``, ``False`` for a plain flag.
KNOWN_PARAMETERS: Final[Mapping[str, bool]] = MappingProxyType({
    "?": False,
    "AllowMetered": False,  # "This parameter takes no values."
    "AlwaysExcludeUpgrade": True,  # /AlwaysExcludeUpgrade:TRUE or :FALSE
    "BITSPriority": True,  # FOREGROUND, HIGH, NORMAL, LOW
    "config": True,
    "downloadtimeout": True,  # minutes
    "ExcludeFeatures": True,  # ClientUI is the only supported value
    "forceinstall": False,
    "forcereboot": False,
    "logon": False,
    "mp": True,  # one or more MPs separated by ';', or a CMG URL starting with https://
    "NoCRLCheck": False,
    "noservice": False,
    "regtoken": True,
    "retry": True,  # minutes
    "service": False,
    "skipprereq": True,  # file names separated by ';'
    "source": True,  # may be given more than once
    "uninstall": False,
    "UsePKICert": False,
    "IgnoreSkipUpgrade": False,
    "UpgradeToLatest": False,
})

#: Parameters the doc allows more than once.
_REPEATABLE_PARAMETERS: Final = frozenset({"source"})

#: client.msi properties ccmsetup.exe accepts (upper case, as documented).
KNOWN_PROPERTIES: Final[frozenset[str]] = frozenset({
    "AADCLIENTAPPID",
    "AADRESOURCEURI",
    "AADTENANTID",
    "CCMADMINS",
    "CCMALLOWSILENTREBOOT",
    "CCMALWAYSINF",
    "CCMCERTISSUERS",
    "CCMCERTNAMECHECK",
    "CCMCERTSEL",
    "CCMCERTSTORE",
    "CCMDEBUGLOGGING",
    "CCMENABLELOGGING",
    "CCMEVALHOUR",
    "CCMEVALINTERVAL",
    "CCMFIRSTCERT",
    "CCMHOSTNAME",
    "CCMHTTPPORT",
    "CCMHTTPSPORT",
    "CCMHTTPSSTATE",  # undocumented today, see the module docstring
    "CCMINSTALLDIR",
    "CCMLOGLEVEL",
    "CCMLOGMAXHISTORY",
    "CCMLOGMAXSIZE",
    "DISABLECACHEOPT",
    "DISABLESITEOPT",
    "DNSSUFFIX",
    "FSP",
    "IGNOREAPPVVERSIONCHECK",
    "MANAGEDINSTALLER",
    "NOTIFYONLY",
    "PROVISIONTS",
    "RESETKEYINFORMATION",
    "SITEREASSIGN",
    "SMSCACHEDIR",
    "SMSCACHEFLAGS",
    "SMSCACHESIZE",
    "SMSCONFIGSOURCE",
    "SMSDIRECTORYLOOKUP",  # older doc version; hidden in a comment in the current one
    "SMSMP",
    "SMSMPLIST",
    "SMSPUBLICROOTKEY",
    "SMSROOTKEYPATH",
    "SMSSIGNCERT",
    "SMSSITECODE",
})

#: Properties the doc shows without a value (``CCMSetup.exe CCMALLOWSILENTREBOOT``).
_VALUELESS_PROPERTIES: Final = frozenset({"CCMALLOWSILENTREBOOT"})

#: Names that belong to something else than ccmsetup.exe, with what to write instead.
_FOREIGN_PROPERTIES: Final[Mapping[str, str]] = MappingProxyType({
    "CCMSETUPCMD": "it is a property of ccmsetup.msi, not of ccmsetup.exe; "
    "put its content on the ccmsetup.exe line directly",
})

_PARAMETER_BY_LOWER: Final[Mapping[str, str]] = MappingProxyType(
    {name.lower(): name for name in KNOWN_PARAMETERS}
)

_PROGRAM_RE: Final = re.compile(
    r"(?:ccmsetup(?:\.exe)?|(?:.*\\|.+/)ccmsetup\.exe)", re.IGNORECASE
)
_PROPERTY_RE: Final = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)=(.*)", re.DOTALL)
_DIGITS_RE: Final = re.compile(r"[0-9]{1,9}")
URLISH_RE: Final = re.compile(
    r"(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?(?P<host>[^/:]*)(?::(?P<port>[^/]*))?"
    r"(?P<path>/.*)?",
    re.DOTALL,
)
"""``[scheme://]host[:port][/path]``: how a host value such as ``CCMHOSTNAME`` reads (it
matches every string)."""
_SCHEME_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)", re.DOTALL)


def _did_you_mean(candidates: list[str]) -> str:
    if not candidates:
        return ""
    return "; did you mean " + " or ".join(candidates) + "?"


# --------------------------------------------------------------------------------------------
# Management point addresses
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MpAddress:
    """One management point as written in ``/mp:``, ``SMSMP`` or ``SMSMPLIST``."""

    scheme: str | None
    """``"https"`` or ``"http"`` (lower case) when the value had a scheme, else ``None``."""
    host: str
    """The host name as written: no scheme, no trailing slash, no path."""
    raw: str
    """The value (or list entry) exactly as written."""

    @property
    def https(self) -> bool:
        """``True`` when the value was written with ``https://``."""
        return self.scheme == "https"


def _parse_mp(raw: str, where: str, *, allow_path: bool) -> MpAddress:
    """Parse one MP entry; ``where`` names its origin in messages (``'SMSMP'``, ``'/mp'``)."""
    rest = raw
    scheme: str | None = None
    m = _SCHEME_RE.fullmatch(raw)
    if m:
        scheme = m.group(1).lower()
        if scheme not in ("http", "https"):
            raise CcmsetupSyntaxError(
                f"{where} entry {show(raw)} has the scheme {show(m.group(1) + '://')}; "
                "expected 'https://', 'http://' or a bare host name"
            )
        rest = m.group(2)
    rest = rest.removesuffix("/")
    host, slash, _path = rest.partition("/")
    if slash and not allow_path:
        raise CcmsetupSyntaxError(
            f"{where} entry {show(raw)} has a path; expected a management point host name "
            "(an optional 'https://' or 'http://' and an FQDN, nothing after it)"
        )
    if not host:
        raise CcmsetupSyntaxError(
            f"{where} entry {show(raw)} has no host name; expected a management point FQDN"
        )
    if not is_ccm_host(host):
        raise CcmsetupSyntaxError(
            f"{where} entry {show(raw)} has the host {show(host)}; expected a host name "
            "(letters, digits, '-', '.'; no port: ports come from CCMHTTPPORT/CCMHTTPSPORT)"
        )
    return MpAddress(scheme=scheme, host=host, raw=raw)


def _parse_mp_list(value: str, where: str, *, is_switch: bool) -> tuple[MpAddress, ...]:
    """Split a ``;`` list. ``/mp`` tolerates empty entries and paths (CMG URLs)."""
    entries: list[MpAddress] = []
    for entry in value.split(";"):
        if not entry:
            if is_switch:
                continue
            raise CcmsetupSyntaxError(
                f"{where} value {show(value)} has an empty entry; expected management points "
                "separated by single ';'"
            )
        entries.append(_parse_mp(entry, where, allow_path=is_switch))
    if not entries:
        raise CcmsetupSyntaxError(
            f"{where} value {show(value)} names no management point; expected at least one "
            "management point FQDN"
        )
    return tuple(entries)


# --------------------------------------------------------------------------------------------
# The parsed command
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CcmsetupCommand:
    """A parsed ccmsetup.exe command line. Build it with :func:`parse_ccmsetup`."""

    raw: str
    """The command line exactly as written."""
    program: str | None
    """The program token as written (``ccmsetup.exe``, a path to it) or ``None``."""
    switches: Mapping[str, str | None] = field(hash=False)
    """Canonical parameter name (``"UsePKICert"``, ``"mp"``) -> value, ``None`` for a flag.
    For ``/source``, which may repeat, the first value; all of them are in :attr:`source`."""
    properties: Mapping[str, str] = field(hash=False)
    """Upper-case client.msi property name -> value (``""`` for ``CCMALLOWSILENTREBOOT``)."""

    use_pki_cert: bool = field(init=False)
    """``/UsePKICert`` given."""
    no_crl_check: bool = field(init=False)
    """``/NoCRLCheck`` given (affects ccmsetup bootstrap only, see reference §1.4b)."""
    mp: tuple[MpAddress, ...] = field(init=False)
    """``/mp:`` entries (split on ``;``, empty entries dropped)."""
    notes: tuple[str, ...] = field(default=(), kw_only=True)
    """Things ccmsetup accepts but the documentation advises against (a parameter after a
    property, a property name not in upper case). The ccmsetup linter reports them."""
    source: tuple[str, ...] = field(default=(), kw_only=True)
    """Every ``/source:`` value, in order (``/source`` may repeat). When left empty it is
    derived from ``switches["source"]``."""
    site_code: str | None = field(init=False)
    """``SMSSITECODE`` as written (a 3-character code or ``AUTO``)."""
    smsmp: MpAddress | None = field(init=False)
    """``SMSMP``."""
    smsmplist: tuple[MpAddress, ...] = field(init=False)
    """``SMSMPLIST`` entries."""
    ccmhostname: str | None = field(init=False)
    """``CCMHOSTNAME`` verbatim (a scheme here is a mistake the client must trip over)."""
    always_internet: bool = field(init=False)
    """``CCMALWAYSINF=1``."""
    cert_selection: str | None = field(init=False)
    """``CCMCERTSEL``."""
    first_cert: bool = field(init=False)
    """``CCMFIRSTCERT=1``."""
    fsp: str | None = field(init=False)
    """``FSP``."""

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        put("switches", MappingProxyType(dict(self.switches)))
        put("properties", MappingProxyType(dict(self.properties)))
        sw, props = self.switches, self.properties
        source = tuple(self.source)
        if not source and sw.get("source") is not None:
            source = (str(sw["source"]),)
        mp_value = sw.get("mp")
        smsmp = props.get("SMSMP")
        smsmplist = props.get("SMSMPLIST")
        put("use_pki_cert", "UsePKICert" in sw)
        put("no_crl_check", "NoCRLCheck" in sw)
        put("mp", _parse_mp_list(mp_value, "/mp", is_switch=True) if mp_value else ())
        put("source", source)
        put("site_code", props.get("SMSSITECODE"))
        put("smsmp", _parse_mp(smsmp, "SMSMP", allow_path=False) if smsmp else None)
        put("smsmplist",
            _parse_mp_list(smsmplist, "SMSMPLIST", is_switch=False) if smsmplist else ())
        put("ccmhostname", props.get("CCMHOSTNAME"))
        put("always_internet", props.get("CCMALWAYSINF") == "1")
        put("cert_selection", props.get("CCMCERTSEL"))
        put("first_cert", props.get("CCMFIRSTCERT") == "1")
        put("fsp", props.get("FSP"))


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def _check_positive_int(token: str, value: str) -> None:
    if not _DIGITS_RE.fullmatch(value) or int(value) < 1:
        raise CcmsetupSyntaxError(
            f"{show(token)}: expected a positive whole number of minutes, got {show(value)}"
        )


def _check_switch_value(name: str, token: str, value: str) -> None:
    if name in ("retry", "downloadtimeout"):
        _check_positive_int(token, value)
    elif name == "mp":
        _parse_mp_list(value, "/mp", is_switch=True)


def _check_property_value(name: str, token: str, value: str) -> None:
    if name == "SMSSITECODE":
        if value.upper() != "AUTO" and not is_site_code(value):
            raise CcmsetupSyntaxError(
                f"{show(token)}: expected a 3-character site code (letters and digits) "
                f"or AUTO, got {show(value)}"
            )
    elif name in ("CCMALWAYSINF", "CCMFIRSTCERT", "CCMCERTNAMECHECK"):
        if value not in ("0", "1"):
            raise CcmsetupSyntaxError(f"{show(token)}: expected 0 or 1, got {show(value)}")
    elif name in ("CCMHTTPPORT", "CCMHTTPSPORT"):
        if not _DIGITS_RE.fullmatch(value) or not 1 <= int(value) <= 65535:
            raise CcmsetupSyntaxError(
                f"{show(token)}: expected a TCP port number from 1 to 65535, got {show(value)}"
            )
    elif name == "SMSMP":
        _parse_mp(value, "SMSMP", allow_path=False)
    elif name == "SMSMPLIST":
        _parse_mp_list(value, "SMSMPLIST", is_switch=False)


def _is_property_token(token: str) -> bool:
    return bool(_PROPERTY_RE.fullmatch(token)) or token.upper() in _VALUELESS_PROPERTIES


def _unknown_parameter(token: str, name: str) -> CcmsetupSyntaxError:
    before_eq, eq, _ = name.partition("=")
    if eq and before_eq.lower() in _PARAMETER_BY_LOWER:
        canonical = _PARAMETER_BY_LOWER[before_eq.lower()]
        return CcmsetupSyntaxError(
            f"{show(token)}: parameters take their value after ':', not '='; "
            f"expected '/{canonical}:...'"
        )
    if name.upper() in KNOWN_PROPERTIES:
        return CcmsetupSyntaxError(
            f"{show(token)}: {name.upper()} is a client.msi property, not a ccmsetup "
            f"parameter; expected '{name.upper()}=value' after the parameters"
        )
    close = difflib.get_close_matches(name.lower(), list(_PARAMETER_BY_LOWER), n=3)
    return CcmsetupSyntaxError(
        f"unknown ccmsetup parameter {show(token)}: expected a documented parameter"
        + _did_you_mean([f"'/{_PARAMETER_BY_LOWER[c]}'" for c in close])
    )


def _unknown_property(token: str, name: str) -> CcmsetupSyntaxError:
    upper = name.upper()
    if upper in _FOREIGN_PROPERTIES:
        return CcmsetupSyntaxError(f"{show(token)}: {_FOREIGN_PROPERTIES[upper]}")
    if name.lower() in _PARAMETER_BY_LOWER:
        canonical = _PARAMETER_BY_LOWER[name.lower()]
        return CcmsetupSyntaxError(
            f"{show(token)}: {name} is a ccmsetup parameter, not a client.msi property; "
            f"expected '/{canonical}' before the properties"
        )
    close = difflib.get_close_matches(upper, sorted(KNOWN_PROPERTIES), n=3)
    return CcmsetupSyntaxError(
        f"unknown client.msi property {show(name)} in {show(token)}: expected a documented "
        "property" + _did_you_mean([f"'{c}'" for c in close])
    )


def control_characters(line: str) -> str:
    """The control characters in ``line`` (C0 but the tab, DEL, C1), each once, in order.

    cmd.exe ends a command at a line break and passes any other control character into the
    value it stands in (an escape sequence in ``CCMHOSTNAME``, a bell in ``CCMCERTSEL``): no
    ccmsetup value has one. The parser refuses them and the linter reports them, one rule."""
    found = [c for c in line if c != "\t" and (ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F)]
    return "".join(dict.fromkeys(found))


def ccmhostname_problem(value: str) -> str | None:
    """Why ``CCMHOSTNAME=value`` names no host the client can connect to (None when it
    does): the host part (after an optional ``scheme://``, before ``:port`` or ``/path``) is
    not a host name, or the port is not a TCP port number. A scheme, a port or a path on a
    good host are mistakes the client trips over, not unusable values (the linter reports
    them separately)."""
    m = URLISH_RE.fullmatch(value)
    host = m.group("host") if m else ""
    if not host or not is_ccm_host(host):
        return f"{host!r} is not a host name"
    port = m.group("port") if m else None
    if port is not None and (not _DIGITS_RE.fullmatch(port) or not 1 <= int(port) <= 65535):
        return f"the port {port!r} is not a TCP port number from 1 to 65535"
    return None


def parse_ccmsetup(line: str) -> CcmsetupCommand:
    """Parse a ccmsetup.exe command line.

    ``line`` may start with the program (``ccmsetup``, ``ccmsetup.exe`` or a path ending in
    ``\\ccmsetup.exe``); then come ``/parameters`` (``/name`` or ``/name:value``, names
    case-insensitive) and then client.msi properties (``NAME=value``, names upper case).
    A value-taking parameter written with a space after the colon (``/source: D:\\Clients``,
    as in Microsoft's own internet-client example) takes the next argument as its value.

    Raises :class:`~lab.errors.CcmsetupSyntaxError` with a one-line message.
    """
    bad = control_characters(line)
    if bad:
        raise CcmsetupSyntaxError(
            f"the command line contains the control character{'s' if len(bad) > 1 else ''} "
            f"{show(bad)}: cmd.exe ends a command at a line break and no ccmsetup value "
            "carries a control character")
    tokens = split_windows_command_line(line)
    program: str | None = None
    if tokens and _PROGRAM_RE.fullmatch(tokens[0]):
        program = tokens.pop(0)
        first_is_program_slot = False
    else:
        first_is_program_slot = True

    switches: dict[str, str | None] = {}
    properties: dict[str, str] = {}
    sources: list[str] = []
    notes: list[str] = []
    first_property: str | None = None
    i = 0
    offset = 1 if program is not None else 0
    try:
        while i < len(tokens):
            token = tokens[i]
            i += 1
            if token.startswith("/"):
                if first_property is not None:
                    # Microsoft's own token-install example puts /regtoken after the properties,
                    # so ccmsetup accepts it; the docs still advise parameters first.
                    notes.append(
                        f"parameter {show(token)} comes after the client.msi property "
                        f"{show(first_property)}; the docs say \"Specify CCMSetup parameters "
                        "before you specify properties for client.msi\""
                    )
                name, colon, value = token[1:].partition(":")
                canonical = _PARAMETER_BY_LOWER.get(name.lower())
                if canonical is None:
                    raise _unknown_parameter(token, name)
                takes_value = KNOWN_PARAMETERS[canonical]
                if takes_value:
                    if (
                        colon
                        and not value
                        and i < len(tokens)
                        and tokens[i]
                        and not tokens[i].startswith("/")
                        and not _is_property_token(tokens[i])
                    ):
                        value = tokens[i]  # "/source: D:\Clients"
                        token = f"{token} {value}"
                        i += 1
                    if not value:
                        raise CcmsetupSyntaxError(
                            f"parameter {show(token)} expects a value: write "
                            f"'/{canonical}:<value>'"
                        )
                    _check_switch_value(canonical, token, value)
                elif colon:
                    raise CcmsetupSyntaxError(
                        f"parameter {show(token)} takes no value: expected '/{canonical}' alone"
                    )
                if canonical in switches and canonical not in _REPEATABLE_PARAMETERS:
                    raise CcmsetupSyntaxError(
                        f"parameter {show(token)} is given twice; expected '/{canonical}' once"
                    )
                if canonical == "source":
                    sources.append(value)
                switches.setdefault(canonical, value if takes_value else None)
                continue

            m = _PROPERTY_RE.fullmatch(token)
            if m:
                name, value = m.group(1), m.group(2)
            elif token.upper() in _VALUELESS_PROPERTIES:
                name, value = token, ""
            else:
                where = "the program ccmsetup.exe, " if first_is_program_slot and i == 1 else ""
                raise CcmsetupSyntaxError(
                    f"unexpected argument {show(token)}: expected {where}a /parameter or a "
                    "NAME=value property"
                )
            upper = name.upper()
            if upper in KNOWN_PROPERTIES and name != upper:
                # Microsoft's own examples write SMSSiteCode=ABC, so ccmsetup evidently takes
                # property names case-insensitively; the documented spelling is upper case.
                notes.append(
                    f"property name {show(name)} is documented in upper case as {upper}"
                )
            if upper not in KNOWN_PROPERTIES:
                raise _unknown_property(token, name)
            if upper in properties:
                raise CcmsetupSyntaxError(
                    f"property {show(token)} is given twice; expected {upper} once"
                )
            if not value and upper not in _VALUELESS_PROPERTIES:
                raise CcmsetupSyntaxError(
                    f"property {show(token)} expects a value: write '{upper}=<value>'"
                )
            _check_property_value(upper, token, value)
            properties[upper] = value
            if first_property is None:
                first_property = token

    except CcmsetupSyntaxError as e:
        if e.token_index is None:
            e.token_index = max(0, i - 1) + offset
        raise
    return CcmsetupCommand(
        raw=line,
        program=program,
        switches=switches,
        properties=properties,
        source=tuple(sources),
        notes=tuple(notes),
    )
