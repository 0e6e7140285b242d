from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from lakehouse.api.app import create_app
from lakehouse.services.context import Context


@pytest.fixture
def client(ctx: Context) -> Iterator[TestClient]:
    with TestClient(create_app(ctx, reaper=False)) as c:
        yield c


@pytest.fixture
def admin(admin_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_token}"}


@pytest.fixture
def executor(executor_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {executor_token}"}
