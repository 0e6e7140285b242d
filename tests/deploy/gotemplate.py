"""A small renderer for the subset of Go templates (with Helm's functions) that our chart uses.

No Helm binary can be installed here (it is not on PyPI or npm, and nothing is downloaded at test time),
so the chart is rendered by this module and the result is checked like `helm template` output would be.
It supports what deploy/helm/lakehouse/templates/ uses and fails loudly on anything else:

* actions ``{{ pipeline }}`` with ``{{-``/``-}}`` trimming and ``{{/* comments */}}``;
* ``if``/``else if``/``else``, ``with``/``else``, ``range`` (lists and maps, optional ``$k, $v :=``),
  ``define`` and ``include``;
* pipelines of fields (``.Values.a.b``, ``$``, ``$var.x``), literals, parenthesised pipelines and the
  functions in :data:`FUNCS` (Helm's ``default``, ``quote``, ``toYaml``, ``nindent``, ``required``, …).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml


class TemplateError(Exception):
    pass


# --- lexing -----------------------------------------------------------------------------------------

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)


def _lex(src: str) -> list[tuple[str, str]]:
    """[("text", s) | ("action", body)] with Go's whitespace trimming applied."""
    out: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(src):
        text = src[pos:m.start()]
        if trim_next:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        out.append(("text", text))
        body = m.group(2).strip()
        if not (body.startswith("/*") and body.endswith("*/")):
            out.append(("action", body))
        trim_next = bool(m.group(3))
        pos = m.end()
    tail = src[pos:]
    out.append(("text", tail.lstrip() if trim_next else tail))
    return out


_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|(`[^`]*`)|(\()|(\))|(\|)|(:=)|(,)|([^\s()|,]+))')


def _tokens(expr: str) -> list[str]:
    toks: list[str] = []
    pos = 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None or m.end() == pos:
            raise TemplateError(f"cannot read {expr[pos:]!r}")
        toks.append(next(g for g in m.groups() if g is not None))
        pos = m.end()
    return toks


# --- parsing ----------------------------------------------------------------------------------------

@dataclass
class Node:
    kind: str  # text, action, if, with, range, define
    value: str = ""
    branches: list[tuple[str | None, list[Node]]] = field(default_factory=list)  # (condition, body)
    variables: list[str] = field(default_factory=list)


def parse(src: str) -> tuple[list[Node], dict[str, list[Node]]]:
    """The node tree of a template and the templates it ``define``s."""
    defines: dict[str, list[Node]] = {}
    items = _lex(src)
    pos = 0

    def block(stop: tuple[str, ...]) -> tuple[list[Node], str]:
        nonlocal pos
        nodes: list[Node] = []
        while pos < len(items):
            kind, body = items[pos]
            pos += 1
            if kind == "text":
                if body:
                    nodes.append(Node("text", body))
                continue
            word = body.split(None, 1)[0] if body else ""
            if word in stop or (word == "else" and "else" in stop):
                return nodes, body
            if word in ("if", "with", "range"):
                nodes.append(control(word, body[len(word):].strip()))
            elif word == "define":
                name = _literal(body[len("define"):].strip())
                inner, end = block(("end",))
                if end != "end":
                    raise TemplateError(f"define {name} has no end")
                defines[name] = inner
            elif word in ("end", "else"):
                raise TemplateError(f"unexpected {{{{ {body} }}}}")
            else:
                nodes.append(Node("action", body))
        if stop:
            raise TemplateError(f"missing {{{{ end }}}} (waiting for {stop})")
        return nodes, ""

    def control(word: str, head: str) -> Node:
        node = Node(word)
        if word == "range" and ":=" in head:
            names, _, head = head.partition(":=")
            node.variables = [n.strip() for n in names.split(",")]
        cond: str | None = head.strip()
        while True:
            body, end = block(("end", "else"))
            node.branches.append((cond, body))
            if end == "end":
                return node
            rest = end[len("else"):].strip()
            if rest.startswith("if "):
                cond = rest[3:].strip()
            elif not rest:
                cond = None
            else:
                raise TemplateError(f"unsupported {{{{ {end} }}}}")

    nodes, _ = block(())
    return nodes, defines


def _literal(tok: str) -> str:
    if tok.startswith('"'):
        return str(yaml.safe_load(tok))  # JSON-style escapes
    if tok.startswith("`"):
        return tok[1:-1]
    raise TemplateError(f"expected a string, got {tok!r}")


# --- evaluation -------------------------------------------------------------------------------------

def _truthy(v: Any) -> bool:
    return bool(v) if v is not None else False


def _to_yaml(v: Any) -> str:
    if v is None:
        return ""
    return yaml.safe_dump(v, default_flow_style=False, sort_keys=True).rstrip("\n")


def _indent(n: int, s: str) -> str:
    pad = " " * n
    return "\n".join(pad + line for line in str(s).split("\n"))


def _required(msg: str, v: Any) -> Any:
    if v is None or v == "":
        raise TemplateError(f"required: {msg}")
    return v


def _go_printf(fmt: str, *args: Any) -> str:
    out = re.sub(r"%[sdv]", lambda _: "{}", fmt)
    return out.format(*[_go_str(a) for a in args])


def _go_str(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


FUNCS: dict[str, Callable[..., Any]] = {
    "quote": lambda *v: " ".join('"' + _go_str(x).replace("\\", "\\\\").replace('"', '\\"') + '"' for x in v),
    "default": lambda d, v=None: v if _truthy(v) else d,
    "toYaml": _to_yaml,
    "nindent": lambda n, s: "\n" + _indent(n, s),
    "indent": _indent,
    "required": _required,
    "printf": _go_printf,
    "trunc": lambda n, s: str(s)[:n],
    "trimSuffix": lambda suf, s: str(s)[: -len(suf)] if suf and str(s).endswith(suf) else str(s),
    "contains": lambda sub, s: sub in str(s),
    "not": lambda v: not _truthy(v),
    "and": lambda *v: next((x for x in v if not _truthy(x)), v[-1]),
    "or": lambda *v: next((x for x in v if _truthy(x)), v[-1]),
    "eq": lambda a, *b: any(a == x for x in b),
    "ne": lambda a, b: a != b,
    "dict": lambda *kv: {kv[i]: kv[i + 1] for i in range(0, len(kv), 2)},
    "list": lambda *v: list(v),
}


class Renderer:
    def __init__(self, defines: dict[str, list[Node]]) -> None:
        self.defines = defines

    def render(self, nodes: list[Node], dot: Any, vars_: dict[str, Any]) -> str:
        out: list[str] = []
        for node in nodes:
            if node.kind == "text":
                out.append(node.value)
            elif node.kind == "action":
                value = self.pipeline(_tokens(node.value), dot, vars_)
                out.append(_go_str(value) if not isinstance(value, dict | list) else _to_yaml(value))
            elif node.kind == "if":
                for cond, body in node.branches:
                    if cond is None or _truthy(self.pipeline(_tokens(cond), dot, vars_)):
                        out.append(self.render(body, dot, vars_))
                        break
            elif node.kind == "with":
                (cond, body), *rest = node.branches
                value = self.pipeline(_tokens(cond or ""), dot, vars_)
                if _truthy(value):
                    out.append(self.render(body, value, vars_))
                elif rest:
                    out.append(self.render(rest[0][1], dot, vars_))
            elif node.kind == "range":
                (cond, body), *rest = node.branches
                seq = self.pipeline(_tokens(cond or ""), dot, vars_)
                pairs = sorted(seq.items()) if isinstance(seq, dict) else list(enumerate(seq or []))
                if not pairs and rest:
                    out.append(self.render(rest[0][1], dot, vars_))
                for key, item in pairs:
                    scope = dict(vars_)
                    if len(node.variables) == 2:
                        scope[node.variables[0]], scope[node.variables[1]] = key, item
                    elif len(node.variables) == 1:
                        scope[node.variables[0]] = item
                    out.append(self.render(body, item, scope))
        return "".join(out)

    def pipeline(self, toks: list[str], dot: Any, vars_: dict[str, Any]) -> Any:
        commands: list[list[str]] = [[]]
        depth = 0
        for tok in toks:
            if tok == "|" and depth == 0:
                commands.append([])
                continue
            depth += (tok == "(") - (tok == ")")
            commands[-1].append(tok)
        value: Any = _NOTHING
        for cmd in commands:
            value = self.command(cmd, dot, vars_, value)
        return value

    def command(self, toks: list[str], dot: Any, vars_: dict[str, Any], piped: Any) -> Any:
        args: list[Any] = []
        i = 0
        head = toks[0] if toks else ""
        is_func = head in FUNCS or head in ("include",)
        if is_func:
            i = 1
        while i < len(toks):
            tok = toks[i]
            if tok == "(":
                depth, j = 1, i + 1
                while depth:
                    depth += (toks[j] == "(") - (toks[j] == ")")
                    j += 1
                args.append(self.pipeline(toks[i + 1:j - 1], dot, vars_))
                i = j
                continue
            args.append(self.operand(tok, dot, vars_))
            i += 1
        if piped is not _NOTHING:
            args.append(piped)
        if head == "include":
            name, data = args
            return self.render(self.defines[name], data, {"$": data})
        if is_func:
            return FUNCS[head](*args)
        if len(args) != 1:
            raise TemplateError(f"cannot evaluate {' '.join(toks)!r}")
        return args[0]

    def operand(self, tok: str, dot: Any, vars_: dict[str, Any]) -> Any:
        if tok.startswith(('"', "`")):
            return _literal(tok)
        if re.fullmatch(r"-?\d+", tok):
            return int(tok)
        if tok in ("true", "false"):
            return tok == "true"
        if tok == "nil":
            return None
        if tok == ".":
            return dot
        if tok.startswith("."):
            return _field(dot, tok[1:].split("."))
        if tok.startswith("$"):
            name, _, path = tok.partition(".")
            if name not in vars_:
                raise TemplateError(f"undefined variable {name}")
            return _field(vars_[name], path.split(".")) if path else vars_[name]
        raise TemplateError(f"unknown function or operand {tok!r}")


_NOTHING = object()


def _field(value: Any, path: list[str]) -> Any:
    for name in path:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise TemplateError(f"cannot take .{name} of {type(value).__name__}")
        value = value.get(name)
    return value


# --- the chart --------------------------------------------------------------------------------------

def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def render_chart(chart_dir: Any, values: dict[str, Any] | None = None, release: str = "lh",
                 namespace: str = "lakehouse") -> list[tuple[str, dict[str, Any]]]:
    """Every manifest the chart renders (like ``helm template``), parsed, in file order, with the name of
    the template file it came from."""
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    vals = deep_merge(yaml.safe_load((chart_dir / "values.yaml").read_text()), values or {})
    root = {"Values": vals, "Release": {"Name": release, "Namespace": namespace, "Service": "Helm"},
            "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"]}}
    defines: dict[str, list[Node]] = {}
    files = sorted((chart_dir / "templates").iterdir())
    parsed = []
    for path in files:
        nodes, found = parse(path.read_text())
        defines.update(found)
        parsed.append((path, nodes))
    renderer = Renderer(defines)
    docs: list[tuple[str, dict[str, Any]]] = []
    for path, nodes in parsed:
        if path.name.startswith("_"):
            continue
        text = renderer.render(nodes, root, {"$": root})
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append((path.name, doc))
    return docs
