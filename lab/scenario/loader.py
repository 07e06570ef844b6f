"""Strict TOML loader: a scenario file becomes a :class:`~lab.scenario.model.Scenario`.

Unknown keys, wrong types, dangling references and impossible combinations raise
:class:`~lab.errors.ScenarioError` naming the file, the line (when it can be found) and the
key path in TOML spelling (``client[0].step[1].location``).

The work is split by job: :mod:`lab.scenario.toml_source` (parsing, key path -> line),
:mod:`lab.scenario.fields` (typed getters, single-field checks), :mod:`lab.scenario.sections`
(each section into the model); this module loads files and folders.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import limits
from lab.errors import ScenarioError, UsageError
from lab.scenario.model import Scenario
from lab.scenario.sections import read_scenario
from lab.scenario.toml_source import Context, parse_toml

__all__ = ["SCALE_CAPS", "ScaleCap", "discover", "load_all", "load_scenario",
           "load_scenario_text", "scale_cap"]


@dataclass(frozen=True)
class ScaleCap:
    """A limit on a scenario's size: a lab run replays every client step by step on one
    machine, so a fleet-sized file would take minutes (and its keys minutes more on a cold
    cache). Fleet-sized load belongs in ``ibcm-lab bench`` and its load generator."""

    name: str
    env: str
    default: int
    what: str


SCALE_CAPS = (
    # the same variable as the file-size cap of lab/limits.py (issue 20), for scenario text
    # that comes from no file (LabSession, the console)
    ScaleCap("max_scenario_bytes", "IBCM_LAB_LIMIT_SCENARIO_FILE_BYTES", 1024 * 1024,
             "bytes of scenario text"),
    ScaleCap("max_clients", "IBCM_LAB_LIMIT_SCENARIO_CLIENTS", 250,
             "[[client]] tables in one scenario"),
    ScaleCap("max_steps", "IBCM_LAB_LIMIT_SCENARIO_STEPS", 5000,
             "[[client.step]] tables in one scenario, all clients together"),
)
_CAPS = {c.name: c for c in SCALE_CAPS}


def scale_cap(name: str) -> int:
    """The value of the cap ``name``: its environment variable when set, else its default."""
    cap = _CAPS[name]
    raw = os.environ.get(cap.env, "").strip()
    if not raw:
        return cap.default
    if not raw.isdigit() or int(raw) < 1:
        raise UsageError(f"{cap.env}={raw!r}: expected a positive whole number "
                            f"(the limit {cap.name}, default {cap.default})")
    return int(raw)


def _too_large(name: str, got: int, *, file: str | None, key: str | None = None,
               line: int | None = None) -> ScenarioError:
    cap = _CAPS[name]
    return ScenarioError(
        f"the scenario is too large to run: {got} {cap.what}, above the limit {cap.name} = "
        f"{scale_cap(name)} (raise it with {cap.env}=N; fleet-sized load belongs in "
        "`ibcm-lab bench`, whose load generator drives thousands of clients)",
        file=file, key=key, line=line)


def _check_scale(ctx: Context, data: dict[str, Any]) -> None:
    """Refuse, before anything is built, a scenario beyond :data:`SCALE_CAPS`."""
    clients = data.get("client")
    if not isinstance(clients, list):
        return
    limit = scale_cap("max_clients")
    if len(clients) > limit:
        key = f"client[{limit}]"
        raise _too_large("max_clients", len(clients), file=ctx.file, key=key,
                         line=ctx.locator.line(key))
    steps = 0
    limit = scale_cap("max_steps")
    for i, client in enumerate(clients):
        table = client.get("step") if isinstance(client, dict) else None
        steps += len(table) if isinstance(table, list) else 0
        if steps > limit:
            key = f"client[{i}].step"
            raise _too_large("max_steps", steps, file=ctx.file, key=key,
                             line=ctx.locator.line(key))


def load_scenario_text(text: str, *, file: str | None = None, name: str | None = None) -> Scenario:
    """Parse scenario TOML ``text``; ``file`` is only used in error messages."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > scale_cap("max_scenario_bytes"):
        raise _too_large("max_scenario_bytes", size, file=file)
    data = parse_toml(text, file=file)
    ctx = Context(file, text)
    _check_scale(ctx, data)
    stem = name or (Path(file).stem if file else "scenario")
    return read_scenario(ctx, data, stem)


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
