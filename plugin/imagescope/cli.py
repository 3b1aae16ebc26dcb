"""The ``imagescope`` command: ingest, search, demo, serve, eval.

Arguments are checked before anything heavy is imported (torch, the models),
so a mistake is answered at once; the engine comes from ``imagescope.wiring``.

Settings come from the environment (``IMAGESCOPE_...``, see settings.py);
a few common ones have flags. Errors print one line that says how to fix
them and exit with status 2 (bad input) or 1 (a backend failed).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from imagescope.cli_opensearch import app as opensearch_app
from imagescope.cli_output import (
    friendly_errors,
    limited,
    print_empty,
    print_ingest_summary,
    print_result,
)
from imagescope.errors import ConfigError, InputError
from imagescope.schemas import (
    ComposedQuery,
    DialogQuery,
    DialogTurn,
    ImageRef,
    Query,
    TextQuery,
)
from imagescope.settings import ApiSettings, Settings, get_settings

if TYPE_CHECKING:
    from imagescope.store.base import VectorStore

app = typer.Typer(
    name="imagescope",
    help="Language-guided image search over OpenSearch k-NN (or an embedded index).",
    no_args_is_help=True,
    add_completion=False,
    # Plain help: options show the metavars written here (N, FILE.json, KEY=VALUE),
    # and flags none, instead of labels such as <bool> or <list[str]>.
    rich_markup_mode=None,
)
console = Console()
err_console = Console(stderr=True)
_API_DEFAULTS = ApiSettings()
app.add_typer(opensearch_app, name="opensearch")


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


# --------------------------------------------------------------------------- helpers


def _scalar(text: str) -> str | int | float:
    """Numbers as numbers (as ingest stores them); ``0042`` stays a code."""
    if text.startswith("0") and len(text) > 1 and not text.startswith("0."):
        return text
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_filters(values: list[str]) -> dict[str, Any]:
    """``key=value`` (repeat a key for any-of), ``key>=n``, ``key<n`` ..."""
    filters: dict[str, Any] = {}
    for raw in values:
        for op, range_op in ((">=", "gte"), ("<=", "lte"), (">", "gt"), ("<", "lt"), ("=", None)):
            if op in raw:
                key, _, value = raw.partition(op)
                key, value, name = key.strip(), value.strip(), range_op
                break
        else:
            raise InputError(f"bad filter {raw!r}: write key=value, key>=number or key<number")
        if name is not None:
            try:
                filters.setdefault(key, {})[name] = float(value)
            except ValueError:
                raise InputError(f"filter {raw!r}: {value!r} is not a number") from None
        elif key in filters:
            previous = filters[key]
            listed = previous if isinstance(previous, list) else [previous]
            filters[key] = [*listed, _scalar(value)]
        else:
            filters[key] = _scalar(value)
    return filters


def _reference(ref: str) -> ImageRef:
    if ref.startswith(("http://", "https://")):
        return ImageRef(url=ref)
    if Path(ref).is_file():
        return ImageRef(path=str(Path(ref).resolve()))
    return ImageRef(id=ref)


def build_query(
    text: str | None,
    *,
    ref: str | None,
    edit: str | None,
    dialog: Path | None,
    filters: dict[str, Any],
) -> Query:
    if dialog is not None:
        try:
            data = json.loads(dialog.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read dialog file {dialog}: {exc}") from None
        if not isinstance(data, dict) or "caption" not in data:
            raise InputError(
                'a dialog file is JSON: {"caption": "...", "turns": [{"question": "...", '
                '"answer": "..."}]}'
            )
        turns = [DialogTurn(**t) for t in data.get("turns", [])]
        return DialogQuery(caption=data["caption"], turns=turns, filters=filters)
    if ref is not None:
        instruction = edit or text
        if not instruction:
            raise InputError("--ref needs an instruction: add --edit 'what to change'")
        return ComposedQuery(reference=_reference(ref), instruction=instruction, filters=filters)
    if not text or not text.strip():
        raise InputError("nothing to search for: give TEXT, --ref IMAGE --edit TEXT, or --dialog")
    return TextQuery(text=text, filters=filters)


def parse_stages(stages: str) -> list[int]:
    """``"1,2,3"`` -> [1, 2, 3], checked (they must include 1 and be among 1, 2, 3)."""
    from imagescope.stages import check_stages

    try:
        numbers = [int(s) for s in stages.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--stages {stages!r}: write stage numbers like 1,2,3") from None
    try:
        return check_stages(numbers)
    except InputError as exc:
        raise InputError(f"--stages {stages!r}: {exc}") from None


def _settings(**overrides: Any) -> Settings:
    try:
        settings = get_settings()
        if overrides:
            from imagescope.wiring import with_overrides

            settings = with_overrides(settings, **overrides)
        return settings
    except ValueError as exc:
        raise InputError(f"invalid IMAGESCOPE_ settings: {exc}") from None


def _open_store(settings: Settings) -> VectorStore:
    """The configured store alone (no models): cheap, so arguments are checked first."""
    from imagescope.store.factory import build_store

    return build_store(settings.store)


def check_against_catalog(query: Query, store: VectorStore) -> None:
    """Filter fields and a reference id must exist in the catalog (checked before models load)."""
    from imagescope.errors import UnknownIdError
    from imagescope.store.base import validate_filters

    if query.filters:
        validate_filters(query.filters, store.metadata_fields())
    if isinstance(query, ComposedQuery) and query.reference.id is not None:
        if not store.get([query.reference.id]):
            raise UnknownIdError("image", query.reference.id)
    if store.count() == 0:
        raise InputError(
            "the catalog is empty: ingest images first (imagescope ingest ./photos), then search"
        )


# --------------------------------------------------------------------------- commands


_DIALOG_HELP = (
    'JSON file with a caption and question/answer turns, e.g. {"caption": "a kitchen", '
    '"turns": [{"question": "is there a fridge?", "answer": "yes, a white one"}]}.'
)


@app.command()
@friendly_errors
def search(
    text: Annotated[str | None, typer.Argument(metavar="TEXT", help="What to look for.")] = None,
    ref: Annotated[
        str | None,
        typer.Option(metavar="ID|FILE|URL", help="Reference image: catalog id, file path or URL."),
    ] = None,
    edit: Annotated[
        str | None, typer.Option(metavar="TEXT", help="What to change in the reference.")
    ] = None,
    dialog: Annotated[Path | None, typer.Option(metavar="FILE.json", help=_DIALOG_HELP)] = None,
    stages: Annotated[
        str, typer.Option(metavar="1[,2[,3]]", help="Stages to run, e.g. 1 or 1,2 or 1,2,3.")
    ] = "1,2,3",
    limit: Annotated[
        int, typer.Option(min=1, metavar="N", help="Results to print (table or --json).")
    ] = 10,
    filter_: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            metavar="KEY=VALUE",
            help="Metadata filter key=value, key>=n, key<n (repeatable).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the top --limit results as JSON, with the trace.")
    ] = False,
) -> None:
    """Search the catalog by text, by a reference image plus an edit, or by a dialog.

    \b
    Examples:
      imagescope search "red dress with long sleeves" --limit 20
      imagescope search --ref img-00042 --edit "same, but blue" --stages 1,2
      imagescope search --dialog turns.json --filter category=dress --json
    """
    from imagescope.wiring import open as open_engine

    query = build_query(
        text, ref=ref, edit=edit, dialog=dialog, filters=parse_filters(filter_ or [])
    )
    wanted = parse_stages(stages)
    settings = _settings()
    store = _open_store(settings)
    try:
        check_against_catalog(query, store)
    except BaseException:
        store.close()
        raise
    with open_engine(settings, store=store) as engine:
        result = engine.search(query, stages=wanted)
    if as_json:
        console.print_json(limited(result, limit).model_dump_json())
    elif result.candidates:
        print_result(console, result, limit=limit)
    else:
        print_empty(console, query.filters)


@app.command()
@friendly_errors
def ingest(
    source: Annotated[
        Path,
        typer.Argument(metavar="FOLDER|FILE", help="A folder of images, or a CSV/JSONL catalog."),
    ],
    batch_size: Annotated[int, typer.Option(min=1, metavar="N", help="Images per batch.")] = 32,
    force: Annotated[
        bool, typer.Option("--force", help="Re-embed every item, even those unchanged.")
    ] = False,
) -> None:
    """Caption (when a captioner is configured), embed and store a catalog.

    A second run skips files whose content, caption and metadata are unchanged
    (content hashes in DATA_DIR/ingest-manifest.sqlite) and says how many items
    were new, updated, unchanged or failed.
    """
    from imagescope.ingest.changes import IngestManifest, store_scope
    from imagescope.ingest.sources import read_folder, read_table
    from imagescope.wiring import open as open_engine

    settings = _settings()
    if not source.exists():
        raise InputError(f"{source} does not exist: give a folder of images or a CSV/JSONL file")
    items = read_folder(source) if source.is_dir() else read_table(source)
    roots = [
        *settings.images.allowed_roots,
        source.resolve() if source.is_dir() else source.resolve().parent,
    ]
    limits = settings.images.model_copy(update={"allowed_roots": roots})
    manifest_path = settings.data_dir / "ingest-manifest.sqlite"
    scope = store_scope(settings.store)
    with (
        open_engine(settings) as engine,
        IngestManifest(manifest_path, scope=scope, rewrite=force) as manifest,
    ):
        ids = engine.model_ids()
        models = ",".join(f"{r}={ids[r]}" for r in ("embedder", "captioner") if r in ids)
        report = engine.ingest(
            items, limits=limits, batch_size=batch_size, manifest=manifest, models=models
        )
    print_ingest_summary(console, report)
    for image_id, reason in list(report.failed.items())[:20]:
        err_console.print(f"[red]failed[/] {image_id}: {reason}")
    if report.failed:
        raise typer.Exit(1)


def check_port_free(host: str, port: int) -> None:
    """``InputError`` when ``host:port`` cannot be bound (in use, or not an address here)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise InputError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); stop what uses it "
                "or pick another with --port"
            ) from None


@app.command()
@friendly_errors
def serve(
    host: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help=f"Bind address [default: IMAGESCOPE_API__HOST, else {_API_DEFAULTS.host}].",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            metavar="PORT",
            help=f"Port [default: IMAGESCOPE_API__PORT, else {_API_DEFAULTS.port}].",
        ),
    ] = None,
) -> None:
    """Run the HTTP API and the search page (open http://HOST:PORT/) with uvicorn."""
    overrides = {f"api__{k}": v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = _settings(**overrides)
    check_port_free(settings.api.host, settings.api.port)
    from imagescope.api import serve as run_server

    run_server(settings)


@app.command()
@friendly_errors
def demo(
    size: Annotated[int, typer.Option(min=10, help="Catalog size to draw.")] = 400,
    seed: Annotated[int, typer.Option(help="Seed of the catalog and the queries.")] = 0,
    stages: Annotated[str, typer.Option(help="Stages to run, e.g. 1 or 1,2,3.")] = "1,2,3",
) -> None:
    """Draw a catalog, index it in the embedded store, run one query of each kind. Offline."""
    wanted = parse_stages(stages)
    settings = _settings()
    from imagescope.demo import print_demo, run_demo

    chosen, outcomes = run_demo(settings, n=size, seed=seed, stages=wanted)
    print_demo(console, chosen, outcomes)


def _eval_options(**given: Any) -> dict[str, Any]:
    return {name: value for name, value in given.items() if value is not None}


@app.command(name="eval")
@friendly_errors
def eval_(
    dataset: Annotated[
        str, typer.Argument(help="cirr, circo, fashioniq, flickr30k, mscoco, visdial, synthetic.")
    ],
    data: Annotated[Path, typer.Option(help="Dataset root (synthetic: where to draw it).")],
    split: Annotated[str | None, typer.Option(help="Split (default: the dataset's).")] = None,
    image_root: Annotated[Path | None, typer.Option(help="Images, if not under --data.")] = None,
    stages: Annotated[str, typer.Option(help="Stages to score, e.g. 1 or 1,2,3.")] = "1,2,3",
    out: Annotated[Path | None, typer.Option(help="Output folder (resumable).")] = None,
    max_queries: Annotated[int | None, typer.Option(min=1, help="Only the first N.")] = None,
    size: Annotated[int | None, typer.Option(min=10, help="synthetic: catalog size.")] = None,
    queries_per_kind: Annotated[
        int | None, typer.Option(min=1, help="synthetic: queries per kind.")
    ] = None,
    fresh: Annotated[
        bool,
        typer.Option(help="Start over instead of resuming (needed when the inputs changed)."),
    ] = False,
    partial_submission: Annotated[
        bool,
        typer.Option(help="With --max-queries on a test split: write the partial submission."),
    ] = False,
    skip_bad_images: Annotated[
        bool,
        typer.Option(help="Leave out gallery images that cannot be read (listed in metrics.json)."),
    ] = False,
    prompts: Annotated[
        Path | None,
        typer.Option(
            help="Prompt folder in the research layout (prompt1_stage1_reasoner.txt, "
            "prompt2_stage2_reasoner.txt, prompt3_stage3_evaluator.txt, caption.txt); "
            "default: IMAGESCOPE_PROMPTS__DIR, else the built-in prompts."
        ),
    ] = None,
) -> None:
    """Run a benchmark through the pipeline and print its official metrics per stage."""
    wanted = parse_stages(stages)
    if prompts is not None:
        from imagescope.models.prompt_files import load_prompt_dir

        try:
            load_prompt_dir(prompts)  # a bad folder is reported before any model loads
        except ConfigError as exc:
            raise InputError(f"--prompts: {exc}") from None
    settings = _settings(**({"prompts__dir": prompts.resolve()} if prompts else {}))
    from imagescope.eval.datasets import load_benchmark
    from imagescope.eval.harness import evaluate

    options = _eval_options(split=split, image_root=image_root, n=size, n_per_kind=queries_per_kind)
    benchmark = load_benchmark(dataset, data, **options)
    roots = [data.resolve(), *([image_root.resolve()] if image_root else [])]
    result = evaluate(
        benchmark,
        settings,
        stages=wanted,
        image_roots=roots,
        out_dir=out,
        max_queries=max_queries,
        resume=not fresh,
        partial_submission=partial_submission,
        skip_bad_images=skip_bad_images,
        say=console.print,
    )
    _print_metrics(benchmark.name, benchmark.split, len(benchmark.queries), result.metrics)
    console.print(f"metrics and rankings in {result.out_dir}")
    for stage_set, paths in result.submissions.items():
        for path in paths:
            console.print(f"submission ({stage_set}): {path}")


def _print_metrics(
    name: str, split: str, n_queries: int, metrics: dict[str, dict[str, float]]
) -> None:
    table = Table(title=f"{name} {split} ({n_queries} queries)")
    table.add_column("metric")
    for stage_set in metrics:
        table.add_column(f"stages {stage_set}", justify="right")
    names = dict.fromkeys(m for values in metrics.values() for m in values)
    for metric in names:
        row = [f"{values[metric]:.2f}" if metric in values else "-" for values in metrics.values()]
        table.add_row(metric, *row)
    console.print(table)
