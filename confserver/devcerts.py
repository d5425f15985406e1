"""Development TLS material: a private local CA and a server certificate it signs.

``ensure_dev_certs`` is idempotent. The first call creates the directory (mode 0700), a CA
(``ca.pem``, ``ca-key.pem``) and a server certificate (``server.pem``, ``server-key.pem``). Later calls
reuse them and reissue only the server certificate when it is missing, unreadable, not signed by the
CA, expiring within 30 days, or lacking a requested name. Private keys are written atomically with
mode 0600 whatever the umask, and a key found group- or world-readable is tightened to 0600.

A browser that trusts ``ca.pem`` trusts whatever its key signs, so the CA is made harmless outside
development: it lives one year (the server certificate 90 days) and carries critical name
constraints permitting only the names it issues for (the configured hostnames and ``localhost``,
with their subdomains) and addresses (127.0.0.0/8, ::1 and the configured ones). A CA that expires
within 30 days, lacks the constraints or does not permit a requested name is replaced (and must be
trusted again), together with the server certificate.
It does blocking file I/O: call it at start-up, not from inside a running event loop's hot path.
For development only; trust ``ca.pem`` in a browser to use it.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import re
import secrets
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT_FILE: Final = "ca.pem"
CA_KEY_FILE: Final = "ca-key.pem"
SERVER_CERT_FILE: Final = "server.pem"
SERVER_KEY_FILE: Final = "server-key.pem"

CA_LIFETIME: Final = timedelta(days=365)
SERVER_LIFETIME: Final = timedelta(days=90)
RENEW_BEFORE: Final = timedelta(days=30)
_BACKDATE: Final = timedelta(hours=1)
_LOCK_FILE: Final = ".lock"
_DNS_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALWAYS_PERMITTED_NAMES: Final = ("localhost",)
ALWAYS_PERMITTED_NETWORKS: Final[tuple[IPNetwork, ...]] = (
    ipaddress.IPv4Network("127.0.0.0/8"),
    ipaddress.IPv6Network("::1/128"),
)


@dataclass(frozen=True)
class DevCerts:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def _utc_now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now.astimezone(UTC)


def _dns_names(hostnames: Sequence[str]) -> tuple[str, ...]:
    names: list[str] = []
    for host in hostnames:
        if isinstance(host, str) and host.endswith("."):
            host = host[:-1]
        if (
            not isinstance(host, str)
            or not 1 <= len(host) <= 253
            or not all(_DNS_LABEL.fullmatch(label) for label in host.split("."))
        ):
            raise ValueError(f"invalid DNS name for a certificate: {host!r}")
        if host.lower() not in names:
            names.append(host.lower())
    return tuple(names)


def _ip_addresses(ips: Sequence[str]) -> tuple[IPAddress, ...]:
    addresses: list[IPAddress] = []
    for ip in ips:
        address = ipaddress.ip_address(ip)
        if address not in addresses:
            addresses.append(address)
    return tuple(addresses)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a fresh temporary file with ``mode`` and rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _save(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, cert_path: Path, key_path: Path) -> None:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_atomically(key_path, key_pem, 0o600)
    _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _load_pair(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The certificate and its key, or ``None`` if either is missing, unreadable or they do not match."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (FileNotFoundError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        return None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        return None
    return cert, key


def _fresh(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - now > RENEW_BEFORE


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _covers(cert: x509.Certificate, names: Sequence[str], addresses: Sequence[IPAddress]) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have_names = {name.lower() for name in san.get_values_for_type(x509.DNSName)}
    have_addresses = set(san.get_values_for_type(x509.IPAddress))
    return set(names) <= have_names and set(addresses) <= have_addresses


def _permitted(
    names: Sequence[str], addresses: Sequence[IPAddress]
) -> tuple[tuple[str, ...], tuple[IPNetwork, ...]]:
    """The DNS names and networks the CA may issue for: the requested ones and the loopback ones."""
    dns = tuple(dict.fromkeys((*ALWAYS_PERMITTED_NAMES, *names)))
    networks = list(ALWAYS_PERMITTED_NETWORKS)
    for address in addresses:
        if not any(address in network for network in networks):
            networks.append(ipaddress.ip_network(address))
    return dns, tuple(networks)


def _name_constraints(ca: x509.Certificate) -> x509.NameConstraints | None:
    try:
        ext = ca.extensions.get_extension_for_class(x509.NameConstraints)
    except x509.ExtensionNotFound:
        return None
    return ext.value if ext.critical else None


def _dns_within(name: str, constraint: str) -> bool:
    constraint = constraint.lower()
    return name == constraint or name.endswith("." + constraint)


def _constrained_to(ca: x509.Certificate, names: Sequence[str], addresses: Sequence[IPAddress]) -> bool:
    """Whether ``ca`` carries critical name constraints that permit every requested name."""
    constraints = _name_constraints(ca)
    if constraints is None or not constraints.permitted_subtrees:
        return False
    allowed_dns = [g.value for g in constraints.permitted_subtrees if isinstance(g, x509.DNSName)]
    allowed_ips = [g.value for g in constraints.permitted_subtrees if isinstance(g, x509.IPAddress)]
    return all(any(_dns_within(n, c) for c in allowed_dns) for n in names) and all(
        any(
            isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network) and a in net for net in allowed_ips
        )
        for a in addresses
    )


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _issue_ca(
    names: Sequence[str], addresses: Sequence[IPAddress], now: datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    dns, networks = _permitted(names, addresses)
    permitted: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
    permitted += [x509.IPAddress(network) for network in networks]
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "confserver development"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"confserver dev CA {secrets.token_hex(4)}"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now - _BACKDATE + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None), critical=True
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue_server(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: Sequence[str],
    addresses: Sequence[IPAddress],
    now: datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    common_name = names[0] if names else str(addresses[0])
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
    sans += [x509.IPAddress(address) for address in addresses]
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(min(now - _BACKDATE + SERVER_LIFETIME, ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise concurrent ``ensure_dev_certs`` calls (several workers starting at once)."""
    fd = os.open(directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _private_directory(directory: Path) -> None:
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
        directory.chmod(0o700)
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory} is not a directory")


def _tighten(key_path: Path) -> None:
    if key_path.stat().st_mode & 0o077:
        key_path.chmod(0o600)


def ensure_dev_certs(
    directory: Path,
    hostnames: Sequence[str] = ("localhost",),
    ips: Sequence[str] = ("127.0.0.1", "::1"),
    *,
    now: datetime | None = None,
) -> DevCerts:
    """Create or reuse the development CA and server certificate in ``directory``."""
    moment = _utc_now(now)
    names = _dns_names(hostnames)
    addresses = _ip_addresses(ips)
    if not names and not addresses:
        raise ValueError("at least one hostname or IP address is required")
    directory = Path(directory)
    _private_directory(directory)
    paths = DevCerts(directory / CA_CERT_FILE, directory / SERVER_CERT_FILE, directory / SERVER_KEY_FILE)
    ca_key_path = directory / CA_KEY_FILE
    with _locked(directory):
        ca = _load_pair(paths.ca_cert, ca_key_path)
        renew_ca = (
            ca is None
            or not _is_ca(ca[0])
            or not _fresh(ca[0], moment)
            or not _constrained_to(ca[0], names, addresses)
        )
        if ca is None or renew_ca:
            ca = _issue_ca(names, addresses, moment)
            _save(*ca, paths.ca_cert, ca_key_path)
        server = None if renew_ca else _load_pair(paths.server_cert, paths.server_key)
        if (
            server is None
            or not _signed_by(server[0], ca[0])
            or not _fresh(server[0], moment)
            or not _covers(server[0], names, addresses)
        ):
            _save(*_issue_server(*ca, names, addresses, moment), paths.server_cert, paths.server_key)
        _tighten(ca_key_path)
        _tighten(paths.server_key)
    return paths


def ssl_context(dev: DevCerts) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2 or newer) presenting the development server certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(dev.server_cert), keyfile=str(dev.server_key))
    return context
