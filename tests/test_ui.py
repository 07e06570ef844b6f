"""``ibcm-lab ui``: the training console.

(a) The HTTP API against the real app and the real lab (pytest-aiohttp): the page and its
assets load nothing from elsewhere, switches become the ccmsetup line and the topology, a
failing configuration streams its steps and a failing verdict with the real error code, its
passing twin passes, bad input is answered 400 naming the key. The seed's scenes as presets
reproduce what the bundled scenario files expect, and the suggested fixes fix.

(b) End to end in a real headless Chromium (Debian's ``chromium``, driven by Playwright's
Python package through the system executable; no browser is ever downloaded): load the
page, flip switches (one with the keyboard), press Connect, read the verdict, the error code
and a red CMTrace line; apply the fix and see it pass. Without chromium or playwright these
tests are skipped, with the reason printed (``-rs``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from lab.cli import main
from lab.run import run_loaded
from lab.scenario.loader import load_scenario
from lab.tools.demo import SCENES, bundled_dir
from lab.ui.app import make_app
from lab.ui.switches import PRESETS, build_scenario, defaults, suggest_fix

SEED_LINE = ("ccmsetup.exe /UsePKICert /NoCRLCheck SMSSITECODE=P01 "
             "SMSMP=https://IBCM-Intra.contoso.local CCMHOSTNAME=IBCM-Internet.public.com")
LDAP_INTERNET = {"cdp": "ldap", "location": "internet", "site_crl": "on"}
"""The seed's §4: LDAP-only CDP, a client that roams to the internet, the CRL box ticked."""


@pytest.fixture
async def client(aiohttp_client: Any, certs_dir: Path) -> TestClient[Any, Any]:
    return await aiohttp_client(make_app(certs=certs_dir))


async def stream(client: TestClient[Any, Any], body: dict[str, Any]
                 ) -> list[tuple[str, dict[str, Any]]]:
    """POST /api/connect and read the event stream one event at a time."""
    response = await client.post("/api/connect", json=body)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = []
    while True:
        try:
            block = await response.content.readuntil(b"\n\n")
        except asyncio.IncompleteReadError as e:
            assert not e.partial.strip()
            break
        if not block:  # the end of the stream
            break
        event, data = block.decode().strip().split("\n")
        events.append((event.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


# -- (a) the API ---------------------------------------------------------------------------------

OTHER_HOST = re.compile(r"(?i)\b(?:https?:)?//(?!127\.0\.0\.1[:/]|localhost[:/])[a-z0-9.-]+\.[a-z]")


async def test_page_and_assets_load_nothing_from_elsewhere(client: TestClient[Any, Any]) -> None:
    page = await client.get("/")
    assert page.status == 200 and page.content_type == "text/html"
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    html = await page.text()
    for tag in ("<main", "<form", "<button", 'id="connect"', 'id="fix"', 'lang="en"'):
        assert tag in html
    texts = {"index.html": html}
    for name, kind in (("ui.css", "text/css"), ("ui.js", "text/javascript")):
        asset = await client.get(f"/static/{name}")
        assert asset.status == 200 and asset.content_type == kind
        texts[name] = await asset.text()
    for name, text in texts.items():
        assert not OTHER_HOST.search(text), f"{name} names another host: {OTHER_HOST.search(text)}"
        assert "http://" not in text and "https://" not in text, name
        assert "@import" not in text and "@font-face" not in text, name
    base = re.search(r"html\s*\{\s*font-size:\s*(\d+)px", texts["ui.css"])
    assert base is not None and int(base.group(1)) >= 20
    assert (await client.get("/static/app.py")).status == 404
    assert (await client.get("/static/..%2fapp.py")).status == 404
    setup = await (await client.get("/api/setup")).json()
    assert [p["scene"] for p in setup["presets"]] == list(range(1, len(SCENES) + 1))
    assert {s["key"] for s in setup["switches"]} >= {
        "cdp", "site_crl", "nocrlcheck", "names", "smsmp", "ccmhostname", "location", "domain",
        "mp_revoked", "crl_expired"}
    assert setup["file"] is None and setup["initial"] == "switches"


async def test_switches_make_the_ccmsetup_line_and_the_topology(
        client: TestClient[Any, Any]) -> None:
    got = await (await client.post("/api/preview", json={})).json()
    assert [c["line"] for c in got["ccmsetup"]] == [SEED_LINE]
    changed = {"smsmp": "plain", "ccmhostname": "omitted", "nocrlcheck": "no",
               "usepkicert": "no"}
    got = await (await client.post("/api/preview", json={"switches": changed})).json()
    assert [c["line"] for c in got["ccmsetup"]] == [
        "ccmsetup.exe SMSSITECODE=P01 SMSMP=IBCM-Intra.contoso.local"]

    got = await (await client.post("/api/preview",
                                   json={"switches": {"cdp": "ldap+http-internet",
                                                      "location": "internet"}})).json()
    topo = got["topology"]
    assert topo["client_zones"] == ["intranet", "internet"]
    assert [z["key"] for z in topo["zones"]] == ["intranet", "vpn", "dmz", "internet"]
    roles = {z["key"]: {m["role"] for m in z["machines"]} for z in topo["zones"]}
    assert {"mp", "dc", "ca", "client"} <= roles["intranet"]
    assert roles["dmz"] == {"cdp"} and "client" in roles["internet"]
    rows = {r["target"].split("?")[0][:8]: r["reach"] for r in topo["rows"]}
    assert rows["ldap:///"] == {"intranet": True, "vpn": True, "dmz": False, "internet": False}
    assert rows["http://p"]["internet"] is True  # the published CDP
    mp = next(m for m in topo["zones"][0]["machines"] if m["role"] == "mp")
    assert mp["names"] == ["IBCM-Intra.contoso.local", "IBCM-Internet.public.com"]
    # The DC by the name its LDAP log and `ibcm-lab serve`'s ldapsearch line use.
    dc = next(m for m in topo["zones"][0]["machines"] if m["role"] == "dc")
    assert dc["names"] == ["DC01.contoso.local", "contoso.local"]
    workgroup = await (await client.post("/api/preview",
                                         json={"switches": {"domain": "workgroup"}})).json()
    ldap = next(r for r in workgroup["topology"]["rows"] if r["target"].startswith("ldap:///"))
    assert not any(ldap["reach"].values())


async def test_a_failing_configuration_streams_its_steps_then_fails(
        client: TestClient[Any, Any]) -> None:
    events = await stream(client, {"switches": LDAP_INTERNET})
    names = [e for e, _ in events]
    # the install is followed by ccmexec's automatic registration and site refresh (1a, 1b),
    # sent as steps of their own (not in the plan: no step of the scenario asks for them)
    assert names == ["start", "step-start", "step", "step", "step",
                     *["step-start", "step"] * 3, "verdict"]
    start = events[0][1]
    assert [p["action"] for p in start["plan"]] == ["install", "register", "location", "policy"]
    steps = [d for e, d in events if e == "step"]
    assert [(s["n"], s["action"], s["automatic"]) for s in steps] == [
        ("1", "install", False), ("1a", "register", True), ("1b", "location", True),
        ("2", "register", False), ("3", "location", False), ("4", "policy", False)]
    for i in range(3):  # each step of the plan is announced, then sent as soon as judged
        assert events[5 + 2 * i][1]["n"] == i + 2 and events[6 + 2 * i][1]["n"] == str(i + 2)
    assert [s["outcome"] for s in steps] == ["ok", "ok", "ok", "ok", "ok", "fail"]
    last = steps[-1]
    assert last["location"] == "internet"
    assert last["resolution"]["resolves"] and last["resolution"]["answer"].startswith("127.0.0.1:")
    assert last["resolution"]["host"] == "IBCM-Internet.public.com"
    assert last["tls"]["handshake"] == "done"
    assert last["tls"]["certificate"]["san"] == ["IBCM-Intra.contoso.local",
                                                 "IBCM-Internet.public.com"]
    assert last["tls"]["openssl"]["verify_code"] == 3 and last["tls"]["openssl"]["agrees"]
    assert last["crl"] == {**last["crl"], "check": True, "checked": True, "status": "offline",
                           "options": 63, "seconds": "15"}
    [url] = last["urls"]
    assert url["url"].startswith("ldap:///CN=Contoso-CA") and url["result"] == "failed"
    # the reference infers (does not verify) certutil's code for an unreachable ldap:/// CDP
    assert url["error"]["name"] == "ERROR_DS_SERVER_DOWN" and url["error"]["verified"] is False
    assert url["seconds"] == "15"
    assert last["verdict"]["error"]["name"] == "CRYPT_E_REVOCATION_OFFLINE"
    assert last["verdict"]["error"]["code"] == "0x80092013"
    assert last["verdict"]["flags"] == ["CERT_REV_FAILED"]
    errors = [line for line in last["log"] if line["type"] == 3]
    assert any("Text=ERROR_WINHTTP_SECURE_FAILURE" in line["text"] for line in errors)
    assert any("CERT_REV_FAILED is set" in line["text"] for line in errors)
    assert "Lab:" in last["trace"] and "Clear" in last["fix"]

    verdict = events[-1][1]
    assert verdict["passed"] is False
    assert verdict["failure"]["error"]["name"] == "CRYPT_E_REVOCATION_OFFLINE"
    assert verdict["failure"]["error"]["code"] == "0x80092013"
    assert verdict["failure"]["n"] == "4" and verdict["simulated"] == "15"
    # the repair, not the trade-off of clearing the box
    assert verdict["fix_switches"]["changes"] == {"cdp": "ldap+http-internet"}


@pytest.mark.parametrize("twin", [{"cdp": "ldap+http-internet"}, {"site_crl": "off"}],
                         ids=["http-cdp-published", "crl-box-cleared"])
async def test_its_passing_twins_pass(client: TestClient[Any, Any], twin: dict[str, str]) -> None:
    events = await stream(client, {"switches": {**LDAP_INTERNET, **twin}})
    verdict = events[-1][1]
    assert verdict["passed"] is True and verdict["failure"] is None
    assert verdict["fix_switches"] is None
    last = [d for e, d in events if e == "step"][-1]
    assert last["outcome"] == "ok" and last["verdict"]["error"] is None
    if "cdp" in twin:
        # the base CRL after the LDAP time-out, then the delta CRL it names the same way
        assert [(u["result"], u["crl"]) for u in last["urls"]] == [
            ("failed", "base"), ("verified", "base"), ("failed", "delta"), ("verified", "delta")]


@pytest.mark.parametrize(("body", "key", "expected"), [
    ({"switches": {"site_crl": "maybe"}}, "site_crl", "one of on, off"),
    ({"switches": {"colour": "blue"}}, "colour", "a known switch"),
    ({"switches": {"cdp": 3}}, "cdp", "one of ldap"),
    ({"switches": ["on"]}, "switches", "an object"),
    ({"scene": 42}, "scene", "a scene number from 1 to 9"),
    ({"source": "file"}, "source", "'switches' (no scenario file"),
    ({"source": "disk"}, "source", "'switches' or 'file'"),
    ({"extra": 1}, "extra", "one of the body keys"),
    ([1, 2], "(body)", "a JSON object"),
])
async def test_bad_input_is_answered_400_naming_the_key(
        client: TestClient[Any, Any], body: Any, key: str, expected: str) -> None:
    for path in ("/api/preview", "/api/connect"):
        response = await client.post(path, json=body)
        assert response.status == 400
        got = await response.json()
        assert got["key"] == key and got["expected"].startswith(expected), got
        assert key in got["error"] and "\n" not in got["error"]
    response = await client.post("/api/connect", data=b"{not json",
                                 headers={"Content-Type": "application/json"})
    assert response.status == 400 and (await response.json())["key"] == "(body)"


async def test_only_this_machine_and_only_json(client: TestClient[Any, Any]) -> None:
    rebound = await client.get("/", headers={"Host": "evil.example:80"})
    assert rebound.status == 403 and (await rebound.json())["key"] == "Host"
    form = await client.post("/api/connect", data=b'{"switches": {}}',
                             headers={"Content-Type": "text/plain"})
    assert form.status == 415 and (await form.json())["key"] == "Content-Type"
    assert (await client.get("/", headers={"Host": "localhost:8080"})).status == 200


@pytest.mark.parametrize(("headers", "status"), [
    ({"Origin": "http://evil.example"}, 403),
    ({"Origin": "null"}, 403),
    ({"Origin": "http://127.0.0.1:1"}, 403),  # another port is another origin
    ({"Sec-Fetch-Site": "cross-site"}, 403),
    ({}, 200),  # curl, a script: no Origin
    ({"Origin": "SELF", "Sec-Fetch-Site": "same-origin"}, 200),  # the page itself
])
async def test_state_changing_requests_only_from_the_console_s_own_origin(
        client: TestClient[Any, Any], headers: dict[str, str], status: int) -> None:
    """A page elsewhere POSTing to the console (cross-site request forgery) is refused
    before anything runs, whatever its content type; the console's own page is served."""
    own = f"http://{client.host}:{client.port}"
    sent = {k: (own if v == "SELF" else v) for k, v in headers.items()}
    response = await client.post("/api/preview", json={"switches": {}}, headers=sent)
    assert response.status == status, await response.text()
    if status == 403:
        assert (await response.json())["key"] == "Origin"


async def test_a_scenario_file_runs_as_written(aiohttp_client: Any, certs_dir: Path) -> None:
    scenario = load_scenario(bundled_dir() / "seed4-internet-client-ldap-cdp-crl-on.toml")
    client = await aiohttp_client(make_app(certs=certs_dir, scenario=scenario))
    setup = await (await client.get("/api/setup")).json()
    assert setup["initial"] == "file" and setup["file"]["name"] == scenario.name
    events = await stream(client, {"source": "file"})
    assert events[0][1]["source"] == "file"
    assert events[0][1]["ccmsetup"][0]["line"] == SEED_LINE
    verdict = events[-1][1]
    assert verdict["expectations"] == {"met": 2, "total": 2}
    assert verdict["failure"]["error"]["code"] == "0x80092013"
    assert verdict["fix_switches"] is None  # a file's fix is its Fix text, not a switch


async def test_file_mode_takes_a_wildcard_san(aiohttp_client: Any, certs_dir: Path) -> None:
    # *.public.com covers IBCM-Internet.public.com (one label): the roaming client passes.
    scenario = load_scenario(bundled_dir() / "server-mp-cert-wildcard.toml")
    assert "*.public.com" in scenario.mp.cert.san
    client = await aiohttp_client(make_app(certs=certs_dir, scenario=scenario))
    events = await stream(client, {"source": "file"})
    verdict = events[-1][1]
    assert verdict["expectations"] == {"met": 5, "total": 5}
    assert verdict["passed"] is True and verdict["failure"] is None


async def test_lab_labels_are_marked(client: TestClient[Any, Any]) -> None:
    preset = PRESETS[1]  # seed §2: a public CA plan that allows one name
    events = await stream(client, {"switches": dict(preset.switches), "scene": preset.scene})
    assert "allows" in events[0][1]["refusal"]
    error = events[-1][1]["failure"]["error"]
    assert error["name"] == "LAB_CA_PLAN_NAME_LIMIT" and error["kind"] == "lab"
    assert events[-1][1]["fix_switches"] == preset.fix.as_json()


async def test_presets_reproduce_the_seed_scenes_and_their_twins(certs_dir: Path) -> None:
    """Each preset fails with what the scene's bundled file expects; its fix passes; the
    fix the console would suggest by itself fixes it too (one lab for all of them)."""
    assert [p.file for p in PRESETS] == [s.failing for s in SCENES]
    failing = [build_scenario(p.switches) for p in PRESETS]
    twins = [build_scenario({**p.switches, **p.fix.changes}) for p in PRESETS]
    run = await run_loaded([*failing, *twins], certs=certs_dir)
    results = run.scenarios
    suggested = []
    for preset, bad, good in zip(PRESETS, results[:len(PRESETS)], results[len(PRESETS):],
                                 strict=True):
        file = load_scenario(bundled_dir() / f"{preset.file}.toml")
        wanted = next(st.expect for c in file.clients for st in c.steps
                      if st.expect not in (None, "ok"))
        first = next(st for st in bad.steps if st.outcome == "fail")
        assert wanted.upper() in first.identifiers, (preset.scene, wanted, first.identifiers)
        assert all(st.outcome == "ok" for st in good.steps), (preset.scene, good.steps)
        fix = suggest_fix(preset.switches, first)
        assert fix is not None, preset.scene
        suggested.append(build_scenario({**preset.switches, **fix.changes}))
    fixed = await run_loaded(suggested, certs=certs_dir)
    for preset, result in zip(PRESETS, fixed.scenarios, strict=True):
        # one press may fix one cause of several: scene 1 roams with the CRL box cleared
        assert all(st.outcome == "ok" for st in result.steps), preset.scene


async def test_suggested_fixes_for_the_catalogue_switches(certs_dir: Path) -> None:
    cases = [({"mp_revoked": "yes"}, "CRYPT_E_REVOKED", {"mp_revoked": "no"}),
             ({"crl_expired": "yes"}, "CRYPT_E_REVOCATION_OFFLINE", {"crl_expired": "no"}),
             ({"names": "internet"}, "CERT_E_CN_NO_MATCH", {"names": "both"}),
             # repair first: publish the CRL where the client reaches it
             ({"domain": "workgroup", "cdp": "ldap", "nocrlcheck": "no"},
              "CRYPT_E_REVOCATION_OFFLINE", {"cdp": "ldap+http-internet"}),
             # already published there and still offline: only the trade-off is left
             ({"domain": "workgroup", "cdp": "ldap+http-internet", "nocrlcheck": "no",
               "crl_expired": "yes"}, "CRYPT_E_REVOCATION_OFFLINE", {"crl_expired": "no"})]
    configs = [{**defaults(), **change} for change, _, _ in cases]
    run = await run_loaded([build_scenario(c) for c in configs], certs=certs_dir)
    for config, (_, ident, fix), result in zip(configs, cases, run.scenarios, strict=True):
        first = next(st for st in result.steps if st.outcome == "fail")
        assert ident in first.identifiers
        got = suggest_fix(config, first)
        assert got is not None and dict(got.changes) == fix


def test_cli_bad_input_exits_2(tmp_path: Path, certs_dir: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ui", str(tmp_path / "nope.toml"), "--certs", str(certs_dir)]) == 2
    assert main(["ui", "--port", "70000", "--certs", str(certs_dir)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("ibcm-lab: error: ") for line in err)
    assert "nope.toml" in err[0] and "--port" in err[1]


# -- (b) a real browser --------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists()
                                        else None)
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]


def _browser_missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return ("Playwright's Python package is not installed (pip install playwright, or "
                "the [test] extra): the browser tests of the training console are skipped")
    if CHROMIUM is None:
        return ("Debian's chromium is not installed (apt-get install chromium): the browser "
                "tests of the training console are skipped")
    return None


browser_test = pytest.mark.skipif(_browser_missing() is not None,
                                  reason=_browser_missing() or "")


@pytest.fixture(scope="module")
def console_url(certs_dir: Path) -> Iterator[str]:
    """``python -m lab ui --port 0`` in a subprocess; its printed address."""
    proc = subprocess.Popen([sys.executable, "-m", "lab", "ui", "--port", "0", "--certs",
                             str(certs_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:\d+/", line)
    if found is None:
        proc.kill()
        raise AssertionError(f"ibcm-lab ui printed {line!r}; stderr: {proc.communicate()[1]}")
    try:
        yield found.group(0)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)  # a hang guard, not a speed check
        assert proc.returncode == 130, err  # stopped by Ctrl-C
        assert "Traceback" not in err and "Stopped." in out


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, console_url: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(console_url) else outside.append(r.url))
    page.set_default_timeout(120_000)  # a hang guard: the page waits for outcomes
    page.goto(console_url)
    page.wait_for_selector("body[data-ready=true]")
    yield page
    context.close()
    assert not problems, problems
    assert not outside, f"the page loaded from elsewhere: {outside}"


@browser_test
def test_browser_flip_switches_connect_fail_then_fix(page: Any) -> None:
    assert page.evaluate("getComputedStyle(document.body).fontSize") == "22px"
    assert page.locator("fieldset > legend").count() == 5
    assert page.get_by_label("Clients check the CRL for site systems").is_checked()
    page.select_option("#sw-cdp", "ldap")
    page.get_by_label("Where the client is").select_option("internet")
    # the keyboard: Space on the focused checkbox clears /NoCRLCheck from the line
    page.focus("#sw-nocrlcheck")
    page.keyboard.press("Space")
    page.locator("#ccmsetup").filter(has_not_text="/NoCRLCheck").wait_for()
    assert page.inner_text("#ccmsetup").startswith("ccmsetup.exe /UsePKICert SMSSITECODE=P01")
    assert not page.is_checked("#sw-nocrlcheck")
    # ...and back: without /NoCRLCheck the install checks the CRL on the intranet and keeps it
    # in the client's URL cache, so the internet step works from the cache (reference §5.2b).
    page.keyboard.press("Space")
    page.locator("#ccmsetup").filter(has_text="/NoCRLCheck").wait_for()
    assert page.is_checked("#sw-nocrlcheck")
    # Connect with the keyboard too
    page.focus("#connect")
    page.keyboard.press("Enter")
    page.wait_for_selector("#verdict.fail")
    verdict = page.inner_text("#verdict")
    assert "FAILED" in verdict and "CRYPT_E_REVOCATION_OFFLINE" in verdict
    assert "0x80092013" in verdict
    failing = page.locator("#timeline li.step.fail")
    assert failing.count() == 1 and "policy from the internet" in failing.inner_text()
    assert "ERROR_DS_SERVER_DOWN" in failing.locator("table.urls").inner_text()
    assert "lab's model [I]" in failing.inner_text()
    red = failing.locator("table.cmtrace tr.t3").first
    assert "CERT_REV_FAILED" in failing.locator("table.cmtrace").inner_text()
    colour = red.locator("td").first.evaluate("e => getComputedStyle(e).backgroundColor")
    r, g, b = (int(x) for x in re.findall(r"\d+", colour)[:3])
    assert r > 200 and g < 160 and b < 160, colour  # CMTrace: errors on red
    # the ok steps are folded, the failing one open
    assert page.locator("#timeline li.step.ok details[open]").count() == 0
    assert page.locator("#timeline li.step.fail details[open]").count() == 1

    # the repair is offered, not the trade-off of clearing the CRL box
    assert "Publish the CRL over HTTP on the internet" in page.inner_text("#fix-what")
    page.click("#fix")
    page.wait_for_selector("#verdict.pass")
    assert "CONNECTED" in page.inner_text("#verdict")
    assert page.is_checked("#sw-site_crl")
    # the four steps of the plan and ccmexec's two after the install
    assert page.locator("#timeline li.step.ok").count() == 6
    assert "step 1a: register (automatic, ccmexec start-up) from the intranet" in page.inner_text(
        "#timeline")


@browser_test
def test_browser_preset_scene_then_its_twin(page: Any) -> None:
    page.get_by_role("button", name=re.compile(r"^Scene 3, seed §3")).click()
    page.locator("#scene-note").filter(has_text="Scene 3").wait_for()
    assert "SMSMP=IBCM-Intra.contoso.local" in page.inner_text("#ccmsetup")
    assert page.get_attribute("button[data-scene='3']", "aria-pressed") == "true"
    page.click("#connect")
    page.wait_for_selector("#verdict.fail")
    verdict = page.inner_text("#verdict")
    assert "CCM_E_BAD_HTTP_STATUS_CODE" in verdict and "HTTP 403.4" in verdict
    assert page.locator("#timeline li.step.fail table.cmtrace tr.t3").count() >= 2
    # F applies the fix (the scene's passing twin) from the keyboard and runs again
    page.focus("#connect")
    page.keyboard.press("f")
    page.wait_for_selector("#verdict.pass")
    assert "SMSMP=https://IBCM-Intra.contoso.local" in page.inner_text("#ccmsetup")
    assert page.is_checked("#sw-smsmp")


@browser_test
def test_browser_every_seed_scene_gives_the_verdict_of_ibcm_lab_run(page: Any,
                                                                   certs_dir: Path) -> None:
    """Every seed scene end to end in the browser: its preset fails with the error code
    ``ibcm-lab run`` gives for the scene's bundled file, and the fix passes, as the scene's
    bundled passing twin does."""
    names = sorted({n for s in SCENES for n in (s.failing, s.passing)})
    done = subprocess.run(
        [sys.executable, "-m", "lab", "run", *(str(bundled_dir() / f"{n}.toml") for n in names),
         "--format", "json", "--certs", str(certs_dir)],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr  # every file meets its expectations
    results = json.loads(done.stdout)
    assert all(r["passed"] for r in results)
    by_name = {r["scenario"]: [st for c in r["clients"] for st in c["steps"]] for r in results}
    for number, scene in enumerate(SCENES, start=1):
        first = next(st for st in by_name[scene.failing] if st["outcome"] == "fail")
        # the twin file's client that does what the preset does gets through
        assert any(st["outcome"] == "ok" for st in by_name[scene.passing]), scene.passing
        page.get_by_role("button", name=re.compile(rf"^Scene {number}, ")).click()
        page.locator("#scene-note").filter(has_text=f"Scene {number} ").wait_for()
        page.click("#connect")
        page.wait_for_selector("#verdict.fail")
        verdict = page.inner_text("#verdict")
        if first["error"] is not None:
            assert first["error"]["name"] in verdict, (scene.failing, first["error"], verdict)
        else:
            assert any(i in verdict for i in first["identifiers"]), (scene.failing, verdict)
        if first["http_status"] and first["http_status"] != "200":
            assert f"HTTP {first['http_status']}" in verdict, (scene.failing, verdict)
        page.click("#fix")
        page.wait_for_selector("#verdict.pass")
        assert "CONNECTED" in page.inner_text("#verdict"), scene.passing
