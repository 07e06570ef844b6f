"""Judge: turn what a client step observed into a result and compare it with the scenario's
expectation; :mod:`lab.judge.explain` tells the story and the fix."""

from __future__ import annotations

from collections.abc import Sequence

from lab.codes import Code, flag_names
from lab.judge.explain import explain
from lab.pki.build import BuiltPKI
from lab.results.observations import FailureKind, HttpOutcome, StepObservation
from lab.results.records import MpAnswer, MpRecord
from lab.results.verdicts import StepResult
from lab.scenario.model import ClientSpec, Scenario, StepSpec


def _identifiers(obs: StepObservation, answer: MpAnswer | None,
                 refusal_code: Code | None) -> set[str]:
    ids: set[str] = set(obs.extra_identifiers)
    if obs.error is not None:
        ids |= obs.error.identifiers()
    req = obs.failed_request
    if req is not None:
        if req.winhttp_error is not None:
            ids |= req.winhttp_error.identifiers()
        if req.verdict is not None:
            for p in req.verdict.problems:
                ids |= p.error.identifiers()
        for name in flag_names(req.flags):
            ids |= {name, f"WINHTTP_CALLBACK_STATUS_FLAG_{name}"}
        if req.status is not None and req.status != 200:
            ids.add(str(req.status))
    if answer is not None and answer.status != 200:
        ids |= {str(answer.status), answer.label}
    if refusal_code is not None:
        ids |= refusal_code.identifiers()
    return {i.upper() for i in ids}


def expectation_met(expected: str | None, outcome: str, identifiers: set[str]) -> bool:
    if expected is None:
        return True
    if expected in ("ok", "fail"):
        return outcome == expected
    return outcome == "fail" and expected.strip().upper() in identifiers


def mp_answer(records: Sequence[MpRecord]) -> MpAnswer | None:
    """The most telling MP answer of a step (the first refusal, else the last answer), with
    the simulated time all of the step's answers took."""
    if not records:
        return None
    refused = [r for r in records if r.status != 200]
    r = refused[0] if refused else records[-1]
    return MpAnswer(r.status, r.substatus, r.win32_status, r.detail,
                    sum(x.time_taken_ms for x in records), crl_problem=r.crl_problem)


def judge_step(scenario: Scenario, pki: BuiltPKI, client: ClientSpec, index: int,
               step: StepSpec, obs: StepObservation, answer: MpAnswer | None) -> StepResult:
    refusal_code = pki.mp_refusal.code if (
        pki.mp_refusal is not None and obs.outcome == "fail" and obs.failure is FailureKind.CONNECT
    ) else None
    ids = _identifiers(obs, answer, refusal_code)
    explanation, fix = explain(scenario, pki, client, obs, answer)
    req: HttpOutcome | None = obs.failed_request or (obs.requests[-1] if obs.requests else None)
    http_status: str | None = None
    if answer is not None:
        http_status = answer.label
    elif req is not None and req.status is not None:
        http_status = str(req.status)
    notes = [n for n in obs.notes if n not in explanation] if obs.outcome == "fail" else []
    notes[:0] = obs.kept_notes
    # A disagreement on any request of the step is the step's (an install makes several).
    openssl = next((r.openssl for r in obs.requests
                    if r.openssl is not None and not r.openssl.agrees),
                   req.openssl if req is not None else None)
    if openssl is not None and not openssl.agrees:
        notes.append(f"JUDGES DISAGREE: OpenSSL says {openssl.verify_code} "
                     f"({openssl.verify_message}), the Windows engine says "
                     f"{obs.error.name if obs.error else 'ok'}; the step's outcome is the "
                     "Windows engine's")
    error = refusal_code if refusal_code is not None else obs.error
    message = obs.detail if refusal_code is None else (pki.mp_refusal.message
                                                       if pki.mp_refusal else obs.detail)
    return StepResult(
        client=client.name, index=index, action=step.action.value,
        location=step.location.value, target=obs.target, outcome=obs.outcome,
        expected=step.expect, met=expectation_met(step.expect, obs.outcome, ids),
        error=error, error_message=message,
        winhttp_error=req.winhttp_error if req is not None and obs.outcome == "fail" else None,
        flags=req.flags if req is not None and obs.outcome == "fail" else 0,
        http_status=http_status, openssl=openssl,
        revocation=(req.verdict.revocation if req is not None and req.verdict is not None
                    else None),
        connection=obs.connection, mp=obs.mp.host if obs.mp else None,
        crl_check=obs.crl_check, crl_source=obs.crl_source, options=obs.options,
        explanation=explanation, fix=fix, identifiers=sorted(ids), log=list(obs.log),
        notes=notes, simulated_ms=obs.simulated_ms + (answer.simulated_ms if answer else 0),
        chain=req.verdict.chain if req is not None and req.verdict is not None else (),
    )


__all__ = ["expectation_met", "judge_step", "mp_answer"]
