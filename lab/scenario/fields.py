"""Reading TOML values: a table's typed getters, and the checks on single fields (times
relative to the run, enum names, DNS names, CDP/AIA URL lists) that raise located errors."""

from __future__ import annotations

import datetime as dt
import difflib
import re
from typing import Any, TypeVar
from urllib.parse import urlsplit

from lab.names import is_dns_name, is_printable_url, wildcard_problem
from lab.scenario.model import CAKind
from lab.scenario.toml_source import Context

__all__ = [
    "MAX_OFFSET_DAYS",
    "Table",
    "dns_name",
    "duration",
    "enum_value",
    "offset",
    "type_name",
    "url_entries",
]

E = TypeVar("E")

_URL_SCHEMES = ("ldap://", "http://", "file://")
_OFFSET = re.compile(r"([+-]?)((?:\d+(?:\.\d+)?[smhd] ?)*\d+(?:\.\d+)?[smhd])")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_UNIT_DAYS = {"s": 1 / 86400, "m": 1 / 1440, "h": 1 / 24, "d": 1.0}
MAX_OFFSET_DAYS = 60 * 365
"""Times relative to the run stay within 60 years of it: X.509 cannot encode a date before
1950 (RFC 5280 4.1.2.5: UTCTime), so a century back from today is out of reach."""


def type_name(value: object) -> str:
    """How an error message names the TOML type of ``value`` ("an array")."""
    return {
        bool: "a boolean", int: "an integer", float: "a number", str: "a string",
        list: "an array", dict: "a table",
    }.get(type(value), type(value).__name__)


class Table:
    """A TOML table being read: typed getters, and a check that no key was left unread."""

    def __init__(self, ctx: Context, data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise ctx.error(path, f"expected a table, got {type_name(data)}")
        self.ctx = ctx
        self.data: dict[str, Any] = data
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def _get(self, name: str, required: bool) -> Any:
        self.used.add(name)
        if name not in self.data:
            if required:
                raise self.ctx.error(self.key(name), "is required but missing")
            return None
        return self.data[name]

    def text(self, name: str, *, required: bool = False, default: str | None = None) -> Any:
        value = self._get(name, required)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.ctx.error(self.key(name), f"expected a string, got {type_name(value)}")
        if required and not value.strip():
            raise self.ctx.error(self.key(name), "must not be empty")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self._get(name, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.ctx.error(
                self.key(name), f"expected true or false, got {type_name(value)} {value!r}"
            )
        return value

    def integer(self, name: str) -> int | None:
        value = self._get(name, False)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.ctx.error(self.key(name), f"expected an integer, got {type_name(value)}")
        return value

    def str_list(self, name: str) -> tuple[str, ...] | None:
        value = self._get(name, False)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self.ctx.error(
                self.key(name), f"expected an array of strings, got {type_name(value)}"
            )
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.ctx.error(
                    f"{self.key(name)}[{i}]", f"expected a string, got {type_name(item)}"
                )
        return tuple(value)

    def enum(self, name: str, cls: type[E], *, required: bool = False) -> Any:
        value = self.text(name, required=required)
        if value is None:
            return None
        return enum_value(self.ctx, self.key(name), value, cls)

    def table(self, name: str, *, required: bool = False) -> Table | None:
        value = self._get(name, required)
        if value is None:
            return None
        return Table(self.ctx, value, self.key(name))

    def tables(self, name: str) -> list[Table]:
        value = self._get(name, False)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            header = re.sub(r"\[\d+\]", "", self.key(name))
            raise self.ctx.error(
                self.key(name),
                f"expected an array of tables ([[{header}]]), got {type_name(value)}",
            )
        return [Table(self.ctx, v, f"{self.key(name)}[{i}]") for i, v in enumerate(value)]

    def done(self) -> None:
        unknown = [k for k in self.data if k not in self.used]
        if not unknown:
            return
        name = unknown[0]
        hint = difflib.get_close_matches(name, sorted(self.used), n=1)
        allowed = ", ".join(sorted(self.used))
        message = f"unknown key {name!r}"
        message += f" (did you mean {hint[0]!r}?)" if hint else f"; allowed keys: {allowed}"
        raise self.ctx.error(self.key(name), message)


def offset(ctx: Context, t: Table, name: str) -> dt.timedelta | None:
    """``"-1d"``, ``"+7d"``, ``"90m"``, ``"+7d 12h"``: a time relative to the run's time."""
    value = t.text(name)
    if value is None:
        return None
    match = _OFFSET.fullmatch(value.strip())
    if match is None:
        raise ctx.error(t.key(name), "expected a time relative to the run, like \"-1d\", "
                        f"\"+7d\", \"-2h\" or \"30m\" (units s, m, h, d), got {value!r}")
    sign = -1 if match.group(1) == "-" else 1
    parts = _PART.findall(match.group(2))
    if sum(float(amount) * _UNIT_DAYS[unit] for amount, unit in parts) > MAX_OFFSET_DAYS:
        raise ctx.error(t.key(name), f"expected a time within {MAX_OFFSET_DAYS // 365} years "
                        f"of the run, got {value!r}")
    return sign * sum((dt.timedelta(**{_UNITS[unit]: float(amount)}) for amount, unit in parts),
                      dt.timedelta(0))


def duration(ctx: Context, t: Table, name: str, *, zero: bool = False,
             what: str = "a duration") -> dt.timedelta | None:
    """``"36h"``, ``"7d"``, ``"+8d"``: a length of time that is not negative (zero only when
    ``zero``); the message names ``what`` the key means."""
    value = t.text(name)
    if value is None:
        return None
    match = _OFFSET.fullmatch(value.strip())
    if match is None or match.group(1) == "-":
        raise ctx.error(t.key(name), f"expected {what} like \"36h\", \"7d\", \"90m\" or "
                        f"\"30s\" (units s, m, h, d; not negative), got {value!r}")
    result = offset(ctx, t, name)
    assert result is not None
    if result == dt.timedelta(0) and not zero:
        raise ctx.error(t.key(name), f"expected {what} longer than zero, got {value!r}")
    return result


def enum_value(ctx: Context, key: str, value: str, cls: type[E]) -> E:
    """The member of enum ``cls`` named ``value`` (case-insensitive)."""
    members = [m.value for m in cls]  # type: ignore[attr-defined]
    try:
        return cls(value.lower())  # type: ignore[call-arg]
    except ValueError:
        raise ctx.error(
            key, f"expected one of {', '.join(map(repr, members))}, got {value!r}"
        ) from None


def dns_name(ctx: Context, key: str, value: str) -> str:
    """``value``, checked to be a DNS host name (:func:`lab.names.is_dns_name`)."""
    if not is_dns_name(value):
        raise ctx.error(key, f"expected a DNS host name (letters, digits, '-', '.'), got {value!r}")
    return value


def san_name(ctx: Context, key: str, value: str) -> str:
    """A SAN DNS name: a DNS host name or a wildcard as Windows matches it (``*.`` as the
    whole left-most label, :func:`lab.names.wildcard_problem`)."""
    if "*" in value:
        problem = wildcard_problem(value)
        if problem is not None:
            raise ctx.error(key, f"expected a DNS host name or a wildcard such as "
                            f"'*.fabrikam.com', got {value!r}: {problem}")
        return value
    return dns_name(ctx, key, value)


def url_entries(
    ctx: Context, key: str, entries: tuple[str, ...] | None, kind: CAKind | None
) -> tuple[str, ...] | None:
    """A CDP or AIA list: ``ldap``/``http`` (the CA's defaults) or full URLs, each once."""
    if entries is None:
        return None
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        k = f"{key}[{i}]"
        lowered = entry.lower()
        if lowered in ("ldap", "http"):
            if lowered == "ldap" and kind is CAKind.PUBLIC:
                raise ctx.error(
                    k, "'ldap' means the AD CS LDAP template and needs an enterprise CA; "
                    "a public CA publishes over HTTP"
                )
        elif lowered.startswith("https://"):
            raise ctx.error(
                k, f"expected an http://, ldap:// or file:// URL, got {entry!r}: CRLs and "
                "CA certificates are published over plain HTTP (an HTTPS CDP would need a "
                "revocation check of its own)"
            )
        elif not lowered.startswith(_URL_SCHEMES):
            raise ctx.error(
                k, f"expected 'ldap', 'http' or a full ldap://, http:// or file:// URL, "
                f"got {entry!r}"
            )
        if lowered not in ("ldap", "http"):
            problem = _url_problem(entry)
            if problem:
                raise ctx.error(k, f"expected a usable URL, got {entry!r}: {problem}")
        if lowered in seen:
            raise ctx.error(k, f"{entry!r} is listed twice")
        seen.add(lowered)
    return tuple(e.lower() if e.lower() in ("ldap", "http") else e for e in entries)


def _url_problem(url: str) -> str | None:
    """Why ``url`` cannot go into a certificate's CDP or AIA (None when it can)."""
    if not is_printable_url(url):
        return "only printable ASCII without spaces (percent-encode anything else)"
    if len(url) > 2048:
        return "longer than 2048 characters"
    try:
        parsed = urlsplit(url)
        _ = parsed.port
    except ValueError as e:
        return str(e)
    if parsed.scheme.lower() in ("http", "file") and not parsed.hostname:
        return "no host name"
    return None
