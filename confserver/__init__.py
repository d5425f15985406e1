"""confserver: the signaling service of a self-hostable video-conferencing system."""

__version__ = "0.1.0"
