"""Every use of aiortc's, aioice's and pylibsrtp's private internals, in the glue: aiortc's
public API hands out decoded frames, an SFU needs packets. Written against aiortc 1.16.0, aioice
0.13 and pylibsrtp 1.0.0 exactly; ``check_versions`` refuses any other at start, and
``tests/sfu/test_glue_boundary.py`` fails on a private access anywhere else.

- ``aiortcseam``: every use of aiortc's private internals in the receive, send and ICE-restart
  paths, in one module (``receive``, ``send`` and ``icerestart`` re-export from it).
- ``receive``: decrypted RTP/RTCP to the SFU's callbacks, receivers and senders neutered (no
  decoder thread, encoder or aiortc RTCP loop); SRTP unprotected in the socket callback
  (``MediaProtocol``).
- ``send``: ``RtpWriter``, SRTP protect and send synchronously on the nominated pair's socket.
- ``srtp``: ``SrtpSession``, libsrtp on aiortc's pylibsrtp sessions without per-call allocations.
- ``gathering``: host candidates on chosen addresses, the shared port or a port range, a public
  address; an agent's remote candidates; sockets released when a close is stuck.
- ``icerestart``: ``IceRestart``, a fresh ICE agent under an established DTLS/SRTP session.
- ``negotiation``: ``negotiate``, the one order of the steps around offer/answer; the transceiver
  internals it touches (forward-only codecs, one media stream per m-line).
"""

from __future__ import annotations

import aioice
import aiortc
import pylibsrtp

from sfu.glue.gathering import prepare_gathering, remote_candidate_count

__all__ = ["check_versions", "prepare_gathering", "remote_candidate_count"]

AIORTC_VERSION = "1.16.0"
AIOICE_VERSION_PREFIX = "0.13."
PYLIBSRTP_VERSION = "1.0.0"


def check_versions() -> None:
    """Refuse to run on an aiortc/aioice/pylibsrtp whose internals the glue was not written against."""
    if aiortc.__version__ != AIORTC_VERSION:
        raise RuntimeError(f"sfu.glue needs aiortc=={AIORTC_VERSION}, found {aiortc.__version__}")
    if not aioice.__version__.startswith(AIOICE_VERSION_PREFIX):
        raise RuntimeError(f"sfu.glue needs aioice {AIOICE_VERSION_PREFIX}x, found {aioice.__version__}")
    if pylibsrtp.__version__ != PYLIBSRTP_VERSION:
        raise RuntimeError(f"sfu.glue needs pylibsrtp=={PYLIBSRTP_VERSION}, found {pylibsrtp.__version__}")
