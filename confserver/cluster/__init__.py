"""Several nodes serving one service: the node registry, room ownership, relayed sessions."""
