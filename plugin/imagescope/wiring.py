"""The one place an engine is assembled from settings.

:func:`open` (exported as ``imagescope.open``) builds every backend the settings
name, applies ``jobs.components_hook`` and returns an :class:`Engine`. The CLI,
the API, the rerank workers, the demo, eval and the benchmarks all start here.
:func:`open_jobs` and :func:`job_components` build the job layer over an
engine's components, so no caller outside this module reaches into them.

Settings overrides are keyword arguments: a section as a dict
(``pipeline={"tau": 0.2}``) or one field with ``__`` between the names, as in
the environment (``store__kind="opensearch"``, ``pipeline__top_k=10``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from imagescope.engine import Engine
from imagescope.errors import ConfigError
from imagescope.settings import ImageLimits, Settings

if TYPE_CHECKING:
    from imagescope.jobs.base import JobBackend
    from imagescope.models.base import Embedder
    from imagescope.pipeline.context import Components
    from imagescope.store.base import VectorStore

#: Catalogs :func:`open` can prepare by name (``catalog=``).
CATALOGS = ("synthetic",)
#: The bundled synthetic catalog :func:`open` draws: size and seed.
SYNTHETIC_SIZE = 400
SYNTHETIC_SEED = 0


def slug(text: str) -> str:
    """``text`` as a file or index name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def _merge(base: dict[str, Any], path: list[str], value: Any) -> None:
    node = base
    for name in path[:-1]:
        child = node.get(name)
        node[name] = child = dict(child) if isinstance(child, dict) else {}
        node = child
    leaf = path[-1]
    if isinstance(value, dict) and isinstance(node.get(leaf), dict):
        for key, item in value.items():
            _merge(node, [leaf, key], item)
    else:
        node[leaf] = value


def with_overrides(settings: Settings, **overrides: Any) -> Settings:
    """``settings`` with ``section__field=value`` / ``section={...}`` overrides, validated."""
    if not overrides:
        return settings
    data = settings.model_dump(exclude_unset=True)
    sections = set(Settings.model_fields)
    for key, value in overrides.items():
        path = key.split("__")
        if path[0] not in sections:
            raise ConfigError(
                f"unknown setting {key!r}; sections: {', '.join(sorted(sections))} "
                "(write section__field=value, e.g. pipeline__top_k=10)"
            )
        _merge(data, path, value)
    if "data_dir" in overrides and not any(k.startswith("store") for k in overrides):
        # The embedded catalog follows a new data_dir unless its path is given too.
        data.get("store", {}).get("embedded", {}).pop("path", None)
    try:
        return Settings.model_validate(data)
    except ValueError as exc:
        raise ConfigError(f"invalid settings: {exc}") from None


def with_embedder_model(settings: Settings, model: str) -> Settings:
    """``settings`` with ``models.embedder.model`` replaced (e.g. ``bundled:synthetic``)."""
    embedder = settings.models.embedder.model_copy(update={"model": model})
    models = settings.models.model_copy(update={"embedder": embedder})
    return settings.model_copy(update={"models": models})


def load_embedder(settings: Settings) -> Embedder:
    """The configured embedder (``models.embedder``)."""
    from imagescope.models.factory import build_embedder

    return build_embedder(settings.models.embedder)


def scoped(settings: Settings, *, folder: str, name: str) -> Settings:
    """Settings whose store is a catalog of its own: ``data_dir/<folder>/<name>``
    for the embedded store, index ``<alias>-<folder>-<name>`` on OpenSearch."""
    store = settings.store
    if store.kind == "opensearch":
        index = f"{store.opensearch.index}-{folder}-{slug(name).lower()}"[:200]
        update: dict[str, Any] = {
            # Its own catalog: created on first use (a user's index never is).
            "opensearch": store.opensearch.model_copy(
                update={"index": index, "create_missing": True}
            )
        }
    else:
        path = settings.data_dir / folder / slug(name)
        update = {"embedded": store.embedded.model_copy(update={"path": path})}
    return settings.model_copy(update={"store": store.model_copy(update=update)})


def _components(
    settings: Settings, embedder: Embedder, store: VectorStore, limits: ImageLimits
) -> Components:
    from imagescope.jobs.factory import with_components_hook
    from imagescope.models import factory
    from imagescope.pipeline.context import Components, MemoryAnswerCache, StoreImageSource
    from imagescope.synthetic.judges import register_learned_judges

    register_learned_judges()
    models = settings.models
    components = Components(
        embedder=embedder,
        store=store,
        reasoner=factory.build_reasoner(models.reasoner, embedder),
        images=StoreImageSource(store, limits),
        verifier=factory.build_verifier(models.verifier, embedder),
        evaluator=factory.build_evaluator(models.evaluator, embedder),
        captioner=factory.build_captioner(models.captioner, embedder),
        cache=MemoryAnswerCache(),
    )
    return with_components_hook(components, settings)


def open(  # noqa: A001 - the public name is imagescope.open
    settings: Settings | None = None,
    *,
    catalog: str | None = None,
    embedder: Embedder | None = None,
    store: VectorStore | dict[str, Any] | None = None,
    limits: ImageLimits | None = None,
    **overrides: Any,
) -> Engine:
    """An engine over the backends ``settings`` (default: the environment) name.

    ``catalog="synthetic"`` searches the bundled synthetic catalog: drawn and
    indexed under ``data_dir/demo`` on first use, embedded with the bundled model
    (no download). ``embedder``/``store``/``limits`` objects replace the configured
    ones (``store={...}`` is the settings section); the store is created or checked
    against the embedder's dimension.
    """
    if isinstance(store, dict):  # the settings section, not a store object
        overrides["store"], store = store, None
    settings = with_overrides(settings or Settings(), **overrides)
    if catalog is not None:
        if catalog not in CATALOGS:
            raise ConfigError(f"unknown catalog {catalog!r}; known: {', '.join(CATALOGS)}")
        return open_synthetic(settings, embedder=embedder)
    embedder = embedder or load_embedder(settings)
    if store is None:
        from imagescope.store.factory import build_store

        store = build_store(settings.store)
    store.ensure(embedder.dim)
    components = _components(settings, embedder, store, limits or settings.images)
    return Engine(components, settings.pipeline)


def open_synthetic(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    n: int = SYNTHETIC_SIZE,
    seed: int = SYNTHETIC_SEED,
    progress: bool = False,
) -> Engine:
    """An engine over a drawn synthetic catalog of ``n`` images, indexed once per embedder."""
    from imagescope.ingest.sources import read_table
    from imagescope.synthetic.catalog import write_catalog

    if embedder is None:
        embedder = load_embedder(with_embedder_model(settings, "bundled:synthetic"))
    root = settings.data_dir / "demo"
    catalog_dir = root / f"catalog-{n}-{seed}"
    if not (catalog_dir / "catalog.csv").is_file():
        write_catalog(catalog_dir, n=n, seed=seed)
    embedded = settings.store.embedded.model_copy(
        update={"path": root / "index" / slug(embedder.model_id) / catalog_dir.name}
    )
    local = settings.model_copy(
        update={
            "store": settings.store.model_copy(update={"kind": "embedded", "embedded": embedded})
        }
    )
    limits = settings.images.model_copy(update={"allowed_roots": [catalog_dir]})
    engine = open(local, embedder=embedder, limits=limits)
    try:
        report = engine.ingest(
            read_table(catalog_dir / "catalog.csv"),
            limits=limits,
            skip_existing=True,
            progress=progress,
        )
        report.raise_for_failures()
    except BaseException:
        engine.close()
        raise
    return engine


def job_components(engine: Engine, settings: Settings) -> Components:
    """The components rerank jobs run over (batching verifier, shared answer cache)."""
    from imagescope.jobs.factory import job_components as wrap

    return wrap(engine.components, settings)


def open_jobs(engine: Engine, settings: Settings) -> JobBackend:
    """The job backend: in-process over the engine's components, or Celery on Redis."""
    from imagescope.jobs.factory import build_job_backend

    in_process = settings.jobs.broker_url is None
    components = job_components(engine, settings) if in_process else engine.components
    return build_job_backend(settings, components)


__all__ = [
    "CATALOGS",
    "job_components",
    "load_embedder",
    "open",
    "open_jobs",
    "open_synthetic",
    "scoped",
    "slug",
    "with_embedder_model",
    "with_overrides",
]
