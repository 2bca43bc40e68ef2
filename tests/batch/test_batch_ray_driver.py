"""The Ray driver's bookkeeping with a stand-in for Ray: a dying actor fails only its cases."""

from __future__ import annotations

import types
from pathlib import Path

from medseg3d.batch.cases import BatchCase
from medseg3d.batch.ray_backend import CASES_PER_ACTOR, _distribute
from medseg3d.batch.report import CaseResult


class ActorDied(Exception):
    pass


class Ref:
    def __init__(self, compute):
        self.compute = compute


class Method:
    def __init__(self, function):
        self.function = function

    def remote(self, *args):
        return Ref(lambda: self.function(*args))


class FakeActor:
    """Processes cases; with ``dies_on`` it dies on that case and stays dead."""

    def __init__(self, name: str, dies_on: str | None = None):
        self.name, self.dies_on, self.dead, self.seen = name, dies_on, False, []
        self.run = Method(self._run)
        self.describe = Method(self._describe)

    def _run(self, case: BatchCase):
        self.seen.append(case.case_id)
        if self.dead or case.case_id == self.dies_on:
            self.dead = True
            raise ActorDied(f"actor {self.name} died")
        return CaseResult(case.case_id, "done", input=case.input_text).to_dict()

    def _describe(self):
        if self.dead:
            raise ActorDied("dead")
        return {"device": "cpu"}


def fake_ray(in_flight_limit: list[int]):
    def wait(refs, num_returns=1):
        in_flight_limit.append(len(refs))
        return refs[:num_returns], refs[num_returns:]

    def get(ref, timeout=None):
        return ref.compute()

    return types.SimpleNamespace(
        wait=wait,
        get=get,
        cancel=lambda ref, force=False: None,
        exceptions=types.SimpleNamespace(RayActorError=ActorDied),
    )


def test_a_case_that_kills_actors_fails_alone_and_the_others_take_over(tmp_path):
    cases = [BatchCase(f"c{i}", (Path(f"/in/c{i}.nii.gz"),)) for i in range(7)]
    actors = [FakeActor("a", dies_on="c1"), FakeActor("b", dies_on="c1"), FakeActor("c")]
    in_flight: list[int] = []
    results: list[CaseResult] = []
    _distribute(fake_ray(in_flight), actors, list(cases), tmp_path, results.append)
    status = {r.case_id: r.status for r in results}
    assert sorted(status) == [c.case_id for c in cases]
    failed = [r for r in results if r.status == "failed"]
    assert [r.case_id for r in failed] == ["c1"] and "Ray worker died" in failed[0].error
    assert "twice" in failed[0].error
    assert max(in_flight) <= CASES_PER_ACTOR * len(actors)
    assert actors[0].dead and actors[1].dead and not actors[2].dead
    assert "c6" in actors[2].seen  # work went on without the dead actors


def test_when_every_actor_is_dead_the_remaining_cases_fail_with_a_reason(tmp_path):
    cases = [BatchCase(f"c{i}", (Path(f"/in/c{i}.nii.gz"),)) for i in range(5)]
    results: list[CaseResult] = []
    actor = FakeActor("a", dies_on="c0")
    _distribute(fake_ray([]), [actor], list(cases), tmp_path, results.append)
    assert sorted(r.case_id for r in results) == [c.case_id for c in cases]
    assert all(r.status == "failed" for r in results)
    assert any("every Ray worker died" in r.error for r in results)
