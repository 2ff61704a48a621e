"""The API server's TLS material: a self-signed cluster CA and a serving certificate it signs.

Made on the first ``--tls`` start in ``DATA/pki`` (kubeadm's names: ``ca.crt``, ``ca.key``,
``apiserver.crt``, ``apiserver.key``) and kept: the CA lives for ten years, so kubeconfigs written once
(they carry ``ca.crt`` as ``certificate-authority-data``) keep working. The serving certificate is
remade, signed by the same CA, when it no longer names every address and DNS name clients use (the
listen host changed, a new ``--advertise-address``) or has less than :data:`RENEW_BEFORE` left.

Keys are ECDSA P-256: generated in a millisecond, accepted by Go (kubectl), OpenSSL and browsers.
Private keys are created owner-only (0600) before a byte is written, never chmod-ed afterwards.
Everything here is blocking file and CPU work: callers in the event loop use ``asyncio.to_thread``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controlplane.secretfiles import replace_file

CA_VALIDITY = dt.timedelta(days=3650)
SERVING_VALIDITY = dt.timedelta(days=365)
#: A serving certificate with less than this left is remade at start.
RENEW_BEFORE = dt.timedelta(days=30)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class ServingFiles:
    """Where the CA certificate (for clients) and the serving pair (for uvicorn) are."""

    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path

    @classmethod
    def under(cls, directory: Path) -> ServingFiles:
        return cls(
            directory / "ca.crt",
            directory / "ca.key",
            directory / "apiserver.crt",
            directory / "apiserver.key",
        )


class PKIError(Exception):
    """Existing files that cannot be used (unreadable, not a certificate): one line naming the file."""


def serving_names(
    listen_host: str,
    *,
    advertise_address: str | None = None,
    service_cluster_ip_range: str = "10.254.0.0/16",
    cluster_domain: str = "cluster.local",
) -> list[str]:
    """Every name and address a client may dial the API server by, as kube-apiserver's certificate has
    them: the listen host, loopback, this machine's hostname, the advertised address, the ``kubernetes``
    Service's cluster IP (the range's first address) and its DNS names."""
    names = [listen_host, "127.0.0.1", "::1", "localhost", socket.gethostname()]
    if advertise_address:
        names.append(advertise_address)
    names.append(str(ipaddress.ip_network(service_cluster_ip_range, strict=False).network_address + 1))
    names += ["kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    names.append(f"kubernetes.default.svc.{cluster_domain.strip('.')}")
    seen: dict[str, None] = {}
    for name in names:
        if name and name not in seen:
            seen[name] = None
    return list(seen)


def ensure_serving_files(
    directory: Path, names: Iterable[str], *, now: dt.datetime | None = None
) -> ServingFiles:
    """The CA (made once) and a serving certificate for ``names`` (made or remade when needed)."""
    now = now or dt.datetime.now(dt.UTC)
    wanted = _split_names(names)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = ServingFiles.under(directory)
    if files.ca_cert.exists() and files.ca_key.exists():
        ca_cert = _load_cert(files.ca_cert)
        ca_key = _load_key(files.ca_key)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _make_ca(ca_key, now)
        _write(files.ca_key, _key_pem(ca_key), secret=True)
        _write(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), secret=False)
    if _serving_ok(files, ca_cert, wanted, now):
        return files
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _make_serving(key, ca_key, ca_cert, wanted, now)
    _write(files.key, _key_pem(key), secret=True)
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM), secret=False)
    return files


def _split_names(names: Iterable[str]) -> tuple[frozenset[str], frozenset[IPAddress]]:
    dns: set[str] = set()
    ips: set[IPAddress] = set()
    for name in names:
        try:
            ips.add(ipaddress.ip_address(name.strip("[]")))
        except ValueError:
            dns.add(name.lower())
    return frozenset(dns), frozenset(ips)


def _serving_ok(
    files: ServingFiles,
    ca_cert: x509.Certificate,
    wanted: tuple[frozenset[str], frozenset[IPAddress]],
    now: dt.datetime,
) -> bool:
    """The existing serving certificate names everything wanted, is signed by this CA, and is not
    about to expire (a broken or missing one is simply remade)."""
    if not (files.cert.exists() and files.key.exists()):
        return False
    try:
        cert = _load_cert(files.cert)
        key = _load_key(files.key)
        cert.verify_directly_issued_by(ca_cert)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (PKIError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    if key.public_key() != cert.public_key():
        return False
    dns, ips = wanted
    have_dns = {n.lower() for n in sans.get_values_for_type(x509.DNSName)}
    have_ips = set(sans.get_values_for_type(x509.IPAddress))
    return dns <= have_dns and ips <= have_ips and cert.not_valid_after_utc - now > RENEW_BEFORE


def _make_ca(key: ec.EllipticCurvePrivateKey, now: dt.datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"peapod-ca@{int(now.timestamp())}")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(signs_certificates=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """ECDSA keys sign (TLS handshakes); only the CA's signs certificates and revocation lists."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _make_serving(
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    wanted: tuple[frozenset[str], frozenset[IPAddress]],
    now: dt.datetime,
) -> x509.Certificate:
    dns, ips = wanted
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in sorted(dns)]
    sans += [x509.IPAddress(ip) for ip in sorted(ips, key=lambda ip: (ip.version, int(ip)))]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + SERVING_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(signs_certificates=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise PKIError(
            f"cannot read the certificate {path}: {getattr(exc, 'strerror', None) or exc}"
        ) from None


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        # Never the file's text in the message: it is a private key.
        reason = getattr(exc, "strerror", None) or "not an unencrypted PEM private key"
        raise PKIError(f"cannot read the private key {path}: {reason}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PKIError(f"cannot use the private key {path}: want an ECDSA key")
    return key


def _write(path: Path, data: bytes, *, secret: bool) -> None:
    """Replace ``path`` atomically; a secret's file is owner-only from its creation."""
    replace_file(path, data, 0o600 if secret else 0o644)
