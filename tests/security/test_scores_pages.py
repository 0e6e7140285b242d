"""Attacks on the run scores of the Control Room's pages: the Runs list sorted by score and the run
page's breakdown never show another workspace's runs or scores."""

from __future__ import annotations

from fastapi.testclient import TestClient

from lakehouse.domain.principal import Principal
from lakehouse.services import protocol, scores
from tests.security.conftest import Attack
from tests.web.conftest import login

ROBOT = Principal(name="executor", role="executor")


def _scored_failure(attack: Attack, workspace: str, spec_slug: str) -> str:
    r = attack.run("admin", workspace, [{"name": "p", "type": "noop", "max_attempts": 1}], spec_slug=spec_slug)
    run_id = str(r["run_id"])
    [claim] = protocol.claim(attack.ctx, ROBOT, "x", ["noop"], run_id=run_id)
    protocol.fail(attack.ctx, ROBOT, run_id, claim["lease_token"], "boom", retryable=False)
    return run_id


def _browser(attack: Attack, name: str) -> TestClient:
    c = TestClient(attack.client.app)
    assert login(c, name).status_code == 303
    return c


def test_the_runs_list_sorted_by_score_hides_foreign_runs(attack: Attack) -> None:
    mine = _scored_failure(attack, "alpha", "alpha_pipeline")
    theirs = _scored_failure(attack, "beta", "beta_secret_pipeline")
    assert scores.score_pending(attack.ctx) == 2
    alpha, beta = _browser(attack, "alpha_viewer"), _browser(attack, "beta_viewer")
    try:
        for url in ("/runs?sort=score", "/runs?sort=-score", "/runs?sort=score&status=failed", "/runs"):
            page = alpha.get(url)
            assert page.status_code == 200
            assert mine in page.text and "70.0 poor" in page.text
            assert theirs not in page.text and "beta_secret_pipeline" not in page.text
        # naming the other workspace in the filter lists nothing of it
        text = alpha.get("/runs?sort=score&workspace=beta").text
        assert theirs not in text and mine not in text
        # a forged cursor from the other workspace's score order shows nothing of it either
        text = alpha.get(f"/runs?sort=score&before=s%3A0.0~{theirs}").text
        assert theirs not in text and mine in text
        # the run page of a foreign run (and so its breakdown) is not found
        r = alpha.get(f"/runs/{theirs}")
        assert r.status_code == 404 and 'data-signal="' not in r.text
        # its own members see it, with its score
        text = beta.get("/runs?sort=score").text
        assert theirs in text and mine not in text and "70.0 poor" in text
        assert 'data-signal="outcome"' in beta.get(f"/runs/{theirs}").text
    finally:
        alpha.close()
        beta.close()
