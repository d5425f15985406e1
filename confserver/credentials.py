"""The API key and secret: from config, or created once and kept in a 0600 file so a restart
keeps issued tokens valid. The same file tells confctl on this machine where and how to connect."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .tokens import new_api_key, new_api_secret


@dataclass(frozen=True)
class ApiCredentials:
    api_key: str
    api_secret: str
    source: str
    """``config`` or the path of the credentials file."""


def ensure_credentials(cfg: Config, *, cacert: Path | None) -> ApiCredentials:
    """Configured credentials win. Otherwise read the credentials file, creating it (with a new
    key and secret) on first start, and record the URL and CA certificate for confctl."""
    if cfg.auth.api_key:
        return ApiCredentials(cfg.auth.api_key, cfg.auth.api_secret, "config")
    path = Path(os.path.expanduser(cfg.auth.credentials_file))
    data: dict[str, str] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise RuntimeError(f"cannot read credentials file {path}: {e}") from None
        if isinstance(loaded, dict):
            data = {k: v for k, v in loaded.items() if isinstance(k, str) and isinstance(v, str)}
    if not data.get("api_key") or len(data.get("api_secret", "")) < 32:
        data["api_key"] = new_api_key()
        data["api_secret"] = new_api_secret()
    data["url"] = cfg.public_url
    if cacert is not None:
        data["cacert"] = str(cacert.resolve())
    else:
        data.pop("cacert", None)
    _write_private(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return ApiCredentials(data["api_key"], data["api_secret"], str(path))


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
