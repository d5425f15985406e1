"""WebSocket signaling: the wire protocol, transport-agnostic sessions and the aiohttp adapter."""
