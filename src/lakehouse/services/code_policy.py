"""Who may run code where: a run is refused at creation when it would call Python that an admin did
not register (docs/security.md). The worker checks the same rule again before importing anything."""

from __future__ import annotations

from typing import Any

from lakehouse.domain.runs import RunRequest
from lakehouse.services.errors import InvalidInput
from lakehouse.settings import Settings


def python_targets(req: RunRequest) -> list[tuple[str, Any]]:
    """(where, target) of every Python callable a run would call: ``python`` phases and the Python
    transforms of a pipeline spec carried in the input manifest."""
    found: list[tuple[str, Any]] = []
    for p in req.phases:
        if p.type == "python" or p.effective_capability == "python":
            found.append((f"phases[{p.name}].params.callable", (p.params or {}).get("callable")))
        elif p.type == "spark" and (p.params or {}).get("callable") is not None:  # a PySpark function
            found.append((f"phases[{p.name}].params.callable", p.params["callable"]))
    spec = (req.input_manifest or {}).get("spec")
    if isinstance(spec, dict):
        for i, t in enumerate(spec.get("transforms") or []):
            if isinstance(t, dict) and t.get("python") is not None:
                found.append((f"input_manifest.spec.transforms[{i}].python", t["python"]))
    return found


def check_run(settings: Settings, req: RunRequest) -> None:
    """Refuse a run whose inline pipeline spec is invalid or that would call unregistered Python."""
    from lakehouse.handlers.python import is_allowed

    _check_spec(req)
    for where, target in python_targets(req):
        if not isinstance(target, str) or not is_allowed(target, settings.python_modules):
            raise InvalidInput(
                f"{where}: {target!r} is not a Python function an admin registered "
                "(LAKEHOUSE_PYTHON_MODULES or the lakehouse.python entry points)",
                code="python_not_allowed", details={"field": where})


def _check_spec(req: RunRequest) -> None:
    from pydantic import ValidationError

    from lakehouse.domain.pipelines import PipelineSpec

    spec = (req.input_manifest or {}).get("spec")
    if spec is None:
        return
    try:
        PipelineSpec.model_validate(spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "input_manifest.spec." + ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"{where}: {first['msg'].removeprefix('Value error, ')}", code="invalid_spec",
                           details={"field": where, "errors": len(exc.errors())}) from None
