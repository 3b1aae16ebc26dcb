"""``imagescope opensearch ...``: use ImageScope on an existing OpenSearch index.

    adopt [--apply]          print the fields ImageScope would add (exact mapping
                             JSON); add them only with --apply
    create-index [--dim N]   create a new ImageScope catalog index behind the alias
    backfill-captions        caption records that have no ImageScope caption yet
                             (resumable, progress bar, batch size, rate limit)
    install-pipeline         register the connector, model and search pipeline that
                             rerank any client query by ImageScope (idempotent)
    uninstall-pipeline       remove them again

The index, hosts and field names come from ``IMAGESCOPE_STORE__OPENSEARCH__...``.
Heavy modules (models, torch) are imported inside the commands that need them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from imagescope.cli_output import friendly_errors
from imagescope.errors import InputError
from imagescope.settings import Settings, get_settings

if TYPE_CHECKING:
    from imagescope.store.opensearch import OpenSearchStore

app = typer.Typer(
    name="opensearch",
    help="Adopt an existing OpenSearch index, backfill captions, rerank inside OpenSearch.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True)


def _settings() -> Settings:
    try:
        settings = get_settings()
    except ValueError as exc:
        raise InputError(f"invalid IMAGESCOPE_ settings: {exc}") from None
    if settings.store.kind != "opensearch":
        raise InputError(
            "these commands work on OpenSearch: set IMAGESCOPE_STORE__KIND=opensearch "
            "(and IMAGESCOPE_STORE__OPENSEARCH__HOSTS, __INDEX, __FIELDS__...)"
        )
    return settings


def _store(settings: Settings) -> OpenSearchStore:
    from imagescope.store.opensearch import OpenSearchStore

    return OpenSearchStore(settings.store.opensearch)


@app.command()
@friendly_errors
def adopt(
    apply: Annotated[bool, typer.Option("--apply", help="Add the planned fields.")] = False,
) -> None:
    """Print the fields ImageScope needs and the index lacks; add them with --apply."""
    store = _store(_settings())
    try:
        index, plan = store.adoption_plan()
        typer.echo(json.dumps({"index": index, "add": plan}, indent=2))
        if not plan:
            err.print(f"{index} already has every field ImageScope needs; nothing to add")
        elif not apply:
            err.print("plan only, nothing changed; run again with --apply to add these fields")
        else:
            store.adopt()
            err.print(f"added {len(plan)} field(s) to {index}: {', '.join(plan)}")
    finally:
        store.close()


@app.command(name="create-index")
@friendly_errors
def create_index(
    dim: Annotated[
        int | None, typer.Option(min=1, help="Vector size (default: the embedder's).")
    ] = None,
) -> None:
    """Create a new ImageScope catalog index ``<index>-v1`` behind the alias ``<index>``."""
    settings = _settings()
    if dim is None:
        from imagescope.wiring import load_embedder

        dim = load_embedder(settings).dim
    store = _store(settings)
    try:
        name = store.create_index(dim)
    finally:
        store.close()
    typer.echo(f"created {name} ({dim}-d) behind alias {settings.store.opensearch.index}")


def _pace(started: float, done: int, rate: float) -> None:
    """Sleep so that ``done`` items took at least ``done / rate`` seconds."""
    if rate > 0:
        ahead = done / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)


@app.command(name="backfill-captions")
@friendly_errors
def backfill_captions(
    batch_size: Annotated[int, typer.Option(min=1, help="Records per batch.")] = 32,
    rate: Annotated[
        float, typer.Option(min=0, help="At most this many records/s (0: no limit).")
    ] = 0,
    images_root: Annotated[
        list[Path] | None, typer.Option(help="Folder images may be read from (repeatable).")
    ] = None,
) -> None:
    """Caption every record without an ImageScope caption; safe to stop and run again.

    Writes only ImageScope's own caption and caption vector fields, also when
    FIELDS__TEXT names a user field such as ``title``.
    """
    from rich.progress import Progress

    from imagescope.wiring import open as open_engine

    settings = _settings()
    roots = [*settings.images.allowed_roots, *(images_root or [])]
    limits = settings.images.model_copy(update={"allowed_roots": roots})
    done, failed, started = 0, 0, time.monotonic()
    with open_engine(settings, limits=limits) as engine:
        engine.check_captioner()
        todo = engine.count_without_caption()
        with Progress(console=err) as progress:
            task = progress.add_task("backfill captions", total=todo)
            for ids in engine.ids_without_caption(batch=batch_size):
                report = engine.backfill_captions(
                    ids,
                    limits=limits,
                    batch_size=batch_size,
                    overwrite=True,
                    progress=False,
                )
                done, failed = done + report.ok, failed + len(report.failed)
                for image_id, reason in list(report.failed.items())[:5]:
                    err.print(f"[red]failed[/] {image_id}: {reason}")
                progress.advance(task, len(ids))
                _pace(started, done + failed, rate)
    typer.echo(f"captioned {done} record(s), {failed} failed, {todo - done - failed} left")
    if failed:
        raise typer.Exit(1)


@app.command(name="install-pipeline")
@friendly_errors
def install_pipeline(
    endpoint: Annotated[str, typer.Option(help="ImageScope API base URL OpenSearch can reach.")],
    name: Annotated[str, typer.Option(help="Search pipeline name.")] = "imagescope",
    deadline_ms: Annotated[int, typer.Option(min=1, help="Past it: original order.")] = 3000,
    stages: Annotated[str, typer.Option(help="Stages to run on the hits: 2 or 2,3.")] = "2",
    api_key: Annotated[str | None, typer.Option(help="X-API-Key for the endpoint.")] = None,
) -> None:
    """Register connector, model and search pipeline; print what was created."""
    from imagescope.engine import check_rerank_stages
    from imagescope.store.opensearch_pipeline import PipelineInstaller, PipelineSpec

    try:
        wanted = check_rerank_stages([int(s) for s in stages.split(",") if s.strip()])
    except (ValueError, InputError):
        raise InputError(f"--stages {stages!r}: write 2 or 2,3") from None
    if not endpoint.startswith(("http://", "https://")):
        raise InputError(f"--endpoint {endpoint!r}: give a URL such as http://127.0.0.1:8080")
    settings = _settings()
    spec = PipelineSpec(
        name=name,
        endpoint=endpoint,
        uri_field=settings.store.opensearch.fields.uri,
        deadline_ms=deadline_ms,
        api_key=api_key,
        stages=tuple(wanted),
    )
    store = _store(settings)
    try:
        done = PipelineInstaller(store.client, store.requests).install(spec)
    finally:
        store.close()
    for line in done.created or ["nothing to change: connector, model and pipeline are current"]:
        typer.echo(line)
    typer.echo(f"use it: GET {settings.store.opensearch.index}/_search?search_pipeline={name}")


@app.command(name="uninstall-pipeline")
@friendly_errors
def uninstall_pipeline(
    name: Annotated[str, typer.Option(help="Search pipeline name.")] = "imagescope",
) -> None:
    """Remove the search pipeline, model and connector that install-pipeline made."""
    from imagescope.store.opensearch_pipeline import PipelineInstaller

    store = _store(_settings())
    try:
        removed = PipelineInstaller(store.client, store.requests).uninstall(name)
    finally:
        store.close()
    for line in removed or [f"nothing to remove for {name}"]:
        typer.echo(f"removed {line}" if removed else line)
