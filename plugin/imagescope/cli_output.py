"""What the ``imagescope`` command prints: result tables, ingest summaries, models in words."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from imagescope.errors import ImageScopeError, InputError
from imagescope.schemas import Candidate, SearchResult

if TYPE_CHECKING:
    from imagescope.ingest.runner import IngestReport

F = TypeVar("F", bound=Callable[..., Any])
_ERRORS = Console(stderr=True)


def friendly_errors(func: F) -> F:
    """ImageScopeError -> one line on stderr; exit 2 (bad input) or 1 (backend)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ImageScopeError as exc:
            _ERRORS.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2 if isinstance(exc, InputError) else 1) from None

    return wrapper  # type: ignore[return-value]


#: What each model role does, in plain words (as the search page says it).
ROLE_WORDS = {
    "embedder": "finds look-alike pictures and texts",
    "reasoner": "reads the request and writes what to look for",
    "captioner": "describes pictures in words",
    "verifier": "answers yes/no checks about each top picture",
    "evaluator": "compares the best pictures with the request",
}


def models_in_words(models: Mapping[str, str]) -> list[str]:
    """``["verifier (answers yes/no checks ...): attribute-verifier", ...]``."""
    lines = []
    for role, model in models.items():
        name = "built-in rules (no language model)" if model == "rule" else model
        what = ROLE_WORDS.get(role)
        lines.append(f"{role} ({what}): {name}" if what else f"{role}: {name}")
    return lines


def limited(result: SearchResult, limit: int) -> SearchResult:
    """The result with its first ``limit`` candidates only (trace and stages kept)."""
    return result.model_copy(update={"candidates": result.candidates[:limit]})


def short_path(uri: str) -> str:
    """A file path relative to the current folder when it is inside it; URLs as they are."""
    if not uri or "://" in uri:
        return uri or "-"
    try:
        return str(Path(uri).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return uri


def _checks(cand: Candidate) -> str:
    if not cand.verdicts:
        return "-"
    passed = sum(v.satisfied for v in cand.verdicts)
    accepted = " ✓" if cand.evaluation and cand.evaluation.accepted else ""
    return f"{passed}/{len(cand.verdicts)}{accepted}"


def print_result(console: Console, result: SearchResult, *, limit: int) -> None:
    """A table of the top ``limit`` results, then how the query was understood."""
    table = Table(title=f"results (stages {', '.join(map(str, result.stages))})")
    for column in ("#", "id", "caption", "path", "score", "stage-1 #", "checks"):
        table.add_column(column, overflow="fold")
    for rank, cand in enumerate(result.candidates[:limit], start=1):
        table.add_row(
            str(rank),
            cand.id,
            cand.caption or "-",
            short_path(cand.uri),
            f"{cand.score:.4f}",
            str(cand.stage1_rank),
            _checks(cand),
        )
    console.print(table)
    trace = result.trace
    console.print(f"[dim]descriptions:[/] {trace.descriptions}")
    if trace.propositions:
        props = [f"{p.question} -> {'yes' if p.expected else 'no'}" for p in trace.propositions]
        console.print(f"[dim]propositions:[/] {props}")
    timings = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in trace.timings.items())
    console.print(f"[dim]timings:[/] {timings}")
    for line in models_in_words(trace.models):
        console.print(f"[dim]model:[/] {line}")
    for note in trace.notes:
        console.print(f"[yellow]note:[/] {note}")


def print_empty(console: Console, filters: Mapping[str, object]) -> None:
    """Why a search found nothing, and what to try."""
    if filters:
        names = ", ".join(sorted(filters))
        console.print(
            f"no results with the filters on {names}; remove a --filter (or loosen it) "
            "and search again"
        )
    else:
        console.print("no results; try other or fewer words")


def print_ingest_summary(console: Console, report: IngestReport) -> None:
    """``ingest: 3 new, 1 updated, 296 unchanged, 0 failed (4.2 s)``."""
    console.print(
        f"ingest: {report.new} new, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.num_failed} failed ({report.seconds:.1f} s)"
    )
