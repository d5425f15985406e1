"""Rooms on this node.

``admin`` (``RoomAdmin``): rooms in the store and the checks of their fields. ``hub`` (``Hub``): the
peers connected here, one ``Seat`` each, and everything sent to them. ``service``
(``RoomService``): what needs both, joins and leaves with the exact seat cap, leases, moderation,
room updates and the empty-timeout sweep.
"""

from .admin import (
    MAX_EMPTY_TIMEOUT,
    MAX_METADATA_BYTES,
    ROOM_NAME_RE,
    RoomAdmin,
    check_empty_timeout,
    check_max_participants,
    check_metadata,
    check_room_name,
    claim_error,
    room_info,
)
from .hub import DEFAULT_STATE, Hub, Peer, Seat, participant_info
from .service import REJOIN_GRACE, UNPLANNED, JoinRequest, RoomService

__all__ = [
    "DEFAULT_STATE",
    "MAX_EMPTY_TIMEOUT",
    "MAX_METADATA_BYTES",
    "REJOIN_GRACE",
    "ROOM_NAME_RE",
    "UNPLANNED",
    "Hub",
    "JoinRequest",
    "Peer",
    "RoomAdmin",
    "RoomService",
    "Seat",
    "check_empty_timeout",
    "check_max_participants",
    "check_metadata",
    "check_room_name",
    "claim_error",
    "participant_info",
    "room_info",
]
