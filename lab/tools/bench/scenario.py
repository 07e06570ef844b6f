"""The bench's site: the scenario its MP serves, that scenario's PKI, and the ECDSA P-256
certificates the bench issues itself under the lab's CA."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.pki.build import BuiltCA, BuiltPKI

INTRA = "IBCM-Intra.contoso.local"
INTERNET = "IBCM-Internet.public.com"


def bench_scenario_text(clients: Sequence[str] = ("BENCH01",), *, http_cdp_only: bool = True,
                        title: str = "bench: clients registering and sending inventory") -> str:
    """The MP of the handshake and fleet measurements: both names, one client certificate per
    name in ``clients``, each client registering from the internet. Contoso-CA writes only an
    HTTP CDP (so IIS fetches each client certificate's CRL from the CDP server), or with
    ``http_cdp_only=False`` its default CDPs."""
    ccmsetup = (f"ccmsetup.exe /UsePKICert SMSSITECODE=P01 SMSMP=https://{INTRA} "
                f"CCMHOSTNAME={INTERNET}")
    cdp = 'cdp = ["http"]\n' if http_cdp_only else ""
    client_tables = "".join(f"""
[[client]]
name = "{name}"
ccmsetup = "{ccmsetup}"

[[client.step]]
action = "register"
location = "internet"
""" for name in clients)
    return f"""
[scenario]
title = "{title}"

[site]
code = "P01"
check_crl = true

[[ca]]
name = "Contoso-CA"
kind = "enterprise"
host = "ca01.contoso.local"
domain = "contoso.local"
{cdp}
[mp]
intranet_fqdn = "{INTRA}"
internet_fqdn = "{INTERNET}"

[mp.cert]
issuer = "Contoso-CA"
san = ["{INTRA}", "{INTERNET}"]
{client_tables}"""


def build_bench_pki(certs: str) -> BuiltPKI:
    """The PKI of :func:`bench_scenario_text` from the cache ``certs``."""
    from lab.clock import Clock
    from lab.pki.build import build_pki
    from lab.pki.cache import PKICache
    from lab.scenario.loader import load_scenario_text

    scenario = load_scenario_text(bench_scenario_text(), name="bench-mp")
    return build_pki(scenario, Clock(), PKICache(certs))


def ecdsa_leaf(ca: BuiltCA, *, cn: str, san: Sequence[str], server: bool,
               now: dt.datetime) -> tuple[bytes, bytes]:
    """An ECDSA P-256 certificate issued by the lab CA ``ca``: (key PEM, cert
    PEM). The lab's PKI makes RSA-2048 keys; the benchmark issues these itself."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in san]),
                       critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                              else ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
    )
    if ca.cdp_urls:
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(u) for u in ca.cdp_urls],
            relative_name=None, reasons=None, crl_issuer=None)]), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    # SEC1 ("EC PRIVATE KEY"), not PKCS#8: OpenSSL 3.0 loads it about twice as fast, which
    # matters when 25,000 simulated clients each load their own key.
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def write_private(path: Path, data: bytes) -> Path:
    """Write ``data`` (a key) readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path
