"""Constants and plain helpers shared by the test modules: ``from labtest import ...``.

Not a test module (pytest collects only ``test_*.py``). It is importable because pytest's
default ``prepend`` import mode puts this folder, which has no ``__init__.py``, on
``sys.path`` when it imports conftest.py and the test modules. Fixtures live in conftest.py.

The scenario pieces are TOML text: each table helper returns its table ending in a blank line
(``client_table`` starts with one instead, so clients can be added one after another), and a
document is the pieces put one after the other. What a test module varies is passed to them as
a parameter.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import aiohttp
from rich.console import Console

from lab.clock import Clock, system_now
from lab.pki.build import build_pki
from lab.pki.cache import PKICache
from lab.protocols.network import Machine, Network, ZoneResolver
from lab.scenario.loader import load_scenario_text
from lab.scenario.model import Zone
from lab.servers.deployment import Deployment
from lab.servers.harness import RunningLab

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"

# A fixed instant a few hours in the past, in whole seconds (CRL and certificate times are
# encoded to the second). OpenSSL elsewhere uses the real time, so it must stay close to now.
START = system_now().replace(microsecond=0) - dt.timedelta(hours=3)

INTRA = "IBCM-Intra.contoso.local"
INTERNET = "IBCM-Internet.public.com"
CCMSETUP = f"ccmsetup.exe /UsePKICert SMSSITECODE=P01 SMSMP=https://{INTRA}"

# The URLs AD CS writes by default for Contoso-CA on ca01.contoso.local, LDAP first.
LDAP_CDP = (
    "ldap:///CN=Contoso-CA,CN=ca01,CN=CDP,CN=Public%20Key%20Services,CN=Services,"
    "CN=Configuration,DC=contoso,DC=local?certificateRevocationList?base?"
    "objectClass=cRLDistributionPoint"
)
HTTP_CDP = "http://ca01.contoso.local/CertEnroll/Contoso-CA.crl"
LDAP_AIA = (
    "ldap:///CN=Contoso-CA,CN=AIA,CN=Public%20Key%20Services,CN=Services,"
    "CN=Configuration,DC=contoso,DC=local?cACertificate?base?"
    "objectClass=certificationAuthority"
)
HTTP_AIA = "http://ca01.contoso.local/CertEnroll/ca01.contoso.local_Contoso-CA.crt"
# The public CA's URLs on its own host.
PUBLIC_CDP = "http://crl.fabrikam-trust.example/FabrikamPublicCA.crl"
PUBLIC_AIA = "http://crl.fabrikam-trust.example/FabrikamPublicCA.crt"
# A full URL that scenarios add to Contoso-CA's CDP list (served by the lab's CDP server).
PKI_CDP = "http://pki.contoso.com/CertEnroll/Contoso-CA.crl"


# ------------------------------------------------------------------------------------------
# Scenario TOML
# ------------------------------------------------------------------------------------------


def _lines(text: str) -> str:
    """``text`` as whole lines: a newline after it, nothing at all for no text."""
    return f"{text}\n" if text else ""


def site_table(settings: str = "check_crl = true") -> str:
    """``[site]`` of site P01 with the given ``settings`` lines."""
    return '[site]\ncode = "P01"\n' + _lines(settings) + "\n"


def contoso(extra: str = "", name: str = "Contoso-CA") -> str:
    """The enterprise CA's ``[[ca]]`` (AD CS on ca01.contoso.local), ``extra`` lines added."""
    return f"""[[ca]]
name = "{name}"
kind = "enterprise"
host = "ca01.contoso.local"
domain = "contoso.local"
""" + _lines(extra) + "\n"


def fabrikam(extra: str = "") -> str:
    """The public CA's ``[[ca]]``, ``extra`` lines added."""
    return """[[ca]]
name = "Fabrikam Public CA"
kind = "public"
host = "crl.fabrikam-trust.example"
""" + _lines(extra) + "\n"


def mp_table(cert: str = 'issuer = "Contoso-CA"', *, internet: bool = True) -> str:
    """``[mp]`` with its intranet FQDN (and its internet FQDN unless ``internet`` is false),
    and ``[mp.cert]`` holding the ``cert`` lines."""
    internet_line = f'internet_fqdn = "{INTERNET}"\n' if internet else ""
    return f"""[mp]
intranet_fqdn = "{INTRA}"
{internet_line}
[mp.cert]
""" + _lines(cert) + "\n"


def client_table(name: str = "PC01", cert: str = "", *, action: str = "install",
                 location: str = "intranet", ccmsetup: str = CCMSETUP) -> str:
    """A ``[[client]]`` with ``cert`` lines (say a ``[client.cert]`` table) and one step."""
    return f"""
[[client]]
name = "{name}"
ccmsetup = "{ccmsetup}"
{cert}
[[client.step]]
action = "{action}"
location = "{location}"
"""


# The domain-joined client installed on the intranet with the default ccmsetup line.
PC01 = client_table()


def scenario_toml(*, title: str, site: str = "", cas: str | None = None,
                  mp_cert: str = 'issuer = "Contoso-CA"', internet: bool = True,
                  network: str = "", clients: str = PC01) -> str:
    """A whole scenario document: ``site`` and ``network`` (table text) only where given,
    ``cas`` defaulting to Contoso-CA alone, then the MP and the ``clients``."""
    return (f'\n[scenario]\ntitle = "{title}"\n\n'
            + site
            + (contoso() if cas is None else cas)
            + mp_table(mp_cert, internet=internet)
            + (f"{network}\n" if network else "")
            + clients)


# ------------------------------------------------------------------------------------------
# Machines, sessions and staging on a running lab
# ------------------------------------------------------------------------------------------


def machine(zone: Zone, domain_joined: bool = True) -> Machine:
    """PC01 in ``zone``, a member of contoso.local unless ``domain_joined`` is false."""
    return Machine("PC01", zone, domain_joined, "contoso.local" if domain_joined else None)


def zone_session(lab: RunningLab, network: Network, where: Machine) -> aiohttp.ClientSession:
    """An aiohttp session that resolves names as ``where`` does and reaches the lab's servers."""
    resolver = ZoneResolver(network, where, lab.hosts)
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=resolver, force_close=True, limit=0),
        timeout=aiohttp.ClientTimeout(total=120))


async def stage_scenario(lab: RunningLab, cache: PKICache, text: str, *,
                         name: str) -> Deployment:
    """Load ``text`` as scenario ``name``, build its PKI at START and stage it on ``lab``."""
    scenario = load_scenario_text(text, name=name)
    clock = Clock(START)
    pki = build_pki(scenario, clock, cache)
    deployment = Deployment(scenario=scenario, pki=pki, network=Network(scenario), clock=clock)
    await lab.stage(deployment)
    return deployment


@contextlib.contextmanager
def peak_memory() -> Iterator[list[int]]:
    """``box[0]``: the peak of Python allocations (bytes) above the start, once the block ends
    (servers included when they run in this process)."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    start = tracemalloc.get_traced_memory()[0]
    box: list[int] = []
    try:
        yield box
    finally:
        box.append(tracemalloc.get_traced_memory()[1] - start)
        if not tracing:
            tracemalloc.stop()


def terminal(width: int) -> tuple[Console, io.StringIO]:
    """A colour terminal of ``width`` columns that writes into the returned buffer."""
    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, width=width, color_system="standard"), buf


def plain_console(width: int) -> tuple[Console, io.StringIO]:
    """A console that is not a terminal (no colour), ``width`` columns wide."""
    buf = io.StringIO()
    return Console(file=buf, width=width), buf
