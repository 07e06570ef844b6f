"""Strict TOML loader: a scenario file becomes a :class:`~lab.scenario.model.Scenario`.

Unknown keys, wrong types, dangling references and impossible combinations raise
:class:`~lab.errors.ScenarioError` naming the file, the line (when it can be found) and the
key path in TOML spelling (``client[0].step[1].location``).

The work is split by job: :mod:`lab.scenario.toml_source` (parsing, key path -> line),
:mod:`lab.scenario.fields` (typed getters, single-field checks), :mod:`lab.scenario.sections`
(each section into the model); this module loads files and folders.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from lab import limits
from lab.errors import ScenarioError
from lab.scenario.model import Scenario
from lab.scenario.sections import read_scenario
from lab.scenario.toml_source import Context, parse_toml

__all__ = ["discover", "load_all", "load_scenario", "load_scenario_text"]


def load_scenario_text(text: str, *, file: str | None = None, name: str | None = None) -> Scenario:
    """Parse scenario TOML ``text``; ``file`` is only used in error messages."""
    data = parse_toml(text, file=file)
    stem = name or (Path(file).stem if file else "scenario")
    return read_scenario(Context(file, text), data, stem)


def load_scenario(path: str | Path) -> Scenario:
    """Load one scenario file."""
    p = Path(path)
    try:
        # Not a regular file (a named pipe, a device): refused before it is opened, so that
        # reading cannot block or run forever; a file over the cap is refused unread.
        if not stat.S_ISREG(p.stat().st_mode) and not p.is_dir():
            raise ScenarioError("is not a regular file (a named pipe, a device?), expected a "
                                ".toml file", file=str(p))
        cap = limits.SCENARIO_FILE_BYTES.value
        with p.open("rb") as f:
            raw = f.read(cap + 1)
        limits.SCENARIO_FILE_BYTES.check(f"{p}: the scenario file has", len(raw))
    except FileNotFoundError:
        raise ScenarioError("no such file", file=str(p)) from None
    except IsADirectoryError:
        raise ScenarioError("is a folder, expected a .toml file", file=str(p)) from None
    except OSError as e:
        raise ScenarioError(f"cannot be read: {e.strerror}", file=str(p)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ScenarioError("is not UTF-8 text", file=str(p), line=line) from None
    return load_scenario_text(text, file=str(p))


def discover(paths: Iterable[str | Path]) -> list[Path]:
    """Scenario files named by ``paths``: a file as given, a folder as its ``*.toml`` files
    (recursively, in sorted order)."""
    found: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            files = sorted(p.rglob("*.toml"))
            if not files:
                raise ScenarioError("the folder holds no *.toml scenario files", file=str(p))
            found.extend(files)
        elif p.exists():
            found.append(p)
        else:
            raise ScenarioError("no such file or folder", file=str(p))
    return found


def load_all(paths: Sequence[str | Path],
             loader: Callable[[str | Path], Scenario] = load_scenario) -> list[Scenario]:
    """Load every scenario named by ``paths`` (see :func:`discover`); fail on the first error."""
    scenarios = [loader(p) for p in discover(paths)]
    names: dict[str, Scenario] = {}
    for s in scenarios:
        if s.name in names:
            raise ScenarioError(
                f"two scenarios share the name {s.name!r} (also {names[s.name].file}); "
                "rename one file", file=s.file)
        names[s.name] = s
    return scenarios
