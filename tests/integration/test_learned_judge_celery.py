"""The distributed path with a learned judge: API -> Celery worker -> model server -> merged result.

A drawn synthetic catalog is ingested with the shipped tiny CLIP; the worker
(a real ``celery`` process on the test Redis) runs stages 2 and 3 with the
``openai`` backend pointed at ImageScope-Judge served by
``python -m imagescope.synthetic.judge_server`` (a real process). The job's
merged result must equal the in-process rerank over the same server, carry
the judge's probabilities and reasons, and rank the query's exact answer first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

import imagescope
from imagescope.api import create_app
from imagescope.ingest.runner import ingest
from imagescope.ingest.sources import read_table
from imagescope.jobs.celery_backend import CeleryJobBackend
from imagescope.pipeline.rerank import rerank
from imagescope.schemas import SearchResult, TextQuery
from imagescope.settings import EmbeddedStoreSettings, ImageLimits, Settings
from imagescope.store.embedded import EmbeddedStore
from imagescope.synthetic.catalog import describe, make_catalog, write_catalog
from imagescope.synthetic.judge_model import MODEL_NAME
from imagescope.synthetic.train import CONFIG_DIR, SHIPPED_CHECKPOINT, load_synth_embedder
from tests.fixtures.redis import REPO_ROOT, JobCluster, free_port, wait_until
from tests.integration.test_jobs_celery import comparable

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CATALOG_SEED, N_ITEMS = 515, 80
ITEM = 5


@dataclass
class JudgeServer:
    process: subprocess.Popen[bytes]
    url: str
    log: Path


@pytest.fixture(scope="module")
def judge_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JudgeServer]:
    port = free_port()
    log = tmp_path_factory.mktemp("judge") / "server.log"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "imagescope.synthetic.judge_server", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = JudgeServer(process, f"http://127.0.0.1:{port}/v1", log)

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"judge server exited:\n{log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{server.url}/models", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, timeout_s=60, what="the judge server", every_s=0.2)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.fixture(scope="module")
def synthetic_catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(image root, embedded store path) of a drawn catalog (seed CATALOG_SEED)."""
    root = tmp_path_factory.mktemp("synthetic-jobs")
    csv_path = write_catalog(root, n=N_ITEMS, seed=CATALOG_SEED)
    store_path = root / "store"
    store = EmbeddedStore(EmbeddedStoreSettings(path=store_path))
    report = ingest(
        read_table(csv_path),
        store=store,
        embedder=load_synth_embedder(),
        limits=ImageLimits(allowed_roots=[root.resolve()]),
        progress=False,
    )
    store.close()
    report.raise_for_failures()
    return root, store_path


def _env(judge: JudgeServer, root: Path, store_path: Path) -> dict[str, str]:
    judge_role = {"KIND": "openai", "OPENAI__BASE_URL": judge.url, "OPENAI__MODEL": MODEL_NAME}
    env = {
        "IMAGESCOPE_MODELS__EMBEDDER__KIND": "open_clip",
        "IMAGESCOPE_MODELS__EMBEDDER__MODEL": "ImageScope-Synth",
        "IMAGESCOPE_MODELS__EMBEDDER__PRETRAINED": str(SHIPPED_CHECKPOINT),
        "IMAGESCOPE_MODELS__EMBEDDER__CONFIG_DIR": str(CONFIG_DIR),
        "IMAGESCOPE_MODELS__REASONER__KIND": "rule",
        "IMAGESCOPE_STORE__EMBEDDED__PATH": str(store_path),
        "IMAGESCOPE_IMAGES__ALLOWED_ROOTS": f'["{root.resolve()}"]',
        "IMAGESCOPE_JOBS__COMPONENTS_HOOK": "",
    }
    for role in ("VERIFIER", "EVALUATOR"):
        env.update({f"IMAGESCOPE_MODELS__{role}__{k}": v for k, v in judge_role.items()})
    return env


def _query_and_truth() -> tuple[str, set[str]]:
    """A full description of one drawn item, and every item it describes exactly."""
    items = make_catalog(N_ITEMS, seed=CATALOG_SEED)
    wanted = items[ITEM].attributes
    truth = {i.id for i in items if i.attributes == wanted}
    return describe(wanted), truth


def test_learned_judge_job_runs_on_a_worker_through_the_model_server(
    job_cluster: JobCluster, judge_server: JudgeServer, synthetic_catalog: tuple[Path, Path]
) -> None:
    query, truth = _query_and_truth()
    env = _env(judge_server, *synthetic_catalog)
    settings = job_cluster.settings(**env)
    assert isinstance(settings, Settings)
    engine = imagescope.open(settings)
    jobs = CeleryJobBackend.from_settings(settings.jobs, reconcile=False)
    try:
        job_cluster.start_worker(**env)
        client = TestClient(create_app(engine, jobs, settings))
        body = {"query": {"kind": "text", "text": query}, "mode": "async"}
        first = client.post("/v1/search", json=body).json()
        job_id = first["job"]["id"]

        def done() -> bool:
            return client.get(f"/v1/rerank-jobs/{job_id}").json()["state"] in {
                "succeeded", "failed"}  # fmt: skip

        wait_until(done, timeout_s=120, what="the rerank job", every_s=0.2)
        status = client.get(f"/v1/rerank-jobs/{job_id}").json()
        assert status["state"] == "succeeded", (status, judge_server.log.read_text()[-2000:])
        result = SearchResult.model_validate(status["result"])
        text = TextQuery(text=query)
        request = engine.rerank_request(text, engine.stage1(text))
        assert comparable(result) == comparable(rerank(engine.components, request))
        verdicts = [v for c in result.candidates for v in c.verdicts]
        assert verdicts and all(v.p_yes is not None for v in verdicts)
        judged = [c for c in result.candidates if c.evaluation is not None]
        assert judged and all("P(accept)=" in c.evaluation.reason for c in judged if c.evaluation)
        assert result.candidates[0].id in truth, (query, [c.id for c in result.candidates[:5]])
    finally:
        jobs.close()
        engine.close()
