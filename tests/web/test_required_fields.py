"""Required fields are marked on every form: a red asterisk in the field's label (``aria-hidden``: the
control itself says ``required`` to a screen reader), and a legend ("* required") in the form.

Two checks: every template's source (so a form on a page no test renders is covered too), and the
rendered forms (login, account, each connection type, a connection, users, workspaces, the job form in
both modes, a job's run and backfill forms), parsed into a tree: every required control has a marked
label, every marked label belongs to a required control, every form with one has the legend.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from fastapi.testclient import TestClient

from lakehouse.services.connections import TYPES
from lakehouse.services.context import Context
from tests.web.conftest import Browser

TEMPLATES = Path(__file__).parents[2] / "src" / "lakehouse" / "web" / "templates"
MARK = re.compile(r'<span class="req" aria-hidden="true">\*</span>')
CONTROL_RE = re.compile(r"<(input|select|textarea)\b[^>]*>", re.S)
REQUIRED_ATTR = re.compile(r'(?<![.\w])required\b(?!\s*[=%}])|aria-required="true"')
VOID = {"input", "br", "meta", "link", "img", "hr", "source", "wbr", "col", "area", "base"}
JOB_FORM = {"name": "orders_daily", "type": "sql", "description": "Orders per day", "environment": "dev",
            "param_rows": "2", "param_name_0": "day", "param_type_0": "date", "param_default_0": "",
            "param_name_1": "", "sql_query": "SELECT {{ day }} AS day, 42 AS n", "sql_engine": "duckdb",
            "sql_mode": "overwrite"}


def test_required_controls_in_every_template_have_a_marked_label() -> None:
    problems = []
    for path in sorted(TEMPLATES.glob("*.html")):
        text = path.read_text()
        required = [m for m in CONTROL_RE.finditer(text) if REQUIRED_ATTR.search(m.group(0))
                    and 'type="hidden"' not in m.group(0)]
        for m in required:
            label_at = _label_of(text, m)
            if label_at < 0 or not MARK.search(text, label_at, text.find("</label>", label_at)):
                line = text.count("\n", 0, m.start()) + 1
                problems.append(f"{path.name}:{line}: {m.group(0)[:70]} has no marked label")
        if required and "req-legend" not in text:
            problems.append(f"{path.name}: required fields but no legend")
    assert not problems, "\n".join(problems)


def _label_of(text: str, control: re.Match[str]) -> int:
    """Where the control's label starts in a template: ``<label for=its id>`` or the enclosing label."""
    ident = re.search(r'\bid="([^"{]+)"', control.group(0))
    if ident and (at := text.find(f'<label for="{ident.group(1)}"')) >= 0:
        return at
    depth = 0
    for tag in reversed(list(re.finditer(r"</?label\b", text[:control.start()]))):
        if tag.group(0) == "</label":
            depth += 1
        elif depth == 0:
            return tag.start()
        else:
            depth -= 1
    return -1


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)

    def walk(self) -> Iterator[Node]:
        for c in self.children:
            yield c
            yield from c.walk()

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class Tree(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__()
        self.root = self.at = Node("#root", {})
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.at)
        self.at.children.append(node)
        if tag not in VOID:
            self.at = node

    def handle_endtag(self, tag: str) -> None:
        n: Node | None = self.at
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.at = n.parent


def _required(n: Node) -> bool:
    return n.tag in ("input", "select", "textarea") and n.attrs.get("type") != "hidden" and (
        "required" in n.attrs or n.attrs.get("aria-required") == "true")


def _marked(label: Node) -> bool:
    return any(d.tag == "span" and "req" in d.classes() and d.attrs.get("aria-hidden") == "true"
               for d in label.walk())


def form_problems(html: str, where: str) -> tuple[list[str], int]:
    """Problems of the page's forms; how many required controls it has."""
    tree = Tree(html).root
    nodes = list(tree.walk())
    by_for = {n.attrs["for"]: n for n in nodes if n.tag == "label" and "for" in n.attrs}
    problems, count = [], 0
    for form in (n for n in nodes if n.tag == "form"):
        inside = list(form.walk())
        controls = [n for n in inside if _required(n)]
        count += len(controls)
        for c in controls:
            label = c.parent
            while label is not None and label.tag != "label":
                label = label.parent
            label = label or by_for.get(c.attrs.get("id", ""))
            name = c.attrs.get("name", c.attrs.get("id", c.tag))
            if label is None or not _marked(label):
                problems.append(f"{where}: required {name} has no marked label")
        for label in (n for n in inside if n.tag == "label" and _marked(n)):
            owned = [d for d in label.walk() if d.tag in ("input", "select", "textarea")]
            target = label.attrs.get("for")
            owned += [n for n in inside if target and n.attrs.get("id") == target]
            if not any(_required(o) for o in owned):
                problems.append(f"{where}: a label is marked required but its field is not")
        if controls and not any("req-legend" in n.classes() for n in inside):
            problems.append(f"{where}: a form with required fields and no legend")
    return problems, count


def test_the_checker_finds_what_is_missing() -> None:
    bad = '<form><label>Name <input name="name" required></label></form>'
    assert form_problems(bad, "x")[0] == ["x: required name has no marked label",
                                          "x: a form with required fields and no legend"]
    lying = '<form><label>Age<span class="req" aria-hidden="true">*</span> <input name="age"></label></form>'
    assert form_problems(lying, "x")[0] == ["x: a label is marked required but its field is not"]
    good = ('<form><label for="n">Name<span class="req" aria-hidden="true">*</span></label><input id="n" required>'
            '<p class="req-legend">* required</p></form>')
    assert form_problems(good, "x") == ([], 1)


def test_every_rendered_form_marks_its_required_fields(admin_browser: Browser, anon: TestClient, ctx: Context
                                                      ) -> None:
    b = admin_browser
    r = b.post("/jobs/new", JOB_FORM)
    assert r.status_code == 303, r.text
    (ctx.settings.home / "sources").mkdir(parents=True, exist_ok=True)
    r = b.post("/connections", {"type": "sqlite", "name": "shop", "workspace": "default", "environment": "dev",
                                "f_path": str(ctx.settings.home / "sources" / "shop.db")})
    assert r.status_code == 303, r.text
    conn = re.search(r"/connections/(\d+)$", r.headers["location"])
    assert conn, r.headers["location"]
    pages = {"/login": anon.get("/login")}
    urls = ["/account", "/admin/users", "/admin/workspaces", "/jobs/new", "/jobs/default/orders_daily/edit",
            "/jobs/default/orders_daily/edit?as=yaml", "/jobs/default/orders_daily",
            "/jobs/default/orders_daily?tab=backfills", f"/connections/{conn.group(1)}",
            *(f"/connections?new={t}" for t in TYPES)]
    pages.update({u: b.get(u) for u in urls})
    problems, total = [], 0
    for url, answer in pages.items():
        assert answer.status_code == 200, (url, answer.status_code)
        found, count = form_problems(answer.text, url)
        problems += found
        total += count
    assert not problems, "\n".join(problems)
    assert total >= 20  # the pages above do have required fields: the check looked at them
