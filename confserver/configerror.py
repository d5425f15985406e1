"""``ConfigError``: the one exception configuration loading and checking raise (re-exported by
``confserver.config``); in its own module so the section modules can raise it too."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration key is unknown or its value is invalid; the message names the key."""
