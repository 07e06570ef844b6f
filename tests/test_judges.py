"""The two judges of the MP's certificate: the Windows engine and the OpenSSL cross-check.

Both judge at the client's own time (``clock_skew`` included), and a disagreement between
them never changes a step's outcome silently: the Windows engine's verdict is the outcome,
and the disagreement is reported (``agrees`` false, a JUDGES DISAGREE note, the text report's
evidence). Real labs, real handshakes; a disagreement is induced by giving the two judges
different trust stores (the engine's anchors and OpenSSL's PEM are normally the same roots).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import trustme
from labtest import SCENARIOS

from lab.client import tlstime
from lab.pki.cache import PKICache
from lab.report.text import render_step
from lab.results.verdicts import StepResult
from lab.run import ClientDriver, staged_lab
from lab.scenario.loader import load_scenario_text

RENEWED = SCENARIOS / "server-mp-cert-renewed.toml"
EXPIRED = SCENARIOS / "server-mp-cert-expired.toml"


async def install(cache: PKICache, tmp_path: Path, source: Path, *,
                  foreign_openssl_roots: bool = False,
                  no_engine_anchors: bool = False) -> StepResult:
    scenario = load_scenario_text(source.read_text(encoding="utf-8"), name=source.stem)
    (spec,) = scenario.clients
    async with (staged_lab(scenario, cache, tmp_path) as (lab, deployment),
                ClientDriver(lab, deployment, spec, tmp_path) as driver):
        http = driver.agent.http
        if foreign_openssl_roots:
            # OpenSSL trusts only an unrelated root: it cannot chain the MP's certificate
            # (the server sends its root, so OpenSSL says 19, a self-signed root it lacks)
            http.trust_pem = trustme.CA().cert_pem.bytes()
        if no_engine_anchors:
            # the Windows engine trusts no root at all; OpenSSL keeps the real ones
            http.anchors = ()
        return await driver.step(spec.steps[0])


def test_the_verification_time_can_be_set_here() -> None:
    # Without it the cross-check would judge at the system time (and say so by disagreeing).
    assert tlstime.available()
    import ssl
    ctx = tlstime.ClientTimeContext(ssl.PROTOCOL_TLS_CLIENT)
    assert not ctx.verify_flags & tlstime.USE_CHECK_TIME
    assert tlstime.set_verify_time(ctx, dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    assert ctx.verify_flags & tlstime.USE_CHECK_TIME


async def test_openssl_refuses_what_the_engine_accepts_the_engine_decides(
        cache: PKICache, tmp_path: Path) -> None:
    step = await install(cache, tmp_path, RENEWED, foreign_openssl_roots=True)
    # the Windows engine accepted: the step is its verdict, the MP answered
    assert (step.outcome, step.met, step.error, step.winhttp_error, step.flags) == (
        "ok", True, None, None, 0)
    assert step.http_status == "200"
    # ... and the disagreement is reported as one
    assert step.openssl is not None
    assert (step.openssl.verify_code, step.openssl.verify_message, step.openssl.agrees) == (
        19, "self-signed certificate in certificate chain", False)
    assert step.judges_agree is False
    assert step.notes == ["JUDGES DISAGREE: OpenSSL says 19 (self-signed certificate in "
                          "certificate chain), the Windows engine says ok; the step's outcome is "
                          "the Windows engine's"]
    # no product-looking WinHTTP error for what is the lab's internal disagreement
    logged = "\n".join(line.text for line in step.log)
    assert "12175" not in logged and "ERROR_WINHTTP_SECURE_FAILURE" not in logged
    assert "ERROR_WINHTTP_SECURE_FAILURE" not in step.identifiers
    # the text report shows it on a passing step, loudly
    shown = "\n".join(render_step(step, verbose=False))
    assert ("openssl  verify code 19 (self-signed certificate in certificate chain); DISAGREES "
            "with the Windows engine") in shown
    assert "JUDGES DISAGREE" in shown


async def test_the_engine_refuses_what_openssl_accepts(cache: PKICache, tmp_path: Path) -> None:
    step = await install(cache, tmp_path, RENEWED, no_engine_anchors=True)
    assert step.outcome == "fail"
    assert step.error is not None and step.error.name == "CERT_E_UNTRUSTEDROOT"
    assert step.openssl is not None
    assert (step.openssl.verify_code, step.openssl.agrees) == (0, False)
    assert any(n.startswith("JUDGES DISAGREE: OpenSSL says 0 (ok), the Windows engine says "
                            "CERT_E_UNTRUSTEDROOT") for n in step.notes)


async def test_the_twin_without_a_disagreement(cache: PKICache, tmp_path: Path) -> None:
    step = await install(cache, tmp_path, RENEWED)
    assert (step.outcome, step.http_status) == ("ok", "200")
    assert step.openssl is not None
    assert (step.openssl.verify_code, step.openssl.agrees) == (0, True)
    assert step.notes == []
    assert "DISAGREES" not in "\n".join(render_step(step, verbose=False))


async def test_openssl_judges_at_the_client_time_ahead_too(
        cache: PKICache, tmp_path: Path) -> None:
    # The MP's certificate becomes valid in an hour: a client two hours ahead accepts it, and
    # OpenSSL, judging at that client's time, agrees; on the right time both refuse it (the
    # mirror of the bundled server-mp-cert-expired-clock-behind).
    base = (SCENARIOS / "server-mp-cert-expired-clock-behind.toml").read_text(encoding="utf-8")
    assert 'not_after = "-1h"' in base and 'clock_skew = "-2h"' in base
    text = base.replace('not_after = "-1h"', 'not_after = "+365d"').replace(
        'not_before = "-366d"', 'not_before = "+1h"').replace(
        'clock_skew = "-2h"', 'clock_skew = "+2h"')
    scenario = load_scenario_text(text, name="ahead")
    results = []
    async with staged_lab(scenario, cache, tmp_path) as (lab, deployment):
        for spec in scenario.clients:
            async with ClientDriver(lab, deployment, spec, tmp_path) as driver:
                results.append(await driver.step(spec.steps[0]))
    ahead, right_time = results
    assert (ahead.client, ahead.outcome, ahead.met, ahead.http_status) == (
        "PC01", "ok", True, "200")
    assert ahead.openssl is not None
    assert (ahead.openssl.verify_code, ahead.openssl.agrees) == (0, True)
    assert (right_time.client, right_time.outcome) == ("PC02", "fail")
    assert right_time.error is not None and right_time.error.name == "CERT_E_EXPIRED"
    assert right_time.openssl is not None
    assert (right_time.openssl.verify_code, right_time.openssl.verify_message,
            right_time.openssl.agrees) == (9, "certificate is not yet valid", True)
