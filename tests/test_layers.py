"""The package's import graph follows the layer order documented in the README.

Every ``import lab.x`` and ``from lab.x import ...`` in ``lab/`` (at module level, inside a
function, or under ``TYPE_CHECKING``: each is an arrow a reader follows) must point to the same
layer or a lower one, and a few pairs of the same or lower layers never import each other at
all. The README's "How it is built" section shows the same table; a test checks they agree.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from labtest import ROOT

LAB = ROOT / "lab"

# Low to high. A module belongs to the first entry whose name is its name or a prefix of it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("lab.errors", "lab.clock", "lab.codes", "lab.names", "lab.limits",
     "lab.files"),                                                   # foundation
    ("lab.configmgr", "lab.scenario"),                               # describe
    ("lab.pki",),                                                    # build
    ("lab.protocols", "lab.results"),                                # the network; plain data
    ("lab.cryptoapi",),                                              # Windows' engines
    ("lab.servers", "lab.client"),                                   # serve; replay
    ("lab.judge",),                                                  # judge
    ("lab.logs", "lab.report"),                                      # report
    ("lab.run",),                                                    # the wiring
    ("lab.session", "lab.matrix", "lab.tools", "lab.ui", "lab.pytest_plugin"),  # applications
    ("lab.cli", "lab.__main__", "lab"),                              # the command line; the face
)

# Pairs that never import each other, whatever the order says: the servers and the client
# only meet over the (simulated) network; renderers and log writers read results, never the
# machinery that produced them; the judge reads observations, not the client that made them.
NEVER: tuple[tuple[str, str], ...] = (
    ("lab.servers", "lab.client"),
    ("lab.client", "lab.servers"),
    ("lab.report", "lab.servers"),
    ("lab.report", "lab.client"),
    ("lab.logs", "lab.servers"),
    ("lab.logs", "lab.client"),
    ("lab.judge", "lab.servers"),
    ("lab.judge", "lab.client"),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def group_of(module: str) -> str:
    best = ""
    for layer in LAYERS:
        for name in layer:
            if (module == name or module.startswith(name + ".")) and len(name) > len(best):
                best = name
    if not best:
        raise AssertionError(f"{module} belongs to no layer: add it to LAYERS and the README")
    return best


def layer_of(module: str) -> int:
    group = group_of(module)
    return next(i for i, layer in enumerate(LAYERS) if group in layer)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every import of a ``lab`` module in ``path``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "lab"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "lab":
                continue
            if node.module == "lab":  # from lab import codes -> lab.codes
                found += [(node.lineno, f"lab.{a.name}") for a in node.names
                          if (LAB / a.name).exists() or (LAB / f"{a.name}.py").exists()]
            else:
                found.append((node.lineno, node.module))
    return found


def arrows() -> list[tuple[str, int, str, str]]:
    """``(file, line, importer, imported)`` for every arrow inside ``lab/``."""
    out = []
    for path in sorted(LAB.rglob("*.py")):
        importer = module_name(path)
        for line, imported in imports_of(path):
            out.append((str(path.relative_to(ROOT)), line, importer, imported))
    return out


def test_every_import_points_to_the_same_layer_or_a_lower_one() -> None:
    upward = [f"{f}:{line}: {a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
              for f, line, a, b in arrows()
              if layer_of(b) > layer_of(a) and not (a == "lab" and b.startswith("lab."))]
    assert upward == [], "imports that run back up the layers:\n" + "\n".join(upward)


def test_pairs_that_must_never_meet_do_not_import_each_other() -> None:
    broken = [f"{f}:{line}: {a} imports {b}" for f, line, a, b in arrows()
              for low, high in NEVER
              if group_of(a) == low and group_of(b) == high]
    assert broken == [], "forbidden imports:\n" + "\n".join(broken)


def test_every_module_of_the_package_has_a_layer() -> None:
    for path in LAB.rglob("*.py"):
        layer_of(module_name(path))  # raises with the module's name


def test_the_readme_shows_the_same_layers() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## How it is built", 1)
    assert len(section) == 2, "README.md has no '## How it is built' section"
    body = section[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*(\d+)\s*\|([^|]*)\|", body, flags=re.MULTILINE)
    table = {int(n): tuple(sorted(re.findall(r"`(lab[\w.]*)`", names))) for n, names in rows}
    assert table == {i: tuple(sorted(layer)) for i, layer in enumerate(LAYERS)}


@pytest.mark.parametrize(("module", "layer"), [("lab.errors", 0), ("lab.cli.app", 10),
                                               ("lab.servers.mp_app", 5), ("lab", 10)])
def test_the_layer_of_a_module_is_its_longest_prefix(module: str, layer: int) -> None:
    assert layer_of(module) == layer


def test_an_upward_import_is_found(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from lab.run import run_paths\n", encoding="utf-8")
    assert imports_of(source) == [(2, "lab.run")]
    assert layer_of("lab.run") > layer_of("lab.report.text")
