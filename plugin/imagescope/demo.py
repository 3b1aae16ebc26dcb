"""``imagescope demo``: the main job on the embedded default, offline.

Draws a synthetic catalog (shapes with colour, count, pattern, position),
indexes it in the embedded store (``imagescope.open(catalog="synthetic")``'s
path), and runs one text, one composed and one dialog query through the
configured stages, showing where the exact ground truth lands before and after
reranking.

The embedder is the one the settings name when they name one
(``IMAGESCOPE_MODELS__EMBEDDER__...``), else the bundled ImageScope-Synth CLIP
trained on synthetic catalogs (``bundled:synthetic``; no download).
Likewise the verifier and evaluator are the configured ones when named, else
the learned ImageScope-Judge (kind ``learned``), trained on synthetic scenes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from imagescope.engine import Engine, check_stages
from imagescope.models.base import Embedder
from imagescope.schemas import SearchResult
from imagescope.settings import RoleSettings, Settings
from imagescope.synthetic.catalog import make_catalog
from imagescope.synthetic.queries import SyntheticQuery, make_queries
from imagescope.wiring import load_embedder, open_synthetic, with_embedder_model

log = logging.getLogger(__name__)


@dataclass
class DemoEmbedder:
    embedder: Embedder
    why: str
    meaningful: bool = True


@dataclass
class DemoOutcome:
    query: SyntheticQuery
    result: SearchResult
    #: 1-based rank of the first correct item after stage 1 and after all stages.
    first_hit_stage1: int | None
    first_hit_final: int | None
    notes: list[str] = field(default_factory=list)


def choose_embedder(settings: Settings) -> DemoEmbedder:
    """The configured embedder when the settings name one, else the bundled model."""
    configured = settings.models.embedder
    if configured.model_fields_set & {"kind", "model", "pretrained"}:
        return DemoEmbedder(load_embedder(settings), "the configured embedder")
    return DemoEmbedder(
        load_embedder(with_embedder_model(settings, "bundled:synthetic")),
        "the bundled CLIP trained on synthetic catalogs (meaningful for this catalog only)",
    )


def _outcome(engine: Engine, query: SyntheticQuery, stages: list[int]) -> DemoOutcome:
    result = engine.search(query.query, stages=stages)
    truth = set(query.ground_truth)
    return DemoOutcome(
        query=query,
        result=result,
        first_hit_stage1=result.rank_of(truth, by_stage1=True),
        first_hit_final=result.rank_of(truth),
    )


def with_learned_judges(settings: Settings) -> Settings:
    """The learned ImageScope-Judge as verifier and evaluator unless the settings name one."""
    models = settings.models
    update = {
        role: RoleSettings(kind="learned")
        for role in ("verifier", "evaluator")
        if role not in models.model_fields_set
    }
    return settings.model_copy(update={"models": models.model_copy(update=update)})


def run_demo(
    settings: Settings, *, n: int = 400, seed: int = 0, stages: list[int] | None = None
) -> tuple[DemoEmbedder, list[DemoOutcome]]:
    wanted = check_stages(stages or [1, 2, 3])
    chosen = choose_embedder(settings)
    with open_synthetic(
        with_learned_judges(settings), embedder=chosen.embedder, n=n, seed=seed, progress=True
    ) as engine:
        queries = make_queries(make_catalog(n, seed=seed), n_per_kind=1, seed=seed)
        outcomes = [_outcome(engine, query, wanted) for query in queries]
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
        from imagescope.cli_output import models_in_words

        for line in models_in_words(outcomes[0].result.trace.models):
            console.print(f"model: {line}")
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
