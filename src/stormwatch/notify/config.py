"""The notifier's own settings file: the SMTP server defaults and, if the operator wants it there,
the SMTP password.

Where: ``--config FILE``, else ``$STORMWATCH_NOTIFY_CONFIG``, else
``$XDG_CONFIG_HOME/stormwatch/notify.toml`` (``~/.config/stormwatch/notify.toml``); a missing file
is no settings. TOML (https://toml.io/en/v1.0.0, read with :mod:`tomllib`)::

    [smtp]
    host = "mail.example.org"
    port = 587
    tls = "starttls"          # starttls (default), ssl (implicit TLS, port 465) or none
    user = "stormwatch"
    from = "stormwatch@example.org"
    password_env = "STORMWATCH_SMTP_PASSWORD"   # name of the variable holding the password
    # password = "..."        # allowed only if the file is readable by its owner alone
    cafile = "/etc/ssl/certs/internal-ca.pem"

A subscription's own options (``smtp_host``, ``smtp_user``, ``smtp_password_env`` ...) take
precedence over this file. The password is looked up at send time: the variable named by the
subscription, else the one named here, else ``password`` here, else ``$STORMWATCH_SMTP_PASSWORD``.
It is never stored in the database and never printed.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stormwatch.notify.model import NotifyError

CONFIG_ENV = "STORMWATCH_NOTIFY_CONFIG"
PASSWORD_ENV = "STORMWATCH_SMTP_PASSWORD"
SMTP_KEYS = frozenset({"host", "port", "tls", "user", "from", "password_env", "password", "cafile", "timeout"})


@dataclass(frozen=True)
class NotifyConfig:
    smtp: dict[str, Any] = field(default_factory=dict, repr=False)  # repr=False: it may hold a password
    source: str | None = None


def default_path() -> Path:
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "stormwatch" / "notify.toml"


def load_config(path: str | Path | None = None) -> NotifyConfig:
    """The settings file (see the module docstring); a file given explicitly must exist."""
    p = Path(path) if path is not None else default_path()
    if not p.exists():
        if path is not None:
            raise NotifyError(f"notify config file {p} does not exist")
        return NotifyConfig()
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise NotifyError(f"cannot read notify config file {p}: {exc}") from exc
    smtp = doc.get("smtp", {})
    if not isinstance(smtp, dict):
        raise NotifyError(f"{p}: [smtp] must be a table")
    unknown = sorted(set(smtp) - SMTP_KEYS)
    if unknown:
        raise NotifyError(f"{p}: unknown [smtp] key {unknown[0]!r}; known: {', '.join(sorted(SMTP_KEYS))}")
    if "password" in smtp and p.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        # as ssh does with private keys: a password others can read is refused, not used
        raise NotifyError(f"{p} holds an SMTP password but is readable by others: chmod 600 it "
                          "(or use password_env)")
    return NotifyConfig(dict(smtp), str(p))
