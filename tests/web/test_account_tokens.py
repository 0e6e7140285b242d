"""The account page lists a user's own API tokens — the ones `lakehouse login` made, by name — and
revokes them; another user's token cannot be revoked from there."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from lakehouse.services import auth
from lakehouse.services.context import Context
from lakehouse.store import users as user_store
from tests.web.conftest import PASSWORD, BrowserFor


def test_a_cli_login_token_is_listed_on_the_account_page_and_revoked_there(ctx: Context, browser_for: BrowserFor,
                                                                           anon: TestClient) -> None:
    minted = anon.post("/api/tokens", json={"user": "engineer", "password": PASSWORD, "client": "laptop<b>"})
    assert minted.status_code == 201, minted.text
    got = minted.json()
    assert got["role"] == "analyst" and got["name"] == "lakehouse login · laptopb"
    token = got["token"]
    other = auth.create_token(ctx, "analyst", name="someone else's")

    me = browser_for("engineer")
    page = me.get("/account")
    assert page.status_code == 200 and "lakehouse login · laptopb" in page.text and token[:10] in page.text
    assert token not in page.text and other[:10] not in page.text  # the prefix only; only one's own
    ids = re.findall(r'name="token_id" value="(\d+)"', page.text)
    assert len(ids) == 1

    with ctx.db.read() as conn:
        foreign = next(t.id for t in user_store.tokens(conn) if t.prefix == other[:10])
    assert me.post("/account/tokens/revoke", {"token_id": str(foreign)}).status_code == 404
    assert auth.authenticate_token(ctx, other).name == "analyst"  # untouched

    done = me.post("/account/tokens/revoke", {"token_id": ids[0]})
    assert done.status_code == 303 and done.headers["location"] == "/account?done=token"
    assert anon.get("/api/tokens/current", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert "revoked" in me.get("/account").text

    wrong = anon.post("/api/tokens", json={"user": "engineer", "password": "not it at all"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "bad_credentials"
    assert anon.post("/api/tokens", json={"user": "bot", "password": PASSWORD}).status_code == 403  # executors
