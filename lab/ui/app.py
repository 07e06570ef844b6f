"""The training console's web application: the page, its assets and a small JSON API, all
served by aiohttp on 127.0.0.1, with the lab's servers running beside it.

Routes::

    GET  /                 the page (lab/ui/static/index.html)
    GET  /static/{name}    ui.css, ui.js (nothing else is served: no CDN, no fonts)
    GET  /api/setup        the switches, the fieldsets, the seed's scenes as presets, the
                           scenario file given on the command line (if any)
    POST /api/preview      {"switches": {...}} or {"source": "file"} -> the ccmsetup line(s)
                           and the topology (zones, machines, which name answers from where)
    POST /api/connect      the same body (+ "scene": N) -> text/event-stream: the client's
                           steps run for real against the running lab, one event per step as
                           it finishes, then the verdict

Bad input (an unknown switch, a value a switch does not take, a body that is not a JSON
object) is answered 400 with ``{"error": ..., "key": ..., "expected": ...}``.

Streaming: ``/api/connect`` is a Server-Sent Events stream (an aiohttp ``StreamResponse``).
The scenario is staged on the running lab (:func:`lab.run.stage_scenario`) and each client
is driven one step at a time with :class:`lab.run.ClientDriver`, the engine ``ibcm-lab run``
uses: every step is a real TLS handshake with the real certificates, real CRL fetches, real
HTTP requests to the mock MP. Events: ``start`` (what will run), ``step-start``, ``step``
(the finished step: resolution, handshake, CDP URLs, verdict, CMTrace lines, why, fix),
``verdict``, and ``error`` if the run could not be done. Runs are serialised (one lab).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import tempfile
import time
import webbrowser
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web

from lab import __version__
from lab.errors import LabError, SwitchError, UsageError
from lab.pki.cache import PKICache
from lab.protocols.network import LOOPBACK
from lab.results.verdicts import StepResult
from lab.run import ClientDriver, stage_scenario
from lab.scenario.loader import load_scenario
from lab.scenario.model import Scenario
from lab.scenario.timeline import schedule
from lab.servers.harness import RunningLab, start_lab
from lab.ui.switches import (
    GROUPS,
    PRESETS,
    SWITCHES,
    build_scenario,
    defaults,
    parse_switches,
    scene_fix,
    suggest_fix,
)
from lab.ui.timeline import run_verdict, step_event, step_start
from lab.ui.topology import topology

__all__ = ["STATIC_FILES", "ConsoleState", "make_app", "run_console", "serve_console"]

STATIC_FILES: Mapping[str, str] = {
    "index.html": "text/html",
    "ui.css": "text/css",
    "ui.js": "text/javascript",
}
"""Everything the page loads; all of it is served from the package."""

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
"""The page may load nothing from anywhere but the console itself."""

Send = Callable[[str, Mapping[str, Any]], Awaitable[None]]
NOTES = logging.getLogger("ibcm-lab")


@dataclass
class ConsoleState:
    """What the console's handlers share: the running lab, the key cache, the file."""

    certs: str
    scenario_file: Scenario | None = None
    cache: PKICache | None = None
    lab: RunningLab | None = None
    """The lab's servers, while the app runs."""
    scratch: Path | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    runs: int = 0


STATE = web.AppKey("state", ConsoleState)


def _static(name: str) -> bytes:
    return (files("lab.ui") / "static" / name).read_bytes()


def _bad(error: SwitchError) -> web.Response:
    return web.json_response({"error": str(error), "key": error.key,
                              "expected": error.expected}, status=400)


async def _body(request: web.Request) -> Mapping[str, Any]:
    try:
        raw = await request.json() if request.can_read_body else {}
    except ValueError as e:
        raise SwitchError("(body)", "a JSON object", f"unparsable JSON: {e}") from None
    if not isinstance(raw, Mapping):
        raise SwitchError("(body)", "a JSON object", type(raw).__name__)
    known = {"source", "switches", "scene"}
    for key in raw:
        if key not in known:
            raise SwitchError(str(key), "one of the body keys " + ", ".join(sorted(known)))
    return raw


@dataclass(frozen=True)
class Choice:
    scenario: Scenario
    switches: dict[str, str] | None
    """None when the scenario file runs as written."""
    scene: int | None


def _choice(body: Mapping[str, Any], state: ConsoleState) -> Choice:
    source = body.get("source", "switches")
    if source not in ("switches", "file"):
        raise SwitchError("source", "'switches' or 'file'", source)
    scene = body.get("scene")
    if scene is not None and (isinstance(scene, bool) or not isinstance(scene, int)
                              or not 1 <= scene <= len(PRESETS)):
        raise SwitchError("scene", f"a scene number from 1 to {len(PRESETS)}, or null", scene)
    if source == "file":
        if state.scenario_file is None:
            raise SwitchError("source", "'switches' (no scenario file was given to "
                                        "ibcm-lab ui)", source)
        return Choice(state.scenario_file, None, None)
    switches = parse_switches(body.get("switches"))
    return Choice(build_scenario(switches), switches, scene)


def _lines(scenario: Scenario) -> list[dict[str, str]]:
    return [{"client": c.name, "line": c.ccmsetup.raw} for c in scenario.clients]


def _describe(choice: Choice) -> dict[str, Any]:
    s = choice.scenario
    return {"source": "switches" if choice.switches is not None else "file",
            "name": s.name, "title": s.info.title, "file": s.file,
            "ccmsetup": _lines(s), "topology": topology(s),
            "site": {"code": s.site.code, "check_crl": s.site.check_crl,
                     "https_only": s.site.https_only}}


# -- handlers ----------------------------------------------------------------------------------

LOCAL_HOSTS = ("127.0.0.1", "localhost")


@web.middleware
async def only_this_machine(request: web.Request,
                            handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                            ) -> web.StreamResponse:
    """Answer only requests addressed to this machine's loopback name (a page elsewhere that
    rebinds its DNS name to 127.0.0.1 gets nothing), refuse state-changing requests from other
    origins, and take API bodies only as JSON (a cross-site form cannot start runs)."""
    host = (request.host or "").rsplit(":", 1)[0].strip("[]").lower()
    if host not in LOCAL_HOSTS:
        return web.json_response({"error": f"Host: expected 127.0.0.1 or localhost, got "
                                           f"{host[:80]!r}", "key": "Host",
                                  "expected": "127.0.0.1 or localhost"}, status=403)
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        # A state-changing request from a page of another origin (a browser always sends
        # Origin on a POST; curl sends none) is refused, whatever its content type.
        origin = request.headers.get("Origin")
        own = f"{request.scheme}://{request.host}"
        if (origin is not None and origin != own) or \
                request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin",
                                                                             "none"):
            return web.json_response({"error": f"Origin: expected {own}, got "
                                               f"{(origin or 'another site')[:80]!r}",
                                      "key": "Origin", "expected": own}, status=403)
    if request.method == "POST" and request.can_read_body \
            and request.content_type != "application/json":
        return web.json_response({"error": "Content-Type: expected application/json, got "
                                           f"{request.content_type[:80]!r}",
                                  "key": "Content-Type", "expected": "application/json"},
                                 status=415)
    return await handler(request)


async def index(request: web.Request) -> web.Response:
    return web.Response(body=_static("index.html"), content_type="text/html",
                        charset="utf-8", headers={"Content-Security-Policy": CSP,
                                                  "Cache-Control": "no-store"})


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC_FILES or name == "index.html":
        raise web.HTTPNotFound(text=f"no such file: {name}")
    return web.Response(body=_static(name), content_type=STATIC_FILES[name], charset="utf-8",
                        headers={"Cache-Control": "no-store"})


async def no_icon(request: web.Request) -> web.Response:
    return web.Response(status=204)  # the console has no icon; say so, not 404


async def setup(request: web.Request) -> web.Response:
    state = request.app[STATE]
    file = state.scenario_file
    return web.json_response({
        "version": __version__,
        "groups": [{"key": k, "legend": v} for k, v in GROUPS.items()],
        "switches": [s.as_json() for s in SWITCHES],
        "defaults": defaults(),
        "presets": [p.as_json() for p in PRESETS],
        "file": None if file is None else {"name": file.name, "title": file.info.title,
                                           "path": file.file},
        "initial": "file" if file is not None else "switches",
    })


async def preview(request: web.Request) -> web.Response:
    try:
        choice = _choice(await _body(request), request.app[STATE])
    except SwitchError as e:
        return _bad(e)
    return web.json_response(_describe(choice))


async def connect(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        choice = _choice(await _body(request), state)
    except SwitchError as e:
        return _bad(e)
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store",
        "X-Accel-Buffering": "no"})
    await response.prepare(request)

    async def send(event: str, data: Mapping[str, Any]) -> None:
        payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        await response.write(f"event: {event}\ndata: {payload}\n\n".encode())

    try:
        async with state.lock:
            try:
                await run_streaming(state, choice, send)
            except LabError as e:
                await send("error", {"message": str(e)})
            except ConnectionError:
                raise
            except Exception as e:  # a lab bug: one line on the page and the terminal
                message = f"internal error: {type(e).__name__}: {e} (please report it)"
                NOTES.error("ui: %s", message)
                await send("error", {"message": message})
        await response.write_eof()
    except ConnectionError:
        pass  # the page went away (reloaded, closed): the run stops here
    return response


async def run_streaming(state: ConsoleState, choice: Choice, send: Send) -> None:
    """Stage ``choice``'s scenario on the running lab and drive each client a step at a
    time, sending each step to the page as soon as it is judged."""
    lab, cache, scratch = state.lab, state.cache, state.scratch
    if lab is None or cache is None or scratch is None:
        raise UsageError("the lab is not running")
    started = time.perf_counter()
    scenario = choice.scenario
    state.runs += 1
    deployment = await stage_scenario(lab, scenario, cache)
    refusal = deployment.pki.mp_refusal
    await send("start", {
        **_describe(choice), "run": state.runs,
        "refusal": refusal.message if refusal is not None else None,
        "faults": list(lab.active_faults),
        "plan": [step_start(c.name, i, st.action.value, st.location.value)
                 for c in scenario.clients for i, st in enumerate(c.steps)],
    })
    results: list[StepResult] = []
    async with contextlib.AsyncExitStack() as stack:
        drivers = [await stack.enter_async_context(ClientDriver(lab, deployment, spec, scratch))
                   for spec in scenario.clients]
        # Every step at its time (at/after), in time order, as ibcm-lab run runs them.
        for planned in schedule(scenario.clients):
            driver = drivers[planned.client]
            spec, i = driver.spec, planned.index
            step = spec.steps[i]
            await send("step-start", step_start(spec.name, i, step.action.value,
                                                step.location.value))
            result = await driver.step(step, deployment.clock.start + planned.offset)
            # ccmexec's automatic work after an install follows as steps of their own.
            for shown in (result, *result.followups):
                results.append(shown)
                await send("step", step_event(shown, scenario=scenario,
                                              network=deployment.network, hosts=lab.hosts))
    fix = None
    failed = next((r for r in results if r.outcome == "fail"), None)
    if choice.switches is not None and failed is not None:
        found = scene_fix(choice.scene, choice.switches) or suggest_fix(choice.switches,
                                                                         failed)
        fix = found.as_json() if found is not None else None
    await send("verdict", run_verdict(results, wall=timedelta(seconds=time.perf_counter()
                                                               - started),
                                      fix=fix, faults=lab.active_faults))


# -- the application -----------------------------------------------------------------------------

UI_JOURNAL_WINDOW = 1000
"""Entries of each server journal the console's lab keeps in memory."""


async def _lab_context(app: web.Application) -> AsyncIterator[None]:
    """Start the lab's servers with the console and stop them with it."""
    state = app[STATE]
    state.cache = PKICache(state.certs)
    with tempfile.TemporaryDirectory(prefix="ibcm-lab-ui-") as scratch:
        # a window of each server journal, not all of it: the console shows the steps it
        # runs, and a client looping on the lab's MP must not grow the console's memory
        async with start_lab(scratch=scratch, journal_window=UI_JOURNAL_WINDOW) as lab:
            state.lab, state.scratch = lab, Path(scratch)
            try:
                yield
            finally:
                state.lab = None


def make_app(*, certs: str | Path = "certs", scenario: Scenario | None = None
             ) -> web.Application:
    """The console's aiohttp application; the lab starts and stops with it."""
    app = web.Application(middlewares=[only_this_machine])
    app[STATE] = ConsoleState(certs=str(certs), scenario_file=scenario)
    app.cleanup_ctx.append(_lab_context)
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_get("/api/setup", setup)
    app.router.add_post("/api/preview", preview)
    app.router.add_post("/api/connect", connect)
    return app


async def serve_console(*, certs: str, scenario: Scenario | None, port: int,
                        open_browser: bool, out: TextIO) -> int:
    """Run the console on 127.0.0.1:``port`` (0: any free port) until Ctrl-C or SIGTERM;
    the number of the signal that stopped it."""
    app = make_app(certs=certs, scenario=scenario)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, LOOPBACK, port)
        try:
            await site.start()
        except OSError as e:
            raise UsageError(f"--port {port}: cannot listen on {LOOPBACK}:{port} "
                             f"({e.strerror or e})") from None
        url = f"http://{LOOPBACK}:{runner.addresses[0][1]}/"
        what = f"the scenario {scenario.name}" if scenario is not None else "the switchboard"
        out.write(f"ibcm-lab ui: the training console ({what}) is at {url}\n"
                  "Open it in a browser on this machine. Press Ctrl-C to stop.\n")
        out.flush()
        if open_browser:
            opened = await asyncio.get_running_loop().run_in_executor(None, webbrowser.open, url)
            if not opened:
                NOTES.warning("no browser could be opened here: open %s yourself", url)
        stop = asyncio.Event()
        stopped_by: list[int] = []
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            stopped_by.append(signum)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, on_signal, int(sig))
        await stop.wait()
    finally:
        await runner.cleanup()
    out.write("Stopped.\n")
    out.flush()
    return stopped_by[0] if stopped_by else int(signal.SIGINT)


def run_console(scenario_path: str | Path | None, *, certs: str, port: int = 0,
                open_browser: bool = False, out: TextIO = sys.stdout) -> int:
    """Load the scenario file (if any) and run the console until Ctrl-C (see
    :func:`serve_console`); UsageError for a port outside 0-65535. The number of the signal
    that stopped it."""
    scenario = load_scenario(scenario_path) if scenario_path is not None else None
    if not 0 <= port <= 65535:
        raise UsageError(f"--port expects a port number from 0 to 65535 (0: any free port), "
                         f"got {port}")
    return asyncio.run(serve_console(certs=certs, scenario=scenario, port=port,
                                     open_browser=open_browser, out=out))
