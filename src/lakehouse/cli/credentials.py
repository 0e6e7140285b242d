"""The CLI's stored login: which server, and the token `lakehouse login` got from it.

One file per person, not per install: ``$XDG_CONFIG_HOME/lakehouse/credentials.json`` (by default
``~/.config/lakehouse/credentials.json``), as `gh` keeps ``~/.config/gh/hosts.yml``. Not in
``LAKEHOUSE_HOME``: that is the server's data folder (by default ``./.lakehouse``, relative to where a
command runs, and often owned by a service account), while the login belongs to the person typing, from
any folder, to a server that may be on another machine.

The file is created with mode 0600 under a temporary name (``O_CREAT | O_EXCL``) and renamed into place,
so it is never seen half-written or readable by others; a file that group or others may read, or that
belongs to another user, is refused. Standard library only: `lakehouse sql` reads it on its fast path.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

FILE_NAME = "credentials.json"
RELOGIN = "run `lakehouse login` again"


class CredentialError(Exception):
    """A stored login that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class Credential:
    server: str
    user: str
    token: str = field(repr=False)  # never in a repr, a log line or a traceback's locals
    name: str = ""
    role: str = ""
    expires_at: str | None = None


def default_server() -> str:
    """Where `lakehouse up` listens: ``LAKEHOUSE_SERVER``, else this machine on ``LAKEHOUSE_PORT``."""
    return os.environ.get("LAKEHOUSE_SERVER") or f"http://127.0.0.1:{os.environ.get('LAKEHOUSE_PORT', '8000')}"


def path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"  # relative: ignored (XDG spec)
    return root / "lakehouse" / FILE_NAME


def load(where: Path | None = None, *, check_mode: bool = True) -> Credential | None:
    """The stored login, or None when there is none. ``CredentialError`` when the file may be read by
    group or others (``check_mode``), belongs to another user, or is not a stored login."""
    where = where or path()
    try:
        fd = os.open(where, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CredentialError(f"cannot read {where}: {exc.strerror}") from None
    with os.fdopen(fd, encoding="utf-8") as f:
        st = os.fstat(f.fileno())
        if check_mode and st.st_mode & 0o077:
            raise CredentialError(f"{where} may be read by others (mode {st.st_mode & 0o777:o}): "
                                  f"run `chmod 600 {where}`")
        if check_mode and hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise CredentialError(f"{where} belongs to another user: remove it and {RELOGIN}")
        raw = f.read(1 << 16)
    try:
        doc = json.loads(raw)
        return Credential(server=str(doc["server"]), user=str(doc["user"]), token=str(doc["token"]),
                          name=str(doc.get("name", "")), role=str(doc.get("role", "")),
                          expires_at=None if doc.get("expires_at") is None else str(doc["expires_at"]))
    except (ValueError, KeyError, TypeError):
        raise CredentialError(f"{where} is not a stored login: {RELOGIN}") from None


def save(cred: Credential, where: Path | None = None) -> Path:
    """Write the login atomically with mode 0600 (a temporary file created exclusively, then renamed)."""
    import secrets

    where = where or path()
    where.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = where.parent / f".{where.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)  # whatever the umask
            json.dump(asdict(cred), f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, where)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return where


def delete(where: Path | None = None) -> bool:
    """Remove the stored login; whether there was one."""
    try:
        (where or path()).unlink()
    except FileNotFoundError:
        return False
    return True


def resolve(server: str | None) -> tuple[str, str | None, str]:
    """(server URL, token, source) in the CLI's order: ``LAKEHOUSE_TOKEN`` ("env"; server: ``--server``,
    else ``LAKEHOUSE_SERVER`` or this machine), else the stored login ("stored"; server: ``--server``, else
    the one it was made on), else no token ("none"). ``CredentialError`` for a stored login that may not
    be used."""
    token = os.environ.get("LAKEHOUSE_TOKEN")
    if token:
        return (server or default_server()).rstrip("/"), token, "env"
    cred = load()
    if cred is not None:
        return (server or cred.server).rstrip("/"), cred.token, "stored"
    return (server or default_server()).rstrip("/"), None, "none"


def stale_message(url: str, source: str) -> str:
    """What to say when the server answers 401 to the token from ``source``."""
    if source == "stored":
        return f"the stored login for {url} is no longer valid (revoked or expired): {RELOGIN}"
    return f"LAKEHOUSE_TOKEN is not valid on {url} (revoked or expired)"
