"""The Caps page: every runtime cap the user may read, usage vs limit now and who is throttled.
Caps are set through the API or ``lakehouse caps set`` (docs/operations.md, Caps)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from lakehouse.domain.principal import Principal
from lakehouse.services import caps
from lakehouse.web.render import context, mark_web, page, user

router = APIRouter(include_in_schema=False, dependencies=[Depends(mark_web)])


@router.get("/caps")
def caps_page(request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    rows = caps.report(context(request), p)
    return page(request, "caps.html", nav="caps", rows=rows)
