"""How other nodes reach this one: its URL and the fingerprint of its TLS certificate."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

if TYPE_CHECKING:
    from ..config import Config

WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def node_url(cfg: Config) -> str:
    """``store.node_address``, else ``server.host`` (the host name for a wildcard address), with
    the scheme and port this node serves on."""
    host = cfg.store.node_address or cfg.server.host
    if host in WILDCARDS:
        host = socket.gethostname()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{cfg.scheme}://{host}:{cfg.server.port}"


def certificate_fingerprint(cert_file: Path) -> str:
    """SHA-256 of the first certificate of a PEM file, in hex: what the other nodes pin when they
    connect here (a node's dev certificate is trusted through it, with no CA to share)."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
