"""``ibcm-lab demo`` (lab/tools/demo.py): every scene with its evidence, the plain and the terminal
rendering, and ``--pause`` on a real pseudo-terminal and without one.

The pause tests run the installed ``ibcm-lab`` console script on a pseudo-terminal from the
standard library (``os.openpty``; no pexpect needed) that is the child's controlling
terminal, so Enter, ``q`` and Ctrl-C travel through a real line discipline as a person's
keys would.
"""

from __future__ import annotations

import asyncio
import os
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from labtest import plain_console, terminal

from lab.results.runs import RunResult
from lab.run import run_loaded
from lab.scenario.loader import load_all
from lab.tools.demo import SCENES, demo_paths, present, render_demo

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SCENE_TITLE = re.compile(r"^Scene (\d+) of 9 - ", flags=re.MULTILINE)
NO_REQUEST = "log      (no CCMHTTP line: the client sent no HTTP request in this step)"
TRACE_HEADING = "certutil-style trace of the failing step's revocation check:"


@pytest.fixture(autouse=True)
def _neutral_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS",
                 "LINES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")


@pytest.fixture(scope="module")
def run(certs_dir: Path) -> RunResult:
    return asyncio.run(run_loaded(load_all(demo_paths()), certs=certs_dir))


@pytest.fixture(scope="module")
def demo_text(run: RunResult) -> str:
    return render_demo(run)


def scenes(text: str) -> dict[int, str]:
    """Scene number -> its block of the plain demo."""
    starts = [(int(m.group(1)), m.start()) for m in SCENE_TITLE.finditer(text)]
    ends = [s for _, s in starts[1:]] + [len(text)]
    return {n: text[start:end] for (n, start), end in zip(starts, ends, strict=True)}


class FakeTty:
    """Standard input that claims to be a terminal and gives scripted lines, then EOF."""

    def __init__(self, *lines: str) -> None:
        self.lines = list(lines)
        self.reads = 0

    def isatty(self) -> bool:
        return True

    def readline(self) -> str:
        self.reads += 1
        return self.lines.pop(0) if self.lines else ""


class InterruptingTty(FakeTty):
    def readline(self) -> str:
        raise KeyboardInterrupt


class NeverRead(FakeTty):
    """Standard input that is not a terminal and must not be read."""

    def isatty(self) -> bool:
        return False

    def readline(self) -> str:
        raise AssertionError("present() read a non-terminal standard input")


def shown(text: str) -> list[int]:
    """The scene numbers in terminal output (a scene's rule follows the erased prompt)."""
    return [int(n) for n in re.findall(r"Scene (\d+) of 9 - ", text)]


# -- the plain demo ----------------------------------------------------------------------------


def test_every_scene_in_the_seed_order(demo_text: str) -> None:
    assert "\x1b" not in demo_text
    assert demo_text.startswith("ibcm-lab demo: the seed document, reproduced on loopback\n\n")
    blocks = scenes(demo_text)
    assert list(blocks) == list(range(1, 10))
    for n, sc in enumerate(SCENES, start=1):
        block = blocks[n]
        assert block.startswith(f"Scene {n} of 9 - {sc.section}: {sc.title}\n")
        for heading in ("  What was set up:", "  What the clients did:", "  Evidence:",
                        "  Why:", "  The fix:", f"  Passing twin ({sc.passing}): {sc.change}",
                        "  Verdict: every expectation met in both scenarios."):
            assert heading in block, (n, heading)
    assert [sc.section for sc in SCENES][::3] == ["seed §2", "seed §3", "seed §4"]
    assert demo_text.rstrip().splitlines()[-1].startswith(
        "15/15 scenarios behaved as the seed says")


def test_every_scene_shows_its_ccmhttp_line(demo_text: str) -> None:
    blocks = scenes(demo_text)
    for n in (1, 2, 3, 5, 7, 8, 9):
        assert re.search(r"^    log      (CcmMessaging|ccmsetup)\.log: (Lab: )?\[CCMHTTP\] ERROR: "
                         r"URL=https?://",
                         blocks[n], flags=re.MULTILINE), n
    # Scenes 4 and 6 end before any request: the demo says so instead of showing nothing.
    for n in (4, 6):
        assert "[CCMHTTP]" not in blocks[n]
        assert f"    {NO_REQUEST}" in blocks[n]
    assert ("    error    0x87D00269 (Required management point not found): "
            "IBCM-Intra.contoso.local accepts HTTPS only") in blocks[4]
    assert "Text=ERROR_WINHTTP_SECURE_FAILURE" in blocks[1]
    assert "StatusCode=403" in blocks[3]


def test_section_4_scenes_show_the_certutil_trace(demo_text: str) -> None:
    blocks = scenes(demo_text)
    for n in (7, 8):
        block = blocks[n]
        assert f"    {TRACE_HEADING}" in block
        trace = block[block.index(TRACE_HEADING):block.index("  Why:")]
        assert trace.count('        Failed "CDP" Time: 15\n') == 2
        assert "          [0.0] ldap:///CN=Contoso-CA,CN=ca01,CN=CDP," in trace
        assert "          [0.1] http://ca01.contoso.local/CertEnroll/Contoso-CA.crl\n" in trace
        assert "(-2146885613 CRYPT_E_REVOCATION_OFFLINE)" in trace
        # the log line comes before the trace
        assert block.index("Options=63, Code=12175") < block.index(TRACE_HEADING)
    assert '        Failed "CDP" Time: 15\n' in blocks[9]  # the workgroup client's LDAP CDP
    for n in range(1, 7):  # no revocation check in the failing step: no trace
        assert TRACE_HEADING not in blocks[n], n


def test_single_scene(run: RunResult) -> None:
    text = render_demo(run, 7)
    assert SCENE_TITLE.findall(text) == ["7"]
    assert 'Failed "CDP" Time: 15' in text


# -- present -------------------------------------------------------------------------------------


@pytest.mark.parametrize("scene", [None, 7])
@pytest.mark.parametrize("pause", [False, True])
def test_present_off_a_terminal_is_the_plain_demo(run: RunResult, scene: int | None,
                                                  pause: bool) -> None:
    console, buf = plain_console(110)
    assert present(run, scene, pause, console=console, stdin=FakeTty("q\n")) is True
    assert buf.getvalue() == render_demo(run, scene)


def test_present_with_stdin_not_a_terminal_never_reads(run: RunResult) -> None:
    console, buf = terminal(110)
    assert present(run, None, True, console=console, stdin=NeverRead()) is True
    text = ANSI.sub("", buf.getvalue())
    assert "Press Enter" not in text
    assert shown(text) == list(
        range(1, 10))


def test_present_on_a_terminal_is_coloured(run: RunResult) -> None:
    console, buf = terminal(110)
    present(run, 7, console=console)
    raw = buf.getvalue()
    assert ANSI.search(raw)
    assert "\x1b[1;31mFAIL CRYPT_E_REVOCATION_OFFLINE 0x80092013\x1b[0m" in raw
    assert '\x1b[31m        Failed "CDP" Time: 15\x1b[0m' in raw
    text = ANSI.sub("", raw)
    lines = text.splitlines()
    assert any(line.startswith("Scene 7 of 9 - seed §4: The CRL box and an internet client ─")
               for line in lines)
    assert any("[CCMHTTP] ERROR: URL=https://IBCM-Internet.public.com/ccm_system/request, "
               "Port=443, Options=63, Code=12175, Text=ERROR_WINHTTP_SECURE_FAILURE" in line
               for line in lines)
    assert sum(line == '        Failed "CDP" Time: 15' for line in lines) == 2
    for title in ("─ Why ─", "─ The fix ─"):
        assert any(title in line for line in lines), title
    assert "  Verdict: every expectation met in both scenarios." in lines
    assert lines[-1].startswith("15/15 scenarios behaved as the seed says")


def test_present_no_color_on_a_terminal_is_plain(run: RunResult,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    console, buf = terminal(110)
    stdin = FakeTty("\n", "q\n")
    assert present(run, None, True, console=console, stdin=stdin) is False
    out = buf.getvalue()
    assert "\x1b" not in out
    assert "Press Enter for scene 2 of 9, q to quit " in out
    without_prompt = out.replace("Press Enter for scene 2 of 9, q to quit ", "")
    assert without_prompt.startswith(render_demo(run).split("Scene 3 of 9")[0])
    assert "Press Enter for scene 3 of 9, q to quit Stopped after scene 2 of 9.\n" in out


def test_pause_waits_between_scenes_and_q_quits(run: RunResult) -> None:
    console, buf = terminal(110)
    stdin = FakeTty("\n", "q\n")
    assert present(run, None, True, console=console, stdin=stdin) is False
    assert stdin.reads == 2
    text = ANSI.sub("", buf.getvalue())
    assert shown(text) == [1, 2]
    assert text.index("Press Enter for scene 2 of 9, q to quit") < text.index("Scene 2 of 9")
    assert "Press Enter for scene 3 of 9, q to quit" in text
    assert "Stopped after scene 2 of 9." in text
    assert text.rstrip().splitlines()[-1].startswith("15/15 scenarios behaved as the seed says")


def test_pause_to_the_end(run: RunResult) -> None:
    console, buf = terminal(110)
    stdin = FakeTty(*["\n"] * 8)
    assert present(run, None, True, console=console, stdin=stdin) is True
    assert stdin.reads == 8  # no prompt after the last scene
    text = ANSI.sub("", buf.getvalue())
    assert "Press Enter for scene 9 of 9" in text and "scene 10" not in text


@pytest.mark.parametrize("stdin", [InterruptingTty(), FakeTty()], ids=["ctrl-c", "ctrl-d"])
def test_ctrl_c_or_end_of_input_at_a_pause_stops_cleanly(run: RunResult,
                                                         stdin: FakeTty) -> None:
    console, buf = terminal(110)
    assert present(run, None, True, console=console, stdin=stdin) is False
    text = ANSI.sub("", buf.getvalue())
    assert shown(text) == [1]
    assert "Stopped after scene 1 of 9." in text


def test_single_scene_does_not_pause(run: RunResult) -> None:
    console, _ = terminal(110)
    stdin = FakeTty()
    assert present(run, 3, True, console=console, stdin=stdin) is True
    assert stdin.reads == 0


# -- real processes --------------------------------------------------------------------------


def _exe() -> str:
    exe = shutil.which("ibcm-lab", path=str(Path(sys.executable).parent))
    assert exe is not None, "the ibcm-lab console script is not installed next to python"
    return exe


def _env(**extra: str) -> dict[str, str]:
    drop = {"IBCM_LAB_DEBUG", "IBCM_LAB_CERTS", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE",
            "TTY_INTERACTIVE", "COLUMNS", "LINES"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return env


# Make the pseudo-terminal the child's controlling terminal (so Ctrl-C is a real SIGINT from
# the line discipline), then become ibcm-lab.
CTTY = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
        "os.execv(sys.argv[1], sys.argv[1:])")


class Pty:
    """``ibcm-lab ARGS`` on a 120x40 pseudo-terminal."""

    def __init__(self, *args: str) -> None:
        import fcntl
        import struct
        import termios

        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", CTTY, _exe(), *args], stdin=slave, stdout=slave,
                stderr=slave, env=_env(TERM="xterm-256color"), start_new_session=True)
        finally:
            os.close(slave)
        self.raw = b""

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw.decode("utf-8", "replace"))

    def _read(self, timeout: float) -> str:
        """Read what the terminal shows: ``data``, ``idle`` (nothing within ``timeout``) or
        ``closed`` (the child is gone)."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return "idle"
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the child is gone and the terminal closed
            return "closed"
        self.raw += chunk
        return "data" if chunk else "closed"

    def expect(self, needle: str, timeout: float = 120.0) -> str:
        """Read until ``needle`` shows; ``timeout`` only guards against a hang."""
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            if time.monotonic() > deadline or self._read(0.1) == "closed":
                raise AssertionError(f"{needle!r} not seen; got:\n{self.text[-2000:]}")
        return self.text

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = 120.0) -> int:
        """The exit code, once the child has exited and its last output is read (``timeout``
        only guards against a hang)."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"still running after {timeout} s:\n{self.text[-2000:]}")
            self._read(0.05)
        while self._read(0.05) == "data":
            pass
        return self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


posix_only = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")


@posix_only
def test_pause_on_a_real_terminal(certs_dir: Path) -> None:
    term = Pty("demo", "--pause", "--certs", str(certs_dir))
    try:
        seen = term.expect("Press Enter for scene 2 of 9, q to quit")
        assert "Scene 1 of 9 - seed §2: The MP's certificate needs two names" in seen
        assert "Scene 2 of 9" not in seen
        assert "\x1b[" in term.raw.decode()  # rich, in colour, on a terminal
        assert term._read(0.5) == "idle"  # it really waits
        assert "Scene 2 of 9" not in term.text and term.proc.poll() is None

        term.send(b"\r")  # Enter
        seen = term.expect("Press Enter for scene 3 of 9, q to quit")
        assert "Scene 2 of 9 - seed §2: A public CA plan that allows one name" in seen
        assert "Scene 3 of 9" not in seen

        term.send(b"q\r")
        assert term.wait() == 0
        text = term.text
        assert "Stopped after scene 2 of 9." in text
        assert "15/15 scenarios behaved as the seed says" in text
        assert "Scene 3 of 9" not in text and "Traceback" not in text
    finally:
        term.close()


@posix_only
def test_ctrl_c_at_a_pause_exits_with_the_result(certs_dir: Path) -> None:
    term = Pty("demo", "--pause", "--certs", str(certs_dir))
    try:
        term.expect("Press Enter for scene 2 of 9, q to quit")
        term.send(b"\x03")  # Ctrl-C: SIGINT from the terminal
        assert term.wait() == 0
        assert "Stopped after scene 1 of 9." in term.text
        assert "Traceback" not in term.text and "interrupted" not in term.text
    finally:
        term.close()


def test_pause_without_a_terminal_does_not_wait(certs_dir: Path) -> None:
    proc = subprocess.run([_exe(), "demo", "--pause", "--certs", str(certs_dir)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                          env=_env(), check=False)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert "\x1b" not in proc.stdout and "Press Enter" not in proc.stdout
    assert SCENE_TITLE.findall(proc.stdout) == [str(n) for n in range(1, 10)]
    assert proc.stdout.count('Failed "CDP" Time: 15') == 5
    assert proc.stdout.rstrip().splitlines()[-1].startswith(
        "15/15 scenarios behaved as the seed says")
