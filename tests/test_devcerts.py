"""Development TLS material: generation, reuse, permissions and a real TLS handshake."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import ssl
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from confserver.devcerts import DevCerts, ensure_dev_certs, ssl_context

NOW = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def certdir(tmp_path: Path) -> Path:
    return tmp_path / "certs"


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def handshake(dev: DevCerts, server_hostname: str) -> bytes:
    """Serve TLS on 127.0.0.1 with the dev cert; connect trusting only ca.pem; return the echoed bytes."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(await reader.readexactly(4))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=ssl_context(dev))
    port = server.sockets[0].getsockname()[1]
    client = ssl.create_default_context(cafile=str(dev.ca_cert))
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname=server_hostname
        )
        try:
            writer.write(b"ping")
            await writer.drain()
            return await reader.readexactly(4)
        finally:
            writer.close()
            await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()


async def test_server_cert_verifies_against_ca_by_hostname_and_by_ip(certdir: Path) -> None:
    dev = ensure_dev_certs(certdir)
    assert await handshake(dev, "localhost") == b"ping"
    assert await handshake(dev, "127.0.0.1") == b"ping"


async def test_handshake_fails_for_a_name_not_in_the_certificate(certdir: Path) -> None:
    dev = ensure_dev_certs(certdir)
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(dev, "example.com")


def test_first_call_creates_ca_and_server_files_with_private_modes(certdir: Path) -> None:
    dev = ensure_dev_certs(certdir, now=NOW)
    assert dev == DevCerts(certdir / "ca.pem", certdir / "server.pem", certdir / "server-key.pem")
    assert mode(certdir) == 0o700
    assert mode(certdir / "ca-key.pem") == 0o600
    assert mode(dev.server_key) == 0o600
    assert b"PRIVATE KEY" in dev.server_key.read_bytes()


def test_keys_are_0600_even_with_a_permissive_umask(certdir: Path) -> None:
    old = os.umask(0)
    try:
        dev = ensure_dev_certs(certdir, now=NOW)
    finally:
        os.umask(old)
    assert mode(certdir / "ca-key.pem") == 0o600
    assert mode(dev.server_key) == 0o600
    assert mode(certdir) == 0o700


def test_ca_certificate_is_a_constrained_p256_ca(certdir: Path) -> None:
    ca = load(ensure_dev_certs(certdir, now=NOW).ca_cert)
    common_name = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert isinstance(common_name, str) and common_name.startswith("confserver dev CA ")
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert ca.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert timedelta(days=364) <= lifetime <= timedelta(days=366)


def test_server_certificate_has_sans_server_auth_and_bounded_lifetime(certdir: Path) -> None:
    dev = ensure_dev_certs(certdir, ("localhost", "Conf.Example.test"), ("127.0.0.1", "::1"), now=NOW)
    cert, ca = load(dev.server_cert), load(dev.ca_cert)
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "conf.example.test"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= timedelta(days=90)
    assert cert.not_valid_before_utc <= NOW < cert.not_valid_after_utc


def test_second_call_reuses_existing_files(certdir: Path) -> None:
    dev = ensure_dev_certs(certdir, now=NOW)
    before = {p: p.read_bytes() for p in certdir.glob("*.pem")}
    again = ensure_dev_certs(certdir, now=NOW + timedelta(days=10))
    assert again == dev
    assert {p: p.read_bytes() for p in certdir.glob("*.pem")} == before


def test_missing_san_the_ca_permits_triggers_reissue_with_the_same_ca(certdir: Path) -> None:
    dev = ensure_dev_certs(certdir, ("localhost", "meet.internal"), now=NOW)
    ca_before, server_before = dev.ca_cert.read_bytes(), dev.server_cert.read_bytes()
    dev = ensure_dev_certs(
        certdir, ("localhost", "meet.internal", "eu.meet.internal"), ("127.0.0.2",), now=NOW
    )
    assert dev.ca_cert.read_bytes() == ca_before
    assert dev.server_cert.read_bytes() != server_before
    cert = load(dev.server_cert)
    cert.verify_directly_issued_by(load(dev.ca_cert))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "eu.meet.internal" in san.get_values_for_type(x509.DNSName)


def test_a_name_outside_the_ca_constraints_replaces_the_ca(certdir: Path) -> None:
    dev = ensure_dev_certs(certdir)
    ca_before = dev.ca_cert.read_bytes()
    ensure_dev_certs(certdir, ("localhost", "meet.internal"), ("127.0.0.1", "10.0.0.7"))
    assert dev.ca_cert.read_bytes() != ca_before
    verify_chain(dev, load(dev.server_cert), x509.DNSName("meet.internal"))
    verify_chain(dev, load(dev.server_cert), x509.IPAddress(ipaddress.ip_address("10.0.0.7")))


def test_server_cert_expiring_within_30_days_is_reissued_with_the_same_ca(certdir: Path) -> None:
    dev = ensure_dev_certs(certdir, now=NOW)
    ca_before, server_before = dev.ca_cert.read_bytes(), dev.server_cert.read_bytes()
    later = NOW + timedelta(days=70)
    ensure_dev_certs(certdir, now=later)
    assert dev.ca_cert.read_bytes() == ca_before
    assert dev.server_cert.read_bytes() != server_before
    assert load(dev.server_cert).not_valid_after_utc > later + timedelta(days=30)


def test_ca_expiring_within_30_days_is_replaced_with_its_server_cert(certdir: Path) -> None:
    dev = ensure_dev_certs(certdir, now=NOW)
    ca_before = dev.ca_cert.read_bytes()
    later = NOW + timedelta(days=340)
    ensure_dev_certs(certdir, now=later)
    assert dev.ca_cert.read_bytes() != ca_before
    assert load(dev.ca_cert).not_valid_after_utc > later + timedelta(days=300)
    load(dev.server_cert).verify_directly_issued_by(load(dev.ca_cert))


# --- name constraints --------------------------------------------------------------------------


def verify_chain(dev: DevCerts, leaf: x509.Certificate, name: x509.DNSName | x509.IPAddress) -> None:
    """Path validation as a browser does it, trusting only the dev CA (raises VerificationError)."""
    store = Store([load(dev.ca_cert)])
    PolicyBuilder().store(store).build_server_verifier(name).verify(leaf, [])


def forge_leaf(dev: DevCerts, san: x509.GeneralName) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """What a stolen ``ca-key.pem`` could sign: a server certificate for any name, and its key."""
    ca = load(dev.ca_cert)
    ca_key = serialization.load_pem_private_key((dev.ca_cert.parent / "ca-key.pem").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forged")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def test_ca_has_critical_name_constraints_for_the_dev_names_only(certdir: Path) -> None:
    dev = ensure_dev_certs(certdir, ("localhost", "meet.internal"), ("127.0.0.1", "::1"))
    ext = load(dev.ca_cert).extensions.get_extension_for_class(x509.NameConstraints)
    assert ext.critical
    permitted = ext.value.permitted_subtrees or []
    assert {g.value for g in permitted if isinstance(g, x509.DNSName)} == {"localhost", "meet.internal"}
    assert {g.value for g in permitted if isinstance(g, x509.IPAddress)} == {
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    }
    verify_chain(dev, load(dev.server_cert), x509.DNSName("meet.internal"))
    verify_chain(dev, load(dev.server_cert), x509.IPAddress(ipaddress.ip_address("127.0.0.1")))


@pytest.mark.parametrize(
    "san",
    [
        x509.DNSName("bank.example"),
        x509.DNSName("localhost.bank.example"),
        x509.IPAddress(ipaddress.ip_address("192.0.2.10")),
        x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
    ],
)
def test_a_leaf_the_dev_ca_signs_for_another_name_fails_verification(
    certdir: Path, san: x509.GeneralName
) -> None:
    dev = ensure_dev_certs(certdir)
    forged, _key = forge_leaf(dev, san)
    assert isinstance(san, x509.DNSName | x509.IPAddress)
    with pytest.raises(VerificationError, match="name constraint"):
        verify_chain(dev, forged, san)
    allowed, _key = forge_leaf(dev, x509.DNSName("api.localhost"))
    verify_chain(dev, allowed, x509.DNSName("api.localhost"))


async def test_tls_client_trusting_the_dev_ca_refuses_a_forged_leaf(certdir: Path, tmp_path: Path) -> None:
    dev = ensure_dev_certs(certdir)
    cert, key = forge_leaf(dev, x509.DNSName("bank.example"))
    forged = DevCerts(dev.ca_cert, tmp_path / "forged.pem", tmp_path / "forged-key.pem")
    forged.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    forged.server_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    forged.server_key.chmod(0o600)
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(forged, "bank.example")


def test_missing_or_mismatched_server_files_are_reissued_with_the_same_ca(certdir: Path) -> None:
    dev = ensure_dev_certs(certdir, now=NOW)
    ca_before = dev.ca_cert.read_bytes()
    dev.server_cert.unlink()
    ensure_dev_certs(certdir, now=NOW)
    assert dev.server_cert.exists() and dev.ca_cert.read_bytes() == ca_before
    dev.server_key.write_bytes((certdir / "ca-key.pem").read_bytes())
    ensure_dev_certs(certdir, now=NOW)
    assert dev.ca_cert.read_bytes() == ca_before
    assert dev.server_key.read_bytes() != (certdir / "ca-key.pem").read_bytes()


def test_server_cert_from_a_different_ca_is_reissued(certdir: Path, tmp_path: Path) -> None:
    dev = ensure_dev_certs(certdir, now=NOW)
    other = ensure_dev_certs(tmp_path / "other", now=NOW)
    dev.server_cert.write_bytes(other.server_cert.read_bytes())
    dev.server_key.write_bytes(other.server_key.read_bytes())
    ensure_dev_certs(certdir, now=NOW)
    load(dev.server_cert).verify_directly_issued_by(load(dev.ca_cert))


def test_missing_ca_regenerates_everything(certdir: Path) -> None:
    dev = ensure_dev_certs(certdir, now=NOW)
    server_before = dev.server_cert.read_bytes()
    (certdir / "ca-key.pem").unlink()
    ensure_dev_certs(certdir, now=NOW)
    assert dev.server_cert.read_bytes() != server_before
    load(dev.server_cert).verify_directly_issued_by(load(dev.ca_cert))


def test_group_readable_key_is_tightened_on_reuse(certdir: Path) -> None:
    dev = ensure_dev_certs(certdir, now=NOW)
    dev.server_key.chmod(0o644)
    ensure_dev_certs(certdir, now=NOW)
    assert mode(dev.server_key) == 0o600


def test_no_temporary_files_are_left_behind(certdir: Path) -> None:
    ensure_dev_certs(certdir, now=NOW)
    ensure_dev_certs(certdir, ("localhost", "x.test"), now=NOW)
    assert sorted(p.name for p in certdir.iterdir()) == [
        ".lock",
        "ca-key.pem",
        "ca.pem",
        "server-key.pem",
        "server.pem",
    ]


@pytest.mark.parametrize(
    ("hostnames", "ips"),
    [(("bad host",), ()), (("-x.test",), ()), (("localhost",), ("999.1.1.1",)), ((), ())],
)
def test_invalid_names_are_rejected(certdir: Path, hostnames: tuple[str, ...], ips: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        ensure_dev_certs(certdir, hostnames, ips, now=NOW)


def test_naive_datetime_is_rejected(certdir: Path) -> None:
    with pytest.raises(ValueError):
        ensure_dev_certs(certdir, now=datetime(2025, 1, 1))


def test_ssl_context_requires_tls_1_2_or_newer(certdir: Path) -> None:
    context = ssl_context(ensure_dev_certs(certdir))
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


@pytest.fixture(autouse=True)
def _no_world_readable_leftovers(tmp_path: Path) -> Iterator[None]:
    yield
    for path in tmp_path.rglob("*key*"):
        assert not mode(path) & 0o077, path
