"""Scenario TOML as text: parse it, and find the line of a key path for error messages."""

from __future__ import annotations

import re
import tomllib
from typing import Any

from lab.errors import ScenarioError

__all__ = ["Context", "Locator", "parse_toml"]

_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")


class Locator:
    """Finds the line of a key path in TOML text (best effort: plain tables and keys)."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=""")

    def __init__(self, text: str) -> None:
        self.lines: dict[str, int] = {}
        counters: dict[str, int] = {}
        prefix = ""
        in_string: str | None = None
        for lineno, raw in enumerate(text.splitlines(), start=1):
            if in_string is not None:
                # inside a multi-line string: nothing here is a header or a key
                if raw.count(in_string) % 2 == 1:
                    in_string = None
                continue
            header = self._HEADER.match(raw)
            if header:
                parts = [p.strip().strip("\"'") for p in header.group(2).split(".")]
                prefix = self._resolve(parts, header.group(1) == "[[", counters)
                self.lines.setdefault(prefix, lineno)
                # a sub-table header also defines its parents ([mp.cert] without [mp])
                parent = prefix
                while "." in parent:
                    parent = parent.rsplit(".", 1)[0]
                    self.lines.setdefault(parent, lineno)
                continue
            for quote in ('"""', "'''"):
                if raw.count(quote) % 2 == 1:
                    in_string = quote
                    break
            key = self._KEY.match(raw)
            if key:
                name = key.group(1).strip("\"'")
                path = f"{prefix}.{name}" if prefix else name
                self.lines.setdefault(path, lineno)

    def _resolve(self, parts: list[str], is_array: bool, counters: dict[str, int]) -> str:
        path = ""
        for i, part in enumerate(parts):
            plain = f"{path}.{part}" if path else part
            last = i == len(parts) - 1
            if last and is_array:
                counters[plain] = counters.get(plain, -1) + 1
                for stale in [k for k in counters if k.startswith(plain + "[")]:
                    del counters[stale]
                path = f"{plain}[{counters[plain]}]"
            elif plain in counters:
                path = f"{plain}[{counters[plain]}]"
            else:
                path = plain
        return path

    def line(self, key: str) -> int | None:
        probe = key
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            cut = max(probe.rfind("."), probe.rfind("["))
            probe = probe[:cut] if cut > 0 else ""
        return None


class Context:
    """The file being read and where its keys are: makes errors that name file, line and key."""

    def __init__(self, file: str | None, text: str) -> None:
        self.file = file
        self.locator = Locator(text)

    def error(self, key: str, message: str) -> ScenarioError:
        return ScenarioError(message, file=self.file, key=key, line=self.locator.line(key))


def parse_toml(text: str, *, file: str | None) -> dict[str, Any]:
    """``tomllib.loads`` with its errors turned into :class:`ScenarioError` (file, line)."""
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ScenarioError("TOML syntax error: arrays or tables nested too deeply",
                            file=file) from None
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        match = _TOML_POS.search(message)
        line = int(match.group(1)) if match else None
        clean = _TOML_POS.sub("", message).strip()
        if match is None and "(at end of document)" in message:
            line = max(1, len(text.splitlines()))
            clean = message.replace("(at end of document)", "").strip() + " at the end of the file"
        col = f" (column {match.group(2)})" if match else ""
        raise ScenarioError(f"TOML syntax error: {clean}{col}", file=file, line=line) from None
    except ValueError as e:  # for example an integer of thousands of digits
        raise ScenarioError(f"TOML value cannot be read: {e}", file=file) from None
