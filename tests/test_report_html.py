"""The HTML report (``--format html``) of a run and of a matrix.

The pages are parsed with the standard library's ``html.parser``: one self-contained file
(inline CSS, no script, no link to anything outside the page), every in-page link has its
target, the step timeline shows the connection, the CDP attempts, the verdict, the log lines,
the trace, the explanation and the fix, and scenario text is escaped. When Debian's
``chromium`` is installed, a real browser renders both pages to PNG and the pictures are
checked not to be blank.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from labtest import SCENARIOS

from lab.matrix.sweep import make_selection, run_matrix
from lab.report.html import environment, render_matrix_html, render_run_html
from lab.results.matrix import MatrixResult
from lab.results.runs import RunResult
from lab.run import run_loaded
from lab.scenario.loader import load_all

CRL_ON = SCENARIOS / "seed4-internet-client-ldap-cdp-crl-on.toml"
BUNDLED = [CRL_ON, SCENARIOS / "seed3-smsmp-without-https.toml",
           SCENARIOS / "server-mp-cert-revoked.toml"]
HOSTILE = '<script>alert(\\"pwned\\")</script><img src=\\"https://evil.example/x.png\\">'
"""Markup in a scenario's title and description, as TOML basic-string text."""
SMALL_MATRIX = {"cdp": ["ldap"], "names": ["both"], "smsmp": ["https"],
                "ccmhostname": ["given"], "nocrlcheck": ["yes"]}
BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--hide-scrollbars")


@dataclass(eq=False)
class Element:
    tag: str
    attrs: dict[str, str]
    classes: set[str]
    ancestors: list[Element]
    text: str = ""

    def inside(self, other: Element) -> bool:
        return any(a is other for a in self.ancestors)


class Page(HTMLParser):
    """Every element (with its attributes, ancestors and the text inside it) of a page."""

    VOID = frozenset({"meta", "br", "img", "link", "input", "hr", "source", "col", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.stack: list[Element] = []
        self.text: list[str] = []
        self.declarations: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        el = Element(tag, values, set(values.get("class", "").split()), list(self.stack))
        self.elements.append(el)
        if tag not in self.VOID:
            self.stack.append(el)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                break

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for el in self.stack:
            el.text += data

    def handle_decl(self, decl: str) -> None:
        self.declarations.append(decl)

    def all(self, tag: str, cls: str | None = None) -> list[Element]:
        return [e for e in self.elements if e.tag == tag and (cls is None or cls in e.classes)]

    def within(self, container: Element, tag: str, cls: str | None = None) -> list[Element]:
        return [e for e in self.all(tag, cls) if e.inside(container)]

    @property
    def ids(self) -> list[str]:
        return [e.attrs["id"] for e in self.elements if "id" in e.attrs]

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def check_self_contained(page: Page, html: str) -> None:
    """No script, no stylesheet link, no frame, no external src/href; links stay in-page."""
    assert page.declarations == ["DOCTYPE html"]
    assert not page.all("script") and not page.all("link") and not page.all("iframe")
    assert not page.all("img") and not page.all("object") and not page.all("embed")
    assert len(page.all("style")) == 1
    style = page.all("style")[0].text
    assert "url(" not in style and "@import" not in style
    for el in page.elements:
        for attr in ("src", "href", "action", "srcset", "data", "poster"):
            value = el.attrs.get(attr)
            if value is None:
                continue
            assert not value.lower().startswith(("http://", "https://", "//", "file:")), value
            assert value.startswith("#"), (el.tag, attr, value)
    ids = page.ids
    assert len(ids) == len(set(ids)), "duplicate ids"
    for a in page.all("a"):
        assert a.attrs["href"][1:] in ids, a.attrs["href"]
    assert "<script" not in html


@pytest.fixture(scope="module")
def run(certs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """Three bundled scenarios, a copy with a wrong expectation and one with markup in its
    title and description."""
    folder = tmp_path_factory.mktemp("html-scenarios")
    text = CRL_ON.read_text(encoding="utf-8")
    wrong = text.replace('expect = "CRYPT_E_REVOCATION_OFFLINE"', 'expect = "ok"')
    assert wrong != text
    (folder / "twin-wrong-expect.toml").write_text(wrong, encoding="utf-8")
    hostile = text.replace('title = "', f'title = "{HOSTILE} ', 1)
    hostile = hostile.replace('description = """', f'description = """{HOSTILE}\n', 1)
    (folder / "hostile-text.toml").write_text(hostile, encoding="utf-8")
    scenarios = load_all([*BUNDLED, folder / "twin-wrong-expect.toml",
                          folder / "hostile-text.toml"])
    return asyncio.run(run_loaded(scenarios, certs=certs_dir))


@pytest.fixture(scope="module")
def matrix(certs_dir: Path) -> MatrixResult:
    return run_matrix(make_selection(SMALL_MATRIX), certs=certs_dir, jobs=1)


@pytest.fixture(scope="module")
def run_html(run: RunResult) -> str:
    return render_run_html(run)


@pytest.fixture(scope="module")
def matrix_html(matrix: MatrixResult) -> str:
    return render_matrix_html(matrix)


def test_templates_ship_with_the_package() -> None:
    assert {"base.html", "run.html", "matrix.html", "_step.html", "report.css"} <= set(
        environment().list_templates())
    assert environment().autoescape is True


def test_run_page_is_one_self_contained_file(run_html: str) -> None:
    check_self_contained(parse(run_html), run_html)


def test_run_page_summary_and_scenarios(run: RunResult, run_html: str) -> None:
    page = parse(run_html)
    total = sum(1 for r in run.scenarios for st in r.steps if not st.automatic)
    met = sum(1 for r in run.scenarios for st in r.steps if st.met and not st.automatic)
    assert total < sum(len(r.steps) for r in run.scenarios)  # automatic steps are no expectations
    header = page.all("header", "report")[0].text
    assert "4/5 scenarios passed" in " ".join(header.split())
    assert f"{met}/{total} expectations met" in " ".join(header.split())
    assert "run time" in header and "simulated client time" in header
    sections = page.all("section", "scenario")
    assert len(sections) == len(run.scenarios)
    for section, result in zip(sections, run.scenarios, strict=True):
        s = result.scenario
        assert s.info.title in section.text and s.name in section.text
        assert s.info.source in section.text
        assert ("failed" in section.classes) is (not result.passed)
        assert len([e for e in page.all("details", "step")
                    if e.attrs["id"].startswith(section.attrs["id"] + "-")]) == len(result.steps)
    description = next(e for e in page.all("div", "description")
                       if "enterprise CA writes" in e.text)
    assert "ldap:/// first, then http://ca01.contoso.local" in " ".join(description.text.split())


def step_element(page: Page, anchor: str) -> Element:
    return next(e for e in page.all("details", "step") if e.attrs["id"] == anchor)


def test_the_step_timeline_shows_every_stage(run_html: str) -> None:
    page = parse(run_html)
    step = step_element(page, "sc1-c1-s2")  # inventory from the internet: CRL offline
    assert {"step", "pass"} <= step.classes and "open" in step.attrs
    text = " ".join(step.text.split())
    for piece in (
        "PASS", "2. inventory @ internet", "FAIL", "CRYPT_E_REVOCATION_OFFLINE 0x80092013",
        "Management point IBCM-Internet.public.com",
        "TLS connection to IBCM-Internet.public.com",
        "OpenSSL verify code 3 (unable to get certificate CRL)", "judges agree",
        "CRL checking on, decided by the site's setting", "Options=63", "result offline",
        "http://ca01.contoso.local/CertEnroll/Contoso-CA.crl", "ERROR_WINHTTP_NAME_NOT_RESOLVED",
        "ERROR_DS_SERVER_DOWN 0x8007203A", "15 s",
        "WinHTTP ERROR_WINHTTP_SECURE_FAILURE 0x80072F8F, flags CERT_REV_FAILED (0x1)",
        "Post to https://IBCM-Internet.public.com/ccm_system/request failed with 0x87d00231.",
        "revocation trace in the shape of certutil -verify -urlfetch",
        "ERROR: Verifying leaf certificate revocation status returned",
        "Why PC01 (domain-joined, on the internet)", "Fix Publish the CRL",
    ):
        assert piece in text, piece
    assert len(page.within(step, "tr", "r-failed")) == 2  # both CDP URLs failed
    # CMTrace's highlighting: error lines (type 3) marked E, in a monospace log table.
    log_rows = page.within(step, "tr", "t3")
    assert log_rows and all(r.text.lstrip().startswith("E") for r in log_rows)
    assert any("<![LOG[" in e.text for e in page.within(step, "pre"))


def test_passing_and_failing_steps_differ_in_colour_and_in_text(run_html: str) -> None:
    page = parse(run_html)
    miss = step_element(page, "sc4-c1-s2")  # the twin that expected ok
    assert "miss" in miss.classes and "open" in miss.attrs
    badges = [b.text for b in page.within(miss, "span", "badge")]
    assert badges[:2] == ["MISS", "FAIL"] and "NOT MET" in badges
    ok = step_element(page, "sc1-c1-s1")
    assert "pass" in ok.classes and "open" not in ok.attrs
    badges = [b.text for b in page.within(ok, "span", "badge")]
    assert badges[:2] == ["PASS", "ok"]
    section = next(s for s in page.all("section", "scenario") if s.attrs["id"] == "sc4")
    assert "failed" in section.classes


def test_scenario_text_is_escaped(run_html: str) -> None:
    page = parse(run_html)
    check_self_contained(page, run_html)
    assert 'alert("pwned")' in page.all_text
    assert run_html.count("&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;") >= 3
    assert "https://evil.example" in page.all_text  # as text, never as an attribute


def test_matrix_page_grid_legend_and_anchors(matrix: MatrixResult, matrix_html: str) -> None:
    page = parse(matrix_html)
    check_self_contained(page, matrix_html)
    grid = page.all("table", "grid")
    assert len(grid) == 1
    links = page.within(grid[0], "a")
    cells = [(row, key, cell) for row in matrix.rows for key, cell in row.cells.items()]
    assert len(links) == len(cells) == 8
    assert len(page.within(grid[0], "tr")) == 1 + len(matrix.rows)
    shorts = [a.text for a in links]
    assert shorts == [cell.short for _, _, cell in cells]
    assert shorts.count("CRL-OFFLINE") == 2 and shorts.count("ok") == 6
    td = page.within(grid[0], "td", "cell")
    assert all({"c-ok"} <= t.classes for t in td if t.text.strip() == "ok")
    assert all("c-ok" not in t.classes for t in td if t.text.strip() != "ok")
    legend = page.all("dl", "legend")[0].text
    assert "CRL-OFFLINE" in legend and "CRYPT_E_REVOCATION_OFFLINE: no CDP URL" in legend
    # Every cell's link lands on its detail section, which holds its steps' timelines.
    sections = {s.attrs["id"]: s for s in page.all("section", "cell")}
    for link, (_, _, cell) in zip(links, cells, strict=True):
        target = link.attrs["href"][1:]
        assert target in sections
        steps = [e for e in page.all("details", "step")
                 if e.attrs["id"].startswith(target + "-s")]
        # the four steps of the row, and ccmexec's two automatic ones after a good install
        assert len(steps) == len(cell.steps) == (6 if cell.steps[0]["outcome"] == "ok" else 4)
    assert "1a. register (automatic, ccmexec start-up) @ intranet" in " ".join(
        page.all_text.split())
    failing = sections["r1-workgroup"]
    text = " ".join(failing.text.split())
    assert "FAIL" in text and "CRL-OFFLINE" in text and "first failing step: 4" in text
    assert "OpenSSL verify code 3" in text and "ERROR_DS_SERVER_DOWN" in text
    assert "Fix Publish the CRL" in text and "back to the grid" in text


def _png_rows(path: Path, rows: int) -> tuple[int, int, int, list[bytes]]:
    """Width, height, bytes per pixel and the first ``rows`` unfiltered pixel rows of an
    8-bit RGB or RGBA PNG (the filters of the PNG specification, section 9)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = zlib.decompressobj().decompress(idat, (stride + 1) * rows)
    out: list[bytes] = []
    prev = bytearray(stride)
    for r in range(min(rows, len(raw) // (stride + 1))):
        start = r * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        out.append(bytes(line))
        prev = line
    return width, height, bpp, out


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Debian's chromium is not installed (apt-get install chromium); "
                           "the real-browser rendering check needs it, CI does not have it")
def test_a_real_browser_renders_both_pages(run_html: str, matrix_html: str,
                                           tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium is not None
    for name, html in (("run", run_html), ("matrix", matrix_html)):
        page = tmp_path / f"{name}.html"
        page.write_text(html, encoding="utf-8")
        png = tmp_path / f"{name}.png"
        profile = tmp_path / f"profile-{name}"
        profile.mkdir()
        subprocess.run(
            [chromium, *BROWSER_FLAGS, f"--user-data-dir={profile}", "--window-size=1000,700",
             f"--screenshot={png}", page.as_uri()],
            check=True, capture_output=True, timeout=90, stdin=subprocess.DEVNULL,
            env={**os.environ, "HOME": str(tmp_path)})
        assert png.is_file() and png.stat().st_size > 10_000, name
        width, height, bpp, rows = _png_rows(png, 160)
        assert (width, height) == (1000, 700) and len(rows) == 160
        pixels = {row[i:i + 3] for row in rows for i in range(0, len(row), bpp)}
        assert len(pixels) > 20, f"{name}: the screenshot is (nearly) one colour"
        dark = [p for p in pixels if sum(p) < 200]
        assert dark, f"{name}: no dark (text) pixel in the page's header"
