"""The Ray backend: model replicas as Ray actors, cases as tasks, the report assembled here.

``medseg3d batch --backend ray [--address ray://head:10001 | auto]`` connects to an existing Ray
cluster (or starts a local instance when no address is given). Each actor holds one model replica
(one actor per GPU where the cluster has GPUs, each with ``num_gpus=1``; otherwise ``--workers``
CPU actors) and runs two cases at a time, so one case is read or written while the other is
inferred (inference itself is serialised by a lock). The driver (this process) hands out cases,
collects each case's :class:`~medseg3d.batch.report.CaseResult` as it arrives and writes the
report, with the same skip/resume semantics as the local backend: workers skip cases whose output
exists and is valid, and write outputs atomically.

Inputs, outputs and the model folder must be reachable under the same paths from every node (a
shared file system), as for any batch job on a cluster. An actor that dies (killed for memory, a
crash in a native library) is restarted by Ray; the cases it held are retried once elsewhere, and
only a case on which a second actor dies is failed.

Ray is an optional dependency (``pip install medseg3d[distributed]``), imported only here and only
when this backend is used.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from medseg3d.batch.cases import BatchCase
from medseg3d.batch.report import BatchReport, CaseResult
from medseg3d.batch.runner import BatchSummary, Progress, prepare_output_folder
from medseg3d.batch.steps import discard_stale_output, failed_result
from medseg3d.errors import ConfigError

logger = logging.getLogger(__name__)

#: Cases each actor works on at once (one inferring, one being read or written).
CASES_PER_ACTOR = 2
#: How often Ray restarts an actor that died before giving up on it.
ACTOR_RESTARTS = 3


def import_ray():
    """``ray``, or a :class:`ConfigError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--backend ray needs Ray: pip install 'medseg3d[distributed]' (or pip install ray)"
        ) from None
    return ray


class CaseWorker:
    """The body of a Ray actor: one model replica, cases processed two at a time."""

    def __init__(
        self,
        model_dir: str | list[str],
        device: str,
        options: Mapping[str, Any],
        out_dir: str,
        overwrite: bool,
        threads: int,
    ):
        import torch

        from medseg3d.batch.engine import CaseEngine

        torch.set_num_threads(max(1, int(threads)))
        logging.basicConfig(level=logging.WARNING)
        self.engine = CaseEngine(model_dir, device=device, **dict(options))
        self.out_dir = Path(out_dir)
        self.overwrite = overwrite
        self.lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        return {"device": self.engine.device_description, "pid": os.getpid()}

    def run(self, case: BatchCase) -> dict[str, Any]:
        from medseg3d.batch.steps import process_case

        result = process_case(
            self.engine, case, self.out_dir, overwrite=self.overwrite, infer_lock=self.lock
        )
        return result.to_dict()


def run_ray(
    model_dir: str | os.PathLike | Sequence[str | os.PathLike],
    cases: Sequence[BatchCase],
    out_dir: str | os.PathLike,
    report: BatchReport,
    *,
    address: str | None = None,
    workers: int | None = None,
    device: str = "auto",
    options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    on_result: Callable[[CaseResult], None] | None = None,
) -> BatchSummary:
    """Segment ``cases`` on a Ray cluster (``address``; None starts a local instance with
    ``workers`` CPUs). Returns the same :class:`BatchSummary` as the local backend."""
    ray = import_ray()
    out_dir = Path(out_dir).resolve()
    prepare_output_folder(cases, out_dir, report)
    started_here = not ray.is_initialized()
    if started_here:
        init = {"include_dashboard": False, "logging_level": logging.WARNING}
        if address is None:
            init["num_cpus"] = max(1, int(workers or os.cpu_count() or 1))
        ray.init(address=address, **init)
    start = time.perf_counter()
    bar = Progress(len(cases), progress, description="batch (ray)")
    try:
        actors, resources = _start_actors(
            ray, model_dir, device, options, out_dir, overwrite, workers
        )
        logger.info("ray: %d actor(s), %s", len(actors), resources)
        report.info["ray_actors"] = len(actors)
        report.info["ray_resources"] = resources

        by_id = {case.case_id: case for case in cases}

        def record(result: CaseResult) -> None:
            if overwrite and result.status == "failed":  # the outputs are on shared storage
                result = discard_stale_output(result, by_id[result.case_id], out_dir)
            report.add(result)
            bar.update(result)
            if on_result is not None:
                on_result(result)

        _distribute(ray, actors, list(cases), out_dir, record)
    finally:
        bar.close()
        seconds = time.perf_counter() - start
        report.close(
            seconds=round(seconds, 3), interrupted=report.counts()["pending"] > 0, backend="ray"
        )
        if started_here:
            ray.shutdown()
    return BatchSummary(
        counts=report.counts(),
        seconds=seconds,
        report_csv=report.csv_path,
        report_json=report.json_path,
        failed_cases=[r.case_id for r in report.results if r.status == "failed"],
    )


def _start_actors(ray, model_dir, device, options, out_dir, overwrite, workers):
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    use_gpus = gpus > 0 and not str(device).startswith("cpu")
    if use_gpus:
        count = min(int(workers), gpus) if workers else gpus
        actor_device, per_actor = "cuda", {"num_gpus": 1, "num_cpus": 1}
        threads = max(1, int(resources.get("CPU", 1)) // max(count, 1))
    else:
        if str(device).startswith("cuda"):
            raise ConfigError(f"--device {device}: the Ray cluster has no GPU; use --device cpu")
        count = int(workers) if workers else max(1, int(resources.get("CPU", 1)))
        actor_device, per_actor, threads = "cpu", {"num_cpus": 1}, 1
    remote = ray.remote(max_restarts=ACTOR_RESTARTS, max_concurrency=CASES_PER_ACTOR, **per_actor)(
        CaseWorker
    )
    actors = [
        remote.remote(
            _plain_model(model_dir),
            actor_device,
            dict(options or {}),
            str(out_dir),
            overwrite,
            threads,
        )
        for _ in range(count)
    ]
    try:  # fail fast (one line) when the model folder cannot be loaded on the workers
        described = ray.get([actor.describe.remote() for actor in actors])
    except ray.exceptions.RayActorError as error:
        raise ConfigError(f"Ray workers could not load the model: {_root_cause(error)}") from None
    devices = sorted({entry["device"] for entry in described})
    return actors, {"actors": count, "devices": devices, "cluster": _plain(resources)}


def _distribute(ray, actors, queue: list[BatchCase], out_dir: Path, record) -> None:
    """Keep every actor busy with up to :data:`CASES_PER_ACTOR` cases until all are done.

    A case whose actor died is retried once, alone on an idle actor (it may only have been
    queued behind the case that killed the actor); a case on which a second actor dies is failed.
    """
    in_flight: dict[Any, tuple[BatchCase, int]] = {}
    load = {index: 0 for index in range(len(actors))}
    alive = set(load)
    retries: list[BatchCase] = []
    retried: set[str] = set()
    isolated: dict[int, str] = {}  # actor -> the retried case it runs alone

    def submit(index: int, case: BatchCase) -> None:
        in_flight[actors[index].run.remote(case)] = (case, index)
        load[index] += 1

    try:
        while queue or retries or in_flight:
            for index in sorted(alive):
                if retries and load[index] == 0:
                    isolated[index] = retries[0].case_id
                    submit(index, retries.pop(0))
            for index in sorted(alive - set(isolated)):
                while queue and load[index] < CASES_PER_ACTOR:
                    submit(index, queue.pop(0))
            if not in_flight:
                break
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                case, index = in_flight.pop(ref)
                load[index] -= 1
                if isolated.get(index) == case.case_id:
                    del isolated[index]
                try:
                    result = CaseResult.from_dict(ray.get(ref))
                except ray.exceptions.RayActorError as error:
                    if not _actor_alive(ray, actors[index]):
                        alive.discard(index)
                    if case.case_id not in retried:
                        retried.add(case.case_id)
                        logger.warning(
                            "case %s: its Ray worker died; retrying it alone", case.case_id
                        )
                        retries.append(case)
                        continue
                    result = failed_result(
                        case,
                        out_dir,
                        RuntimeError(
                            "the Ray worker died while processing this case, twice (killed for "
                            f"memory or crashed): {_root_cause(error)}"
                        ),
                    )
                except Exception as error:  # noqa: BLE001 - a task error fails this case only
                    result = failed_result(case, out_dir, error)
                record(result)
        if queue or retries:
            error = RuntimeError("every Ray worker died; no worker is left for this case")
            for case in retries + queue:
                record(failed_result(case, out_dir, error))
            queue.clear()
    finally:
        for ref in in_flight:
            ray.cancel(ref, force=False)


def _plain_model(model_dir) -> str | list[str]:
    """One model folder as a string, an ensemble's as a list of strings (sent to the actors)."""
    if isinstance(model_dir, (list, tuple)):
        return [str(folder) for folder in model_dir]
    return str(model_dir)


def _actor_alive(ray, actor) -> bool:
    try:
        ray.get(actor.describe.remote(), timeout=60)
        return True
    except Exception:  # noqa: BLE001 - dead for good (restarts used up) or unreachable
        return False


def _root_cause(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[-300:] if len(text) > 300 else text


def _plain(resources: Mapping[str, Any]) -> dict[str, float]:
    keep = ("CPU", "GPU", "memory")
    return {key: float(value) for key, value in resources.items() if key in keep}
