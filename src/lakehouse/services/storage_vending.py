"""Short-lived S3 credentials per lease: the Iceberg REST catalog's access delegation for workers.

With ``LAKEHOUSE_S3_VENDING_ROLE_ARN`` set and the warehouse on S3, a worker needs no S3 keys of its own
for its tables. The control plane — alone holding the vending identity (its own ``LAKEHOUSE_S3_*`` or
``AWS_*`` credentials, or the instance/pod role botocore finds) — calls STS ``AssumeRole`` for the run's
workspace and environment and hands the temporary credentials to the lease's catalog, as the Iceberg
REST spec's access delegation does (request header ``X-Iceberg-Access-Delegation: vended-credentials``,
answered in ``config`` and ``storage-credentials``; Polaris, Lakekeeper and Unity Catalog vend the same
way).

Two walls, both drawn at the prefixes of one (workspace, environment) — its three medallion namespaces,
``<warehouse>/<workspace>__<layer>_<env>/`` (``<layer>_<env>/`` for ``default``), the only namespaces a
lease sees, and its staging folder ``<warehouse>/_staging/<workspace>/<env>/`` (handlers/staging.py):

* **The role.** ``{workspace}`` and ``{environment}`` in the role ARN are replaced, so that an admin
  provisions one role per workspace (or per workspace and environment) whose policy grants only that
  workspace's prefixes (docs/security.md gives the policy). The control plane does not create roles:
  that would need IAM write rights, which it must not hold.
* **The session policy.** Every ``AssumeRole`` also passes a session policy naming exactly those
  prefixes: the effective rights are the intersection, so even one shared role (no placeholder) is
  scoped — on AWS and MinIO, which enforce session policies. (moto, the suite's S3, does not; the tests
  therefore use one role per workspace.)

Credentials are cached per (role, workspace, environment) and handed out while more than half their
lifetime is left, so STS sees one call per half-lifetime and workspace, not one per phase.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from lakehouse.domain.roles import Action
from lakehouse.lake.catalog import LAYERS, namespace
from lakehouse.lake.lease import staging_prefix
from lakehouse.services.context import Context
from lakehouse.services.errors import Forbidden, ServiceError

if TYPE_CHECKING:
    from lakehouse.services.iceberg_rest import Scope

DELEGATION_HEADER = "x-iceberg-access-delegation"
VENDED = "vended-credentials"
MARK = "lakehouse.vended-credentials"  # in /v1/config's defaults when this install vends
EXPIRES_AT_MS = "s3.session-token-expires-at-ms"  # Iceberg's S3FileIO property name
_S3 = ("s3://", "s3a://", "s3n://")
_OBJECT_ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                   "s3:ListMultipartUploadParts"]


class VendingUnavailable(ServiceError):
    status = 503
    code = "ServiceUnavailableException"


@dataclass(frozen=True)
class Vended:
    """Temporary credentials for some warehouse prefixes."""

    prefixes: tuple[str, ...]
    config: dict[str, str] = field(default_factory=dict)  # s3.access-key-id, s3.secret-access-key, …
    expires: float = 0.0  # epoch seconds

    def storage_credentials(self) -> list[dict[str, Any]]:
        """The spec's ``storage-credentials``: one entry per prefix (the longest matching prefix wins)."""
        return [{"prefix": p, "config": dict(self.config)} for p in self.prefixes]


def enabled(settings: Any) -> bool:
    return bool(settings.s3_vending_role_arn) and str(settings.warehouse).startswith(_S3)


def prefixes(warehouse: str, workspace: str, environment: str) -> tuple[str, ...]:
    """The warehouse prefixes of one workspace's medallion namespaces in one environment, and its
    staging prefix (where its runs stage their outputs before publishing)."""
    wh = warehouse.rstrip("/")
    return (*(f"{wh}/{namespace(layer, environment, workspace)}/" for layer in LAYERS),
            staging_prefix(wh, workspace, environment))


def session_policy(paths: tuple[str, ...]) -> str:
    """An IAM policy granting object reads and writes under ``paths`` (``s3://bucket/key-prefix/``)
    and listing only below them."""
    objects: list[str] = []
    listing: dict[str, list[str]] = {}
    for p in paths:
        u = urlparse(p)
        key = u.path.lstrip("/")
        objects.append(f"arn:aws:s3:::{u.netloc}/{key}*")
        listing.setdefault(u.netloc, []).append(f"{key}*")
    statements: list[dict[str, Any]] = [{"Effect": "Allow", "Action": _OBJECT_ACTIONS, "Resource": objects}]
    statements += [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}",
                    "Condition": {"StringLike": {"s3:prefix": keys}}} for bucket, keys in listing.items()]
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, separators=(",", ":"))


def role_arn(settings: Any, workspace: str, environment: str) -> str:
    return str(settings.s3_vending_role_arn).replace("{workspace}", workspace).replace("{environment}", environment)


_cache: dict[tuple[str, str, str, str], Vended] = {}
_lock = threading.Lock()


def for_lease(ctx: Context, s: Scope) -> Vended:
    """Credentials for the lease behind ``s`` (an executor's scope: one workspace and environment)."""
    s.require(Action.READ)
    if s.environment is None:
        raise Forbidden("storage credentials are vended to executors for a lease they hold",
                        code="ForbiddenException")
    settings = ctx.settings
    role = role_arn(settings, s.workspace, s.environment)
    endpoint = settings.s3_sts_endpoint or settings.s3_endpoint
    key = (role, f"{endpoint} {settings.warehouse}", s.workspace, s.environment)
    now = time.time()
    with _lock:  # one STS call per key at a time; the others wait for its answer
        cached = _cache.get(key)
        if cached is not None and cached.expires - now > settings.s3_vending_duration_s / 2:
            return cached
        vended = _assume(settings, role, s.workspace, s.environment)
        _cache[key] = vended
        return vended


def _assume(settings: Any, role: str, workspace: str, environment: str) -> Vended:
    import botocore.session
    from botocore.exceptions import BotoCoreError, ClientError

    own = settings.s3_properties()
    paths = prefixes(str(settings.warehouse), workspace, environment)
    try:
        sts = botocore.session.Session().create_client(
            "sts", region_name=own.get("s3.region") or "us-east-1",
            endpoint_url=settings.s3_sts_endpoint or own.get("s3.endpoint") or None,
            aws_access_key_id=own.get("s3.access-key-id"), aws_secret_access_key=own.get("s3.secret-access-key"),
            aws_session_token=own.get("s3.session-token"))
        answer = sts.assume_role(RoleArn=role, RoleSessionName=f"lakehouse-{workspace}-{environment}"[:64],
                                 DurationSeconds=int(settings.s3_vending_duration_s),
                                 Policy=session_policy(paths))
    except (BotoCoreError, ClientError) as exc:
        import logging

        logging.getLogger("lakehouse.iceberg").error("vending S3 credentials failed: %s", exc)
        raise VendingUnavailable("the control plane could not vend storage credentials for this lease "
                                 "(STS AssumeRole failed; it is logged)") from None
    creds = answer["Credentials"]
    expires = creds["Expiration"].timestamp()
    config = {"s3.access-key-id": creds["AccessKeyId"], "s3.secret-access-key": creds["SecretAccessKey"],
              "s3.session-token": creds["SessionToken"], EXPIRES_AT_MS: str(int(expires * 1000))}
    for k in ("s3.endpoint", "s3.region", "s3.force-virtual-addressing"):
        if k in own:
            config[k] = own[k]
    return Vended(prefixes=paths, config=config, expires=expires)


def wanted(header: str | None) -> bool:
    """Whether a request's ``X-Iceberg-Access-Delegation`` asks for vended credentials."""
    return VENDED in [p.strip().lower() for p in (header or "").split(",")]


def clear_cache() -> None:
    """Forget every cached credential (tests, key rotation)."""
    with _lock:
        _cache.clear()
