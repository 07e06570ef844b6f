"""The findings catalogue: every code check-cert can raise, its usual severity and source."""

from __future__ import annotations

from dataclasses import dataclass

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITY_ORDER = {ERROR: 0, WARNING: 1, INFO: 2}


@dataclass(frozen=True)
class Rule:
    code: str
    severity: str
    """The usual severity; a few codes are raised at another level depending on the context
    (noted in ``title``)."""
    title: str
    source: str
    """Where the requirement comes from (reference section, seed section)."""


CATALOGUE: dict[str, Rule] = {r.code: r for r in (
    Rule("no-server-auth", ERROR, "the EKU extension lacks Server Authentication",
         "reference §3.1 (EKU must contain Server Authentication 1.3.6.1.5.5.7.3.1); "
         "replay: CERT_E_WRONG_USAGE, §11 item 5"),
    Rule("no-eku", WARNING, "no EKU extension (Windows accepts any purpose)",
         "reference §3.1"),
    Rule("any-purpose-eku", WARNING, "the EKU is anyExtendedKeyUsage, not Server "
         "Authentication", "reference §3.1"),
    Rule("intranet-fqdn-not-in-san", ERROR, "the MP's intranet FQDN is not in the certificate",
         "reference §3.1; seed §2; replay: CERT_E_CN_NO_MATCH"),
    Rule("internet-fqdn-not-in-san", ERROR, "the MP's internet FQDN is not in the SAN",
         "reference §3.1; seed §2; replay: CERT_E_CN_NO_MATCH"),
    Rule("no-host-name", ERROR, "no DNS name in the SAN, and no CN to fall back on",
         "reference §3.1; replay: CERT_E_CN_NO_MATCH"),
    Rule("single-san", WARNING, "one DNS name only, and no --internet-fqdn to say whether the "
         "MP takes internet clients (error when the SAN lacks a given internet FQDN)",
         "seed §2; reference §3.1, §3.3b"),
    Rule("no-san", WARNING, "no Subject Alternative Name: names are matched against the CN",
         "reference §3.1 (in practice both names go in the SAN), §3.3b"),
    Rule("fqdn-from-san", INFO, "the MP FQDNs were taken from the SAN (no --intranet-fqdn / "
         "--internet-fqdn)", "check-cert's assumption"),
    Rule("signature-not-sha2", ERROR, "signed with SHA-1 or MD5", "reference §3.3 (SHA-2; "
         "\"Windows doesn't trust certificates signed with SHA-1\"), §3.1"),
    Rule("signature-unusual", WARNING, "a signature algorithm Windows TLS may not accept",
         "reference §3.3"),
    Rule("key-too-small", WARNING, "RSA key under 2048 bits (error under 1024)",
         "reference §3.1 (no ConfigMgr limit: consult PKI/IIS documentation), §3.2/§12 item 5 "
         "(2048 bits); the 2048-bit floor and the 1024-bit block are outside the reference"),
    Rule("key-not-rsa", INFO, "an ECDSA or other non-RSA key (the replay uses RSA 2048)",
         "reference §3.1 (CNG/KSP v3 keys), §3.3b"),
    Rule("key-usage", WARNING, "Key Usage allows neither digitalSignature nor "
         "keyEncipherment", "RFC 5280 §4.2.1.3; Web Server template (reference §3.1); "
         "not replayed"),
    Rule("expired", ERROR, "the certificate has expired", "reference §5.3, §11 item 5 "
         "(CERT_E_EXPIRED, flag CERT_DATE_INVALID)"),
    Rule("not-yet-valid", ERROR, "the certificate is not valid yet", "reference §5.3, §11 item 5 "
         "(CERT_E_EXPIRED, flag CERT_DATE_INVALID)"),
    Rule("expires-soon", WARNING, "fewer than 30 days of validity left",
         "check-cert (the lab reissues its own certificates 30 days before expiry)"),
    Rule("subject-is-ca", ERROR, "the file holds CA certificates only",
         "reference §3.1 (a Web Server certificate for the MP)"),
    Rule("chain-mismatch", WARNING, "the chain given does not hold this certificate's issuer",
         "check-cert"),
    Rule("pfx-no-private-key", WARNING, "the PKCS#12 file holds no private key",
         "reference §3.1 (Personal store of the computer, bound to IIS's HTTPS binding)"),
    Rule("pfx-key-mismatch", ERROR, "the PKCS#12 private key does not belong to the "
         "certificate", "reference §3.1"),
    Rule("no-cdp", WARNING, "no CRL distribution point", "reference §2.4, §5.3 "
         "(CRYPT_E_NO_REVOCATION_CHECK when a client checks)"),
    Rule("cdp-ldap-only", ERROR, "every CDP URL is ldap:///: only domain-joined machines inside "
         "can check revocation (warning when no internet FQDN is known)",
         "seed §4; reference §2.4, §4.1-4.3"),
    Rule("cdp-not-reachable-from-internet", ERROR, "no CDP URL is reachable from the internet",
         "seed §4; reference §2.4, §4.1-4.3"),
    Rule("cdp-not-reachable-for-workgroup", WARNING, "no CDP URL is reachable by a workgroup "
         "machine on the intranet", "seed §4; reference §4.3"),
    Rule("cdp-retrieval-delay", INFO, "unreachable CDP URLs come before a reachable one: up to "
         "15 s each", "reference §5.1, §5.2"),
    Rule("cdp-https", WARNING, "an https:// CDP URL", "docs/scenario-format.md (CRLs are "
         "published over plain HTTP)"),
    Rule("cdp-file", INFO, "a file:// CDP URL", "reference §4.1 (AD CS does not put file:// in "
         "certificates by default)"),
    Rule("aia-not-reachable-from-internet", INFO, "no AIA URL is reachable from the internet",
         "reference §4.1, §5.2"),
    Rule("aia-ocsp", INFO, "an OCSP responder in the AIA (the lab models CRLs only)",
         "reference §5 (CRL retrieval only)"),
)}


@dataclass(frozen=True)
class Finding:
    severity: str
    code: str
    reason: str
    fix: str

    @property
    def source(self) -> str:
        return CATALOGUE[self.code].source

    def as_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "code": self.code, "reason": self.reason,
                "fix": self.fix, "source": self.source}
