"""Node-to-node authentication: an HMAC of the request under the cluster secret.

A node that relays a session or forwards an admin call signs the method, the path, its own id and
the time; the receiving node checks the signature and the time window (wide enough for clocks a few
minutes apart) before it trusts anything else in the request, such as the client address it names.
Pure: the time is passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from ..config import NODE_ID_PATTERN

HEADER = "X-Conf-Cluster"
"""Carries ``node=ID;ts=UNIX;sig=HEX``."""
CLIENT_ADDRESS = "X-Conf-Client-Address"
"""The client's address, as the relaying node saw it; trusted only with a valid signature."""
WINDOW = 300.0
"""Seconds a signature is accepted before or after its time: clocks a minute apart still work."""
MAX_HEADER = 256

_FORMAT = re.compile(rf"node=({NODE_ID_PATTERN});ts=(\d{{1,12}});sig=([0-9a-f]{{64}})")


class ClusterAuthError(Exception):
    """The request does not carry a valid cluster signature; ``reason`` is a metric label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def cluster_key(configured: str, api_secret: str) -> bytes:
    """The configured cluster secret, or one derived from the API secret that every node shares."""
    if configured:
        return configured.encode()
    return hmac.new(api_secret.encode(), b"confserver cluster secret v1", hashlib.sha256).digest()


def _mac(key: bytes, node: str, ts: int, method: str, path: str) -> str:
    text = f"{node}\n{ts}\n{method.upper()}\n{path}".encode()
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def sign(key: bytes, node: str, method: str, path: str, now: float) -> str:
    ts = int(now)
    return f"node={node};ts={ts};sig={_mac(key, node, ts, method, path)}"


def verify(key: bytes, header: str | None, method: str, path: str, now: float) -> str:
    """The id of the node that signed; raises ``ClusterAuthError``."""
    if not header:
        raise ClusterAuthError("missing")
    if len(header) > MAX_HEADER:
        raise ClusterAuthError("malformed")
    found = _FORMAT.fullmatch(header)
    if found is None:
        raise ClusterAuthError("malformed")
    node, ts_text, sig = found.groups()
    ts = int(ts_text)
    if abs(now - ts) > WINDOW:
        raise ClusterAuthError("stale")
    if not hmac.compare_digest(sig, _mac(key, node, ts, method, path)):
        raise ClusterAuthError("bad_signature")
    return node
