"""`lakehouse login` / `logout` / `whoami`: a stored CLI login, as `gh auth login` and `databricks auth
login` keep one, so that `lakehouse sql` asks the running server without ``LAKEHOUSE_TOKEN``.

`login` trades the password (typed at a prompt that does not echo it, or ``--password-stdin``; never an
argument, which `ps` and the shell history would show) for a token of the user's own through
``POST /api/tokens``: role analyst (reads and SQL, or the user's role when lower), 30 days, named
``lakehouse login · <host>`` on the Users page, where an admin can revoke it. The token and the server
are stored by ``lakehouse.cli.credentials`` (mode 0600). `logout` revokes the token on the server (best
effort) and deletes the file. The token is never printed.
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import urlsplit

import typer

from lakehouse.cli import credentials
from lakehouse.cli.credentials import Credential, CredentialError, stale_message


def _fail(message: str) -> None:
    from lakehouse.cli.common import fail

    fail(message)


def _error_message(r: Any, default: str) -> str:
    try:
        return str(r.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return default


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def login(server: str | None = typer.Option(None, "--server",
                                            help="the server's URL (default LAKEHOUSE_SERVER, else "
                                                 "http://127.0.0.1:$LAKEHOUSE_PORT)"),
          user: str | None = typer.Option(None, "--user", help="your user name (default: asked)"),
          password_stdin: bool = typer.Option(False, "--password-stdin",
                                              help="read the password from the first line of stdin"),
          ) -> None:
    """Log in to a server and store a token for the CLI (`lakehouse sql` then runs on the server)."""
    import getpass
    import socket

    import httpx

    from lakehouse.cli.common import err_console

    url = (server or credentials.default_server()).rstrip("/")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        _fail(f"--server must be an http(s) URL, not {url!r}")
    if password_stdin and not user:
        _fail("--password-stdin needs --user")
    name = user or typer.prompt("User", default=_os_user())
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {name} at {url}: ")
    if not password:
        _fail("no password given")
    if urlsplit(url).scheme == "http" and not _loopback(url):
        err_console.print(f"[yellow]warning:[/] {url} is plain HTTP: the password and the token cross the "
                          "network unencrypted", highlight=False)
    try:
        r = httpx.post(f"{url}/api/tokens", json={"user": name, "password": password,
                                                  "client": socket.gethostname()}, timeout=60)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the server at {url} ({type(exc).__name__}): start it (`lakehouse up`) or "
              "give --server")
        return
    if r.status_code != 201:
        _fail(_error_message(r, f"the server at {url} answered HTTP {r.status_code}"))
    got = r.json()
    cred = Credential(server=url, user=got["user"], token=got["token"], name=got["name"], role=got["role"],
                      expires_at=got["expires_at"])
    try:
        old = credentials.load(check_mode=False)
    except CredentialError:
        old = None
    where = credentials.save(cred)
    if old is not None and old.token != cred.token:
        _revoke(old)  # the login it replaces: best effort
    print(f"Logged in to {url} as {cred.user} (token \"{cred.name}\", role {cred.role}, expires "
          f"{cred.expires_at[:10] if cred.expires_at else 'never'}); stored in {where}. "
          "`lakehouse logout` revokes it.")


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _revoke(cred: Credential) -> str:
    """Revoke a stored token on its server: "revoked", "invalid" (already revoked or expired) or
    "unreachable"."""
    import httpx

    try:
        r = httpx.delete(f"{cred.server}/api/tokens/current", headers={"Authorization": f"Bearer {cred.token}"},
                         timeout=15)
    except httpx.HTTPError:
        return "unreachable"
    if r.status_code == 204:
        return "revoked"
    return "invalid" if r.status_code in (401, 404) else "unreachable"


def logout() -> None:
    """Revoke the stored token on its server (best effort) and delete the stored login."""
    where = credentials.path()
    try:
        cred = credentials.load(where, check_mode=False)  # a file with a wrong mode is still logged out
    except CredentialError:
        cred = None
    if cred is None:
        existed = credentials.delete(where)
        print(f"Removed {where}, which held no usable login." if existed else "Not logged in.")
        return
    outcome = _revoke(cred)
    credentials.delete(where)
    if outcome == "unreachable":
        from lakehouse.cli.common import err_console

        err_console.print(f"[yellow]warning:[/] could not reach {cred.server} to revoke the token "
                          f"\"{cred.name}\": it stays valid until {cred.expires_at or 'revoked'} unless an admin "
                          "revokes it on the Users page", highlight=False)
    done = {"revoked": "token revoked", "invalid": "token was already revoked or expired",
            "unreachable": "token not revoked"}[outcome]
    print(f"Logged out of {cred.server} ({done}); deleted {where}.")


def whoami(server: str | None = typer.Option(None, "--server", help="ask this server (default: the stored "
                                                                      "login's, or LAKEHOUSE_SERVER)")) -> None:
    """Who the CLI acts as on the server: LAKEHOUSE_TOKEN, else the stored login."""
    import httpx

    url, token, source = resolve(server)
    if token is None:
        _fail("not logged in: run `lakehouse login` (or set LAKEHOUSE_TOKEN)")
        return
    try:
        r = httpx.get(f"{url}/api/tokens/current", headers={"Authorization": f"Bearer {token}"}, timeout=15)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the server at {url} ({type(exc).__name__})")
        return
    if r.status_code == 401:
        _fail(stale_message(url, source))
    if r.status_code != 200:
        _fail(_error_message(r, f"the server at {url} answered HTTP {r.status_code}"))
    me = r.json()
    expires = (me["expires_at"] or "never")[:19].replace("T", " ")
    print(f"{me['user']} on {url}, role {me['role']}, token expires {expires} "
          f"({'LAKEHOUSE_TOKEN' if source == 'env' else credentials.path()})")


def resolve(server: str | None) -> tuple[str, str | None, str]:
    """``credentials.resolve``; a stored login that may not be used is a one-line error."""
    try:
        return credentials.resolve(server)
    except CredentialError as exc:
        _fail(str(exc))
        raise  # unreachable
