"""``imagescope demo``: the main job on the embedded default, offline.

Draws a synthetic catalog (shapes with colour, count, pattern, position),
ingests it into the embedded store, and runs one text, one composed and one
dialog query through the configured stages, showing where the exact ground
truth lands before and after reranking.

Embedder choice, best first: the configured embedder when its weights are
available locally (no download is attempted); the shipped ImageScope-Synth
CLIP trained on synthetic catalogs; a tiny random-weight CLIP, in which case
the output says the results are not meaningful.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from imagescope.engine import Engine, check_stages
from imagescope.errors import ConfigError
from imagescope.eval.harness import slug
from imagescope.eval.metrics import first_rank
from imagescope.ingest.runner import ingest
from imagescope.ingest.sources import read_table
from imagescope.models.base import Embedder
from imagescope.models.factory import build_embedder
from imagescope.schemas import SearchResult
from imagescope.settings import EmbeddedStoreSettings, Settings
from imagescope.store.embedded import EmbeddedStore
from imagescope.synthetic.catalog import make_catalog, write_catalog
from imagescope.synthetic.queries import SyntheticQuery, make_queries

log = logging.getLogger(__name__)


@dataclass
class DemoEmbedder:
    embedder: Embedder
    why: str
    meaningful: bool


@dataclass
class DemoOutcome:
    query: SyntheticQuery
    result: SearchResult
    #: 1-based rank of the first correct item after stage 1 and after all stages.
    first_hit_stage1: int | None
    first_hit_final: int | None
    notes: list[str] = field(default_factory=list)


def choose_embedder(settings: Settings) -> DemoEmbedder:
    """The best embedder that runs here without downloading anything."""
    from imagescope.synthetic.train import load_synth_embedder, synth_checkpoint

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    configured = settings.models.embedder
    if configured.kind != "fake":
        try:
            embedder = build_embedder(configured)
            return DemoEmbedder(embedder, "configured weights found locally", True)
        except ConfigError as exc:
            log.info("configured embedder unavailable offline: %s", exc)
    try:
        checkpoint = synth_checkpoint(settings.data_dir / "synthetic", progress=True)
        return DemoEmbedder(
            load_synth_embedder(checkpoint),
            "no pretrained CLIP weights here; using the small CLIP trained on synthetic "
            "catalogs (meaningful for this catalog only)",
            True,
        )
    except ConfigError as exc:
        log.warning("synthetic CLIP unavailable: %s", exc)
    from imagescope.models.tiny import tiny_open_clip_embedder

    return DemoEmbedder(
        tiny_open_clip_embedder(settings.data_dir / "tiny-model"),
        "RANDOM-WEIGHT test-size CLIP: the results below are NOT meaningful",
        False,
    )


def prepare_engine(
    settings: Settings, chosen: DemoEmbedder, *, root: Path, n: int, seed: int
) -> Engine:
    """Catalog drawn once, ingested (idempotent) into an index per embedder."""
    catalog_dir = root / f"catalog-{n}-{seed}"
    csv_path = catalog_dir / "catalog.csv"
    if not csv_path.is_file():
        write_catalog(catalog_dir, n=n, seed=seed)
    store = EmbeddedStore(
        EmbeddedStoreSettings(
            path=root / "index" / slug(chosen.embedder.model_id) / catalog_dir.name
        )
    )
    store.ensure(chosen.embedder.dim)
    limits = settings.images.model_copy(update={"allowed_roots": [catalog_dir]})
    report = ingest(
        read_table(csv_path),
        store=store,
        embedder=chosen.embedder,
        limits=limits,
        skip_existing=True,
        progress=True,
    )
    report.raise_for_failures()
    return Engine.from_settings(settings, embedder=chosen.embedder, store=store, limits=limits)


def run_demo(
    settings: Settings, *, n: int = 400, seed: int = 0, stages: list[int] | None = None
) -> tuple[DemoEmbedder, list[DemoOutcome]]:
    wanted = check_stages(stages or [1, 2, 3])
    chosen = choose_embedder(settings)
    engine = prepare_engine(settings, chosen, root=settings.data_dir / "demo", n=n, seed=seed)
    catalog = make_catalog(n, seed=seed)
    outcomes = []
    try:
        for query in make_queries(catalog, n_per_kind=1, seed=seed):
            result = engine.search(query.query, stages=wanted)
            truth = set(query.ground_truth)
            stage1_order = sorted(result.candidates, key=lambda c: c.stage1_rank)
            outcomes.append(
                DemoOutcome(
                    query=query,
                    result=result,
                    first_hit_stage1=first_rank([c.id for c in stage1_order], truth),
                    first_hit_final=first_rank([c.id for c in result.candidates], truth),
                )
            )
    finally:
        engine.close()
    return chosen, outcomes


def _describe(query: SyntheticQuery) -> str:
    q = query.query
    if q.kind == "text":
        return f'text: "{q.text}"'
    if q.kind == "composed":
        return f'composed: reference {q.reference.id} + "{q.instruction}"'
    turns = " | ".join(f"{t.question} {t.answer}" for t in q.turns)
    return f'dialog: "{q.caption}" | {turns}'


def print_demo(
    console: Console, chosen: DemoEmbedder, outcomes: list[DemoOutcome], *, rows: int = 5
) -> None:
    style = "green" if chosen.meaningful else "bold red"
    console.print(f"[{style}]embedder:[/] {chosen.embedder.model_id} - {chosen.why}")
    if outcomes:
        console.print(f"models: {outcomes[0].result.trace.models}")
    for outcome in outcomes:
        result, truth = outcome.result, set(outcome.query.ground_truth)
        table = Table(title=_describe(outcome.query), title_justify="left")
        for column in ("#", "id", "correct", "stage-1 #", "caption", "why"):
            table.add_column(column, overflow="fold")
        for rank, cand in enumerate(result.candidates[:rows], start=1):
            mark = "yes" if cand.id in truth else ""
            table.add_row(
                str(rank), cand.id, mark, str(cand.stage1_rank), cand.caption, cand.reason or "-"
            )
        console.print(table)
        console.print(
            f"  {len(truth)} correct item(s); first correct at rank {outcome.first_hit_final} "
            f"after stages {result.stages} (stage 1 alone: {outcome.first_hit_stage1})"
        )
    if not chosen.meaningful:
        console.print(
            "[bold red]These rankings come from random weights and are not meaningful.[/]"
        )
