"""Templates, formatting filters and the page dependencies shared by every page."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from lakehouse import __version__
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.domain.states import PhaseStatus
from lakehouse.domain.status_look import look
from lakehouse.services.context import Context
from lakehouse.services.sessions import Session, client_address

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")



class LoginRequired(Exception):
    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def status_badge(status: str | None, label: str | None = None) -> Markup:
    """One colour (the CSS class), one icon and one word per status: domain/status_look.py, which the
    terminal uses too."""
    key = status or PhaseStatus.PENDING.value
    lk = look(key)
    return Markup('<span class="status s-{k}"><span aria-hidden="true">{i}</span> {w}</span>').format(
        k=key, i=lk.icon, w=label or lk.word)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{int(seconds * 1000)} ms"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} m {s} s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h} h {m:02d} m"
    d, h = divmod(h, 24)
    return f"{d} d {h} h"


def span(start: datetime | None, end: datetime | None, now: datetime | None = None) -> str:
    if start is None:
        return "—"
    return duration(((end or now or datetime.now(UTC)) - start).total_seconds())


def ago(dt: datetime | None, now: datetime | None = None) -> Markup:
    """A relative time; the absolute time (in the viewer's zone, set by app.js) on hover."""
    if dt is None:
        return Markup("—")
    now = now or datetime.now(UTC)
    secs = (now - dt).total_seconds()
    future = secs < 0
    secs = abs(secs)
    if secs < 45:
        text = "just now"
    else:
        text = duration(secs).split(" ")[0] + " " + duration(secs).split(" ")[1]
        text = f"in {text}" if future else f"{text} ago"
    iso = dt.astimezone(UTC).isoformat(timespec="seconds")
    absolute = dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{iso}" title="{abs}" data-rel>{t}</time>').format(iso=iso, abs=absolute, t=text)


def short(value: str | None, n: int = 8) -> str:
    value = value or ""
    return value.split(":", 1)[1][:n] if value.startswith("sha256:") else value[:n]


def short_sha(value: str | None, n: int = 7) -> str:
    """A git sha cut to ``n`` characters that keeps what matters: ``-dirty`` and the ``sha256:`` marker."""
    value = value or ""
    if value.startswith("sha256:"):
        return "sha256:" + value[7:7 + n]
    head, dirty, _ = value.partition("-dirty")
    return head[:n] + ("-dirty" if dirty else "")


def clock(dt: datetime | None, start: datetime | None = None) -> Markup:
    """An event time as clock time (the viewer's zone, set by app.js) and its offset from ``start``
    (the run's creation): ``09:14:03 +1 m 12 s`` — what Dagster's and GitHub's logs show."""
    if dt is None:
        return Markup("—")
    iso = dt.astimezone(UTC).isoformat(timespec="milliseconds")
    text = dt.astimezone(UTC).strftime("%H:%M:%S")
    offset = ""
    if start is not None:
        secs = (dt - start).total_seconds()
        offset = ("+" if secs >= 0 else "-") + duration(abs(secs))
    return Markup('<time datetime="{iso}" title="{abs}" data-clock>{t}</time>{o}').format(
        iso=iso, abs=dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC", t=text,
        o=Markup(' <span class="offset">{}</span>').format(offset) if offset else "")


def absolute(dt: datetime | None) -> Markup:
    """An absolute time (rewritten into the viewer's zone by app.js)."""
    if dt is None:
        return Markup("—")
    iso = dt.astimezone(UTC).isoformat(timespec="seconds")
    return Markup('<time datetime="{iso}" data-abs>{t}</time>').format(
        iso=iso, t=dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"))


def number(value: Any) -> str:
    """Thousands separated, as a result grid and a catalog show counts (``1,234,567``)."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value):  # exact decimals arrive as text
        whole, _, frac = value.lstrip("-").partition(".")
        return ("-" if value.startswith("-") else "") + f"{int(whole):,}" + (f".{frac}" if frac else "")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def slo(seconds: float | None) -> str:
    """An SLO as people state it: ``24 h``, ``2 h``, ``90 m``, ``2 d``."""
    if seconds is None:
        return "—"
    m = round(seconds / 60)
    if m % (24 * 60) == 0 and m >= 48 * 60:
        return f"{m // (24 * 60)} d"
    if m % 60 == 0:
        return f"{m // 60} h"
    return f"{m} m"


def plural(n: int | None, word: str, many: str | None = None) -> str:
    """``1 snapshot`` / ``3 snapshots`` — never ``1 snapshot(s)``."""
    n = n or 0
    return f"{number(n)} {word if n == 1 else (many or word + 's')}"


def tojson_script(value: Any) -> Markup:
    """JSON for a <script type="application/json"> block (safe against </script>)."""
    raw = orjson.dumps(value, default=str).decode()
    return Markup(raw.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def pretty_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS, default=str).decode()


def nbytes(n: int | None) -> str:
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def query_url(request: Request, **changes: Any) -> str:
    """The current URL with some query parameters changed (None removes one)."""
    params = dict(request.query_params)
    for k, v in changes.items():
        if v is None or v == "":
            params.pop(k, None)
        else:
            params[k] = str(v)
    return request.url.path + ("?" + urlencode(params) if params else "")


env = templates.env
env.filters.update(status=status_badge, duration=duration, ago=ago, short=short, tojson_script=tojson_script,
                   pretty_json=pretty_json, nbytes=nbytes, urlquote=lambda v: quote(str(v), safe=""),
                   short_sha=short_sha, clock=clock, slo=slo, absolute=absolute, number=number, plural=plural)
env.globals.update(span=span, version=__version__, Action=Action, query_url=query_url)


def context(request: Request) -> Context:
    return request.app.state.ctx  # type: ignore[no-any-return]


def session(request: Request) -> Session:
    s = getattr(request.state, "session", None)
    if s is None:
        nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(nxt)
    return s  # type: ignore[no-any-return]


def user(request: Request) -> Principal:
    return session(request).principal


def address(request: Request) -> str | None:
    """The socket peer, or the client a trusted proxy names in X-Forwarded-For (``trusted_proxies``)."""
    peer = request.client.host if request.client else None
    return client_address(peer, request.headers.getlist("x-forwarded-for"),
                          request.app.state.ctx.settings.trusted_proxies)


def mark_web(request: Request) -> None:
    request.scope["lakehouse_web"] = True


def page(request: Request, template: str, status_code: int = 200, **data: Any) -> HTMLResponse:
    s: Session | None = getattr(request.state, "session", None)
    p = s.principal if s else None
    ctx: Context = request.app.state.ctx
    data.setdefault("now", ctx.clock())
    return templates.TemplateResponse(request, template, {
        "user": p, "csrf_token": s.csrf_token if s else "", "can": (lambda a: bool(p and p.can(a))),
        "nav": data.pop("nav", ""), **data}, status_code=status_code)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    titles = {400: "Bad request", 401: "Log in", 403: "Not allowed", 404: "Not found", 409: "Conflict",
              422: "Check the form", 429: "Slow down"}
    return page(request, "error.html", status_code=status, title=titles.get(status, "Error"),
                message=str(escape(message)))
