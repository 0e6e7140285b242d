"""`lakehouse secrets …`: the key that encrypts connection secrets."""

from __future__ import annotations

import os

import typer
from cryptography.fernet import Fernet

from lakehouse.cli.common import console, context, fail, one_line_errors
from lakehouse.domain.principal import SYSTEM
from lakehouse.services import connections

app = typer.Typer(help="Connection secrets (encrypted at rest with LAKEHOUSE_SECRET_KEY).", no_args_is_help=True)


@app.command("rotate-key")
@one_line_errors
def rotate_key(new_key: str = typer.Option(None, "--new-key", help="use this Fernet key instead of a new one"),
               keep_old: bool = typer.Option(True, "--keep-old/--drop-old",
                                             help="keep the old key as a decrypt-only fallback")) -> None:
    """Re-encrypt every connection secret with a new key and make it the primary key.

    When the key lives in LAKEHOUSE_HOME/secret.key the file is rewritten; when it comes from the
    LAKEHOUSE_SECRET_KEY variable, the new value is printed and must replace it before the next start.
    """
    ctx = context()
    key = new_key or Fernet.generate_key().decode()
    try:
        Fernet(key.encode())
    except ValueError:
        fail("--new-key is not a valid Fernet key (32 url-safe base64-encoded bytes)")
    old = ctx.settings.secret_key
    n = connections.rotate_key(ctx, key, SYSTEM)
    value = f"{key},{old}" if keep_old else key
    if os.environ.get("LAKEHOUSE_SECRET_KEY"):
        console.print(f"re-encrypted {n} connection{'' if n == 1 else 's'}. Set LAKEHOUSE_SECRET_KEY to the value "
                      "below on every "
                      "process, then restart them:", highlight=False)
        print(value)
    else:
        key_file = ctx.settings.home / "secret.key"
        tmp = key_file.with_suffix(".tmp")
        tmp.write_text(value + "\n")
        tmp.chmod(0o600)
        tmp.replace(key_file)
        console.print(f"re-encrypted {n} connection{'' if n == 1 else 's'}; the new key is in {key_file}. "
                      "Restart running servers "
                      "and workers.", highlight=False)
    ctx.db.dispose()
