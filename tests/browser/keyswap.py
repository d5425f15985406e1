"""A test build of the server that lies about one participant's public key: ``e2ee_identity`` of
the participant named by ``KEYSWAP_IDENTITY`` is stored and relayed with another P-256 key, as a
server in the middle would. Only for the browser tests (``python -m tests.browser.keyswap``,
same arguments and environment as ``confserver``); the product has no such switch."""

from __future__ import annotations

import base64
import dataclasses
import os
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from confserver import main as server_main
from confserver.signaling import e2ee
from confserver.signaling import messages as m


def forged_key() -> str:
    """A fresh P-256 public key as the browsers announce theirs: uncompressed point, base64url."""
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return base64.urlsafe_b64encode(point).rstrip(b"=").decode()


def install(victim: str, key: str) -> None:
    original = e2ee.KeyRelay.announce

    def announce(self: e2ee.KeyRelay, msg: m.E2eeIdentity) -> None:
        if self.identity == victim:
            msg = dataclasses.replace(msg, key=key)
        original(self, msg)

    e2ee.KeyRelay.announce = announce  # type: ignore[method-assign]


if __name__ == "__main__":
    install(os.environ["KEYSWAP_IDENTITY"], forged_key())
    sys.exit(server_main.main())
