"""Revocation checks as ``certutil -verify -urlfetch`` would show them (``--trace``, ``--out``).

The shape follows ``docs/openssl-certutil.md`` §6: one ``CertContext[0][i]``
block per chain element (end entity first), its AIA, CDP, Base CRL CDP and OCSP sections with
a status line and an ``[i.j] url`` line per URL, a summary of the CRLs retrieved, and
certutil's tail. The content is
what the lab's CryptoAPI-like engine did for the step's HTTPS connection to the MP; this is
the lab's rendering, never captured product output, and says so in its first line.

Where the engine's view and certutil's differ, the line starts with ``Lab:`` instead of a
status certutil prints:

* URLs CryptoAPI did not try because an earlier one gave a good CRL (certutil -urlfetch would
  fetch every URL);
* CRLs that are not yet valid or do not verify, and delta CRLs that are not ``OK`` (the
  reference has no certutil sample for them);
* AIA URLs: listed from the certificate, their retrieval is not traced;
* the ``Time:`` values are simulated seconds (15 for the per-URL retrieval time-out);
* a CRL retrieved over LDAP gets a line saying from which server it came (the lab's DC and
  its loopback address);
* delta CRLs appear only in the Base CRL CDP section (certutil also repeats them as
  ``[0.0.0]`` under Certificate CDP).

``CertContext[0][i]: dwInfoStatus=... dwErrorStatus=...`` and ``Element.dw*Status`` lines are
left out: the lab does not model the CERT_TRUST_* bits.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from lab.clock import zone_info
from lab.codes import Code
from lab.errors import UsageError
from lab.files import make_folders, refuse_link, safe_component
from lab.names import printable
from lab.pki.urls import cert_aia_urls, cert_ocsp_urls
from lab.results.observations import ElementStatus, RevocationResult, UrlAttempt, crl_number
from lab.results.runs import RunResult
from lab.results.verdicts import StepResult, format_offset

TRACE_FILE = "certutil-urlfetch.txt"
CHAIN_FLAGS = "ChainFlags = CERT_CHAIN_REVOCATION_CHECK_CHAIN_EXCLUDE_ROOT (0x40000000)"
ROOT_NOTE = ("(root: excluded from revocation checking, "
             "CERT_CHAIN_REVOCATION_CHECK_CHAIN_EXCLUDE_ROOT)")
NOT_RETRIEVED = ("Lab: Not retrieved (CryptoAPI stops at the first good CRL; "
                 "certutil -urlfetch would fetch this URL too)")
NO_URLS = 'No URLs "None" Time: 0'
CLOSER = "--------------------------------"


def _section(title: str) -> str:
    return f"---------------- {title} ----------------"


# -- formatting helpers ----------------------------------------------------------------------

def _windows_time(when: dt.datetime, tz: dt.tzinfo) -> str:
    """``5/1/2025 9:05 AM``: the en-US short date and time certutil samples show."""
    local = when.astimezone(tz)
    hour = local.hour % 12 or 12
    ampm = "AM" if local.hour < 12 else "PM"
    return f"{local.month}/{local.day}/{local.year} {hour}:{local.minute:02d} {ampm}"


def _dn(name: x509.Name) -> str:
    """``CN=Contoso-CA, DC=contoso, DC=local``: most specific first, as Windows prints it."""
    return ", ".join(rdn.rfc4514_string() for rdn in reversed(name.rdns))


def _hex_bytes(value: int) -> str:
    """An integer as whole bytes of lower-case hex (``01``, ``067e``)."""
    text = f"{value:x}"
    return text if len(text) % 2 == 0 else "0" + text


def _seconds(ms: int) -> str:
    return f"{ms / 1000:g}"


def hresult_hex(code: Code) -> str:
    """``0x80072ee7``: the HRESULT in lower-case hex, as certutil prints it."""
    return f"0x{code.hresult:08x}"


def certutil_error(code: Code) -> str:
    """A code the way certutil appends it to a message.

    ``The server is not operational. 0x8007203a (WIN32: 8250)`` for Win32/WinHTTP codes,
    ``<message> 0x80092013 (-2146885613 CRYPT_E_REVOCATION_OFFLINE)`` for the others.
    """
    if code.kind in ("winhttp", "win32"):
        return f"{code.message} {hresult_hex(code)} (WIN32: {code.value})"
    return f"{code.message} {hresult_hex(code)} ({code.signed} {code.name})"


def _dp_indexes(cert: x509.Certificate | None, count: int) -> list[str]:
    """``i.j`` for each CDP URL in certificate order (distribution point i, URL j)."""
    indexes: list[str] = []
    if cert is not None:
        with contextlib.suppress(x509.ExtensionNotFound):
            ext = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
            for i, dp in enumerate(ext):
                uris = [n for n in dp.full_name or []
                        if isinstance(n, x509.UniformResourceIdentifier)]
                indexes += [f"{i}.{j}" for j in range(len(uris))]
    if len(indexes) != count:
        indexes = [f"0.{j}" for j in range(count)]
    return indexes


# -- one step --------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Element:
    """One chain element with its revocation status (None for the root / unchecked)."""

    index: int
    cert: x509.Certificate | None
    status: ElementStatus | None
    is_root: bool


def _elements(step: StepResult, rev: RevocationResult) -> list[_Element]:
    chain = list(step.chain)
    if not chain:
        # No chain recorded: show what the revocation result knows (end entity first).
        statuses = list(reversed(rev.elements))
        return [_Element(i, None, s, False) for i, s in enumerate(statuses)]
    out: list[_Element] = []
    for i, cert in enumerate(chain):
        subject = cert.subject.rfc4514_string()
        status = next((e for e in rev.elements
                       if e.serial == cert.serial_number and e.subject == subject), None)
        is_root = i == len(chain) - 1 and cert.issuer == cert.subject
        out.append(_Element(i, cert, status, is_root))
    return out


def _cert_lines(el: _Element, tz: dt.tzinfo) -> list[str]:
    lines = [f"CertContext[0][{el.index}]:"]
    cert = el.cert
    if cert is None:
        assert el.status is not None
        return [*lines, f"  Issuer: {el.status.issuer}", f"  Subject: {el.status.subject}",
                f"  Serial: {_hex_bytes(el.status.serial)}"]
    lines += [
        f"  Issuer: {_dn(cert.issuer)}",
        f"  NotBefore: {_windows_time(cert.not_valid_before_utc, tz)}",
        f"  NotAfter: {_windows_time(cert.not_valid_after_utc, tz)}",
        f"  Subject: {_dn(cert.subject)}",
        f"  Serial: {_hex_bytes(cert.serial_number)}",
    ]
    with contextlib.suppress(x509.ExtensionNotFound):
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
        if names:
            lines.append("  SubjectAltName: " + ", ".join(f"DNS Name={n}" for n in names))
    lines.append(f"  Cert: {cert.fingerprint(hashes.SHA1()).hex()}")
    return lines


def _aia_lines(cert: x509.Certificate | None) -> list[str]:
    lines = ["  " + _section("Certificate AIA")]
    urls = cert_aia_urls(cert) if cert is not None else ()
    if not urls:
        return [*lines, "  " + NO_URLS, ""]
    lines.append("  Lab: AIA retrieval is not traced (the URLs are listed from the certificate; "
                 "the chain was built from the certificates the server sent)")
    lines += [f"    [{i}] {url}" for i, url in enumerate(urls)]
    return [*lines, ""]


def _url_lines(attempt: UrlAttempt, index: str, *, delta: bool = False) -> list[str]:
    """A status line (and an error line) and the ``[index] url`` line of one CDP URL.

    Base CRLs (Certificate CDP section) use the statuses of the reference's samples; delta
    CRLs (Base CRL CDP section) only ``OK "Delta CRL (..)"``, every other delta status is
    lab-labelled because the reference shows no sample of it.
    """
    took = _seconds(attempt.simulated_ms)
    kind = "Delta CRL" if delta else "Base CRL"
    crl = kind if attempt.crl_number is None else f"{kind} ({_hex_bytes(attempt.crl_number)})"
    lab_word = {"not_yet_valid": "not yet valid", "invalid": "rejected",
                "expired": "expired", "failed": "failed"}.get(attempt.result, attempt.result)
    lines: list[str]
    if attempt.result == "verified":
        lines = [f'  {"OK" if delta else "Verified"} "{crl}" Time: {took}']
    elif attempt.result == "expired" and not delta:
        lines = [f'  Expired "{crl}" Time: {took}']
    elif attempt.result == "failed":
        lines = [f'  Failed "CDP" Time: {took}' if not delta
                 else f'  Lab: {lab_word} "{crl}" Time: {took} (the reference has no certutil '
                      "sample of a failed delta CRL)"]
        if attempt.error is not None:
            lines.append(f"    Error retrieving URL: {certutil_error(attempt.error)}")
        else:
            lines.append(f"    Lab: retrieval failed: {attempt.detail}")
        if attempt.http_status is not None:
            lines.append(f"    Lab: the web server answered HTTP {attempt.http_status}"
                         + (" (a '+' in the path: IIS request filtering refuses it with 404.11 "
                            "unless allowDoubleEscaping is on; the web server's W3C log has "
                            "the substatus)" if attempt.http_status == 404 and "+" in attempt.url
                            else ""))
    elif attempt.result == "not_tried":
        lines = ["  " + NOT_RETRIEVED]
    else:
        lines = [f'  Lab: {lab_word} "{crl}" Time: {took}',
                 f"    Lab: {attempt.detail}; CryptoAPI does not use this CRL and tries the "
                 "next URL (the reference has no certutil sample of this status)"]
    if attempt.source and len(lines) == 1 and attempt.result != "not_tried":
        lines.append(f"    Lab: {attempt.source}")  # the Lab: line above says it otherwise
    if attempt.origin in ("memory", "disk"):
        lines.insert(1, f"    Lab: from the machine's {attempt.origin} URL cache, not retrieved"
                     if attempt.result != "failed" else
                     "    Lab: not retrieved again: the URL failed earlier in this step (the "
                     "lab's assumption)")
    return [*lines, f"    [{index}] {attempt.url}", ""]


def _cdp_lines(el: _Element) -> list[str]:
    lines = ["  " + _section("Certificate CDP")]
    status = el.status
    if status is None:
        return [*lines, "  Lab: no revocation result was recorded for this element", ""]
    if not status.urls:
        return [*lines, "  " + NO_URLS, ""]
    for attempt, index in zip(status.urls, _dp_indexes(el.cert, len(status.urls)), strict=True):
        lines += _url_lines(attempt, index)
    return lines


def _delta_lines(el: _Element) -> list[str]:
    """Base CRL CDP: the delta CRL URLs the good base CRL names (its Freshest CRL)."""
    lines = ["  " + _section("Base CRL CDP")]
    status = el.status
    if status is None or not status.delta_urls:
        return [*lines, "  " + NO_URLS, ""]
    for j, attempt in enumerate(status.delta_urls):
        lines += _url_lines(attempt, f"0.{j}", delta=True)
    if status.delta_missing:
        lines += ["  Lab: the base CRL announces a delta CRL and no delta URL gave a good one, "
                  "so revocation is unknown (CRYPT_E_REVOCATION_OFFLINE)", ""]
    return lines


def _ocsp_lines(cert: x509.Certificate | None) -> list[str]:
    lines = ["  " + _section("Certificate OCSP")]
    urls = cert_ocsp_urls(cert) if cert is not None else ()
    if not urls:
        return [*lines, "  " + NO_URLS]
    lines.append("  Lab: OCSP is not modelled (the URLs are listed from the certificate)")
    return lines + [f"    [{i}] {url}" for i, url in enumerate(urls)]


def _crl_summary(el: _Element, rev: RevocationResult, tz: dt.tzinfo) -> list[str]:
    """``CRL 01:`` Issuer / ThisUpdate / NextUpdate / ``CRL:`` hash of each CRL retrieved."""
    if el.status is None or el.cert is None:
        return []
    numbers = {u.crl_number for u in (*el.status.urls, *el.status.delta_urls)
               if u.crl_number is not None}
    lines: list[str] = []
    seen: set[str] = set()
    for crl in rev.crls:
        number = crl_number(crl)
        if crl.issuer != el.cert.issuer or number not in numbers:
            continue
        digest = hashlib.sha1(crl.public_bytes(serialization.Encoding.DER)).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        label = _hex_bytes(number) if number is not None else "?"
        lines += [f"    CRL {label}:", f"    Issuer: {_dn(crl.issuer)}",
                  f"    ThisUpdate: {_windows_time(crl.last_update_utc, tz)}"]
        if crl.next_update_utc is not None:
            lines.append(f"    NextUpdate: {_windows_time(crl.next_update_utc, tz)}")
        lines += [f"    CRL: {digest}", ""]
    return lines


def _element_lines(el: _Element, rev: RevocationResult, tz: dt.tzinfo, last: bool) -> list[str]:
    lines = _cert_lines(el, tz)
    if el.is_root:
        return [*lines, f"  {ROOT_NOTE}", ""]
    if el.status is None and last and el.cert is not None:
        return [*lines, "  Lab: not checked: its issuer was not found, so the chain ends here",
                ""]
    lines += _aia_lines(el.cert)
    lines += _cdp_lines(el)
    lines += _delta_lines(el)
    lines += _ocsp_lines(el.cert)
    lines.append("  " + CLOSER)
    lines += _crl_summary(el, rev, tz)
    if lines[-1] != "":
        lines.append("")
    return lines


def _tail(step: StepResult, rev: RevocationResult, elements: list[_Element]) -> list[str]:
    lines: list[str] = []
    leaf = elements[0].status if elements else None
    if leaf is not None and leaf.error is not None:
        lines += [f"ERROR: Verifying leaf certificate revocation status returned "
                  f"{certutil_error(leaf.error)}",
                  f"CertUtil: {leaf.error.message}"]
    else:
        lines.append("Leaf certificate revocation check passed")
        failing = [el for el in elements[1:] if el.status is not None
                   and el.status.error is not None]
        for el in failing:
            assert el.status is not None and el.status.error is not None
            lines.append(f"Lab: CertContext[0][{el.index}] ({el.status.subject}) failed its "
                         f"revocation check: {el.status.error.name} "
                         f"{hresult_hex(el.status.error)}; the lab's reference has no certutil "
                         "sample of this case, so no certutil line is shown for it")
        if rev.error is None and not failing:
            lines.append("CertUtil: -verify command completed successfully.")
    if step.outcome == "fail" and step.error is not None and step.error != rev.error:
        lines.append(f"Lab: the step failed with {step.error.name} "
                     f"{step.error.hex if step.error.numeric else ''}".rstrip()
                     + ", which is not a revocation result (see the step's report)")
    return lines


def _header(step: StepResult, tz_name: str) -> list[str]:
    where = f"the machine on the {step.location}"
    if step.connection and step.connection != step.location:
        where += f" (the client treats it as {step.connection})"
    return [
        f"Lab rendering in the shape of certutil -verify -urlfetch (not captured product "
        f"output): client {step.client}, step {step.number} {step.title}, "
        f"{step.target or '(no URL)'}, {where}",
        f"Lab: the MP's certificate chain as the client's CryptoAPI-like engine checked it; "
        f"Time: is simulated seconds (a retrieval time-out, 15 s per URL by default, is "
        f"simulated, never slept); "
        f"times in {tz_name}",
        *([] if step.at is None or step.since_start is None else [
            f"Lab: step time {step.at.astimezone(zone_info(tz_name)):%Y-%m-%d %H:%M:%S} "
            f"{tz_name} "
            f"({format_offset(step.since_start)} after the scenario's start, lab clock)"]),
    ]


def render_step_trace(step: StepResult, *, timezone: str = "UTC") -> str:
    """The ``certutil -verify -urlfetch`` shaped trace of one step's revocation check.

    ``timezone`` (an IANA name) is the machine's: certutil prints local times.
    """
    rev = step.revocation
    if rev is None or not rev.checked:
        return "\n".join(_header(step, timezone)) + "\n" + _unchecked_reason(step) + "\n"
    tz = zone_info(timezone)
    elements = _elements(step, rev)
    lines = _header(step, timezone)
    lines += [CHAIN_FLAGS, "HCCE_LOCAL_MACHINE", "CERT_CHAIN_POLICY_BASE", ""]
    for n, el in enumerate(elements):
        lines += _element_lines(el, rev, tz, last=n == len(elements) - 1)
    lines += _tail(step, rev, elements)
    return "\n".join(lines) + "\n"


def _unchecked_reason(step: StepResult) -> str:
    """One line: why this step has no revocation check to show."""
    rev = step.revocation
    if rev is not None:
        if step.crl_check is False:
            return (f"No revocation check: CRL checking was off for this HTTPS connection, "
                    f"as decided by {step.crl_source}.")
        return ("No revocation check: the MP's chain has no certificate below a root "
                "(CERT_CHAIN_REVOCATION_CHECK_CHAIN_EXCLUDE_ROOT).")
    if step.target is not None and step.target.lower().startswith("http://"):
        return "No revocation check: the step used plain HTTP (no server certificate)."
    why = f" (the step ended with {step.error.name})" if step.error is not None else ""
    if step.target is None:
        return f"No revocation check: the step made no connection to the MP{why}."
    return f"No revocation check: no HTTPS handshake with the MP{why}."


# -- a run -----------------------------------------------------------------------------------

def _step_heading(scenario: str, step: StepResult) -> str:
    return printable(f"== {scenario} / {step.client} / step {step.number} {step.title} "
                     f"@ {step.location}")


def _render_steps(scenario: str, steps: Iterable[StepResult], timezone: str) -> list[str]:
    # The scenario's name is its file's stem: a line break in it must not start a line.
    scenario = "".join(c if c.isprintable() else repr(c)[1:-1] for c in scenario)
    blocks: list[str] = []
    for step in steps:
        heading = _step_heading(scenario, step)
        if step.revocation is not None and step.revocation.checked:
            trace = render_step_trace(step, timezone=timezone)
        else:
            trace = f"{_unchecked_reason(step)}\n"
        # the trace's own lines stay lines; no control character from a certificate goes out
        blocks.append(f"{heading}\n{printable(trace, keep=chr(10))}")
    return blocks


def render_trace(run: RunResult) -> str:
    """Every step of ``run`` in order: the certutil-shaped trace where revocation was checked,
    one line saying why not elsewhere."""
    blocks: list[str] = []
    for result in run.scenarios:
        tz = result.scenario.info.timezone
        blocks += _render_steps(result.scenario.name, result.steps, tz)
    return "\n".join(blocks)


def _write_atomic(path: Path, text: str) -> None:
    make_folders(path.parent)
    refuse_link(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_traces(run: RunResult, out: Path) -> list[Path]:
    """Write ``out/<scenario>/<client>/certutil-urlfetch.txt`` for every client with steps.

    Each file is written atomically (a temporary file, then ``os.replace``). A folder that
    cannot be created or written raises :class:`UsageError`.
    """
    out = Path(out)
    written: list[Path] = []
    for result in run.scenarios:
        tz = result.scenario.info.timezone
        for client in result.clients:
            if not client.steps:
                continue
            path = out / safe_component(result.scenario.name) / client.name / TRACE_FILE
            text = "\n".join(_render_steps(result.scenario.name, client.steps, tz))
            try:
                _write_atomic(path, text)
            except OSError as e:
                reason = e.strerror or str(e)
                raise UsageError(f"--out {out}: cannot write {path}: {reason}") from e
            written.append(path)
    return written


__all__ = ["TRACE_FILE", "certutil_error", "hresult_hex", "render_step_trace", "render_trace",
           "write_traces"]
