"""Citations lead somewhere: every "reference §N" and "seed §N" names a section that exists.

``docs/reference.md`` keeps the numbering of the research notes it replaces, so the older
form "fidelity §N" must name an existing section too. ``docs/seed.md`` keeps the seed's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from labtest import ROOT

DOCS = ROOT / "docs"
SECTION = r"\d+(?:\.\d+)?[a-z]?"
SCANNED = ("lab", "tests", "docs", "scenarios", "README.md")
SUFFIXES = {".py", ".md", ".toml", ".js", ".html"}


def _sections(text: str) -> set[str]:
    """Heading numbers (``## 5.``, ``### 5.2b``) and numbered items of a section (``11.5``)."""
    found: set[str] = set()
    current = ""
    for line in text.splitlines():
        heading = re.match(rf"^#{{2,3}} (?:§)?({SECTION})\.? ", line)
        if heading:
            current = heading.group(1)
            found.add(current)
            continue
        item = re.match(r"^(\d+)\. ", line)
        if item and current and "." not in current:
            found.add(f"{current}.{item.group(1)}")
    return found


def _texts() -> Iterator[tuple[str, str]]:
    for name in SCANNED:
        path = ROOT / name
        paths = [path] if path.is_file() else sorted(path.rglob("*"))
        for p in paths:
            if p.is_file() and p.suffix in SUFFIXES and "__pycache__" not in p.parts:
                yield p.relative_to(ROOT).as_posix(), p.read_text(encoding="utf-8")


def _cited(pattern: str) -> list[tuple[str, str]]:
    """(file, section) for every match of ``pattern`` (group 1 is the section)."""
    return [(name, m.group(1)) for name, text in _texts() for m in re.finditer(pattern, text)]


@pytest.fixture(scope="module")
def reference_sections() -> set[str]:
    return _sections((DOCS / "reference.md").read_text(encoding="utf-8"))


def test_the_reference_has_the_notes_numbering(reference_sections: set[str]) -> None:
    for number in ("1", "1.4b", "1.4c", "1.5", "2.2", "3.3b", "5.2", "5.2b", "5.2c", "5.4",
                   "6.2", "6.3", "7.2", "8.3", "10", "11.7", "12"):
        assert number in reference_sections, number
    assert "13" not in reference_sections


def test_every_reference_citation_names_an_existing_section(
        reference_sections: set[str]) -> None:
    # "reference §5.2", "fidelity §5.2" (the older name, same numbers), "fidelity 8.3",
    # "fidelity section 1.4b"; a range "§5.1-5.2" is checked by its first number
    cited = _cited(rf"\b(?:reference|fidelity)(?: section)? §?({SECTION})\b")
    assert len(cited) > 10
    assert [c for c in cited if c[1] not in reference_sections] == []


def test_the_reference_s_own_cross_references_exist(reference_sections: set[str]) -> None:
    text = (DOCS / "reference.md").read_text(encoding="utf-8")
    cross = set(re.findall(rf"§({SECTION})(?![\d.])", text))
    assert cross - reference_sections == set()


def test_every_seed_citation_names_an_existing_section() -> None:
    seed = (DOCS / "seed.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^## §(\d+) ", seed, re.MULTILINE))
    supplements = set(re.findall(r"^### §(\d+) supplement(?: (\d+))?:", seed, re.MULTILINE))
    assert sections == {"1", "2", "3", "4"}
    assert supplements == {("3", "1"), ("3", "2"), ("4", "")}
    cited = [(name, m.group(1), m.group(2)) for name, text in _texts() if name != "docs/seed.md"
             for m in re.finditer(r"\bseed §(\d+)(?:,? \(?(?:supplement|suppl\.) (\d+))?", text)]
    assert len(cited) > 10
    assert [c for c in cited if c[1] not in sections] == []
    assert [c for c in cited if c[2] and (c[1], c[2]) not in supplements] == []


def test_every_bundled_seed_scenario_is_named_in_seed_md() -> None:
    seed = (DOCS / "seed.md").read_text(encoding="utf-8")
    bundled = sorted(p.stem for p in (ROOT / "scenarios").glob("seed*.toml"))
    assert len(bundled) >= 16
    assert [name for name in bundled if f"`{name}`" not in seed] == []


def test_openssl_certutil_citations_name_its_two_sections() -> None:
    text = (DOCS / "openssl-certutil.md").read_text(encoding="utf-8")
    assert set(re.findall(r"^## (\d+)\. ", text, re.MULTILINE)) == {"5", "6"}
    cited = _cited(r"openssl-(?:and-)?certutil(?:\.md)?(?:``)? §(\d+)")
    assert cited != []
    assert [c for c in cited if c[1] not in {"5", "6"}] == []


def test_docs_link_to_files_that_exist() -> None:
    for page in sorted(DOCS.glob("*.md")):
        for target in re.findall(r"\]\(([\w.-]+\.md)\)", page.read_text(encoding="utf-8")):
            assert (DOCS / target).is_file(), f"{page.name} links to {target}"


def test_the_helpers_see_what_they_should() -> None:
    # the failing twins of the checks above
    assert _sections("## 5. x\n### 5.2b y\n1. item\n## 11. z\n7. item\n") == {
        "5", "5.2b", "11", "11.7"}
    assert not re.search(rf"\b(?:reference|fidelity)(?: section)? §?({SECTION})\b",
                         "the reference section")
