"""One typed settings tree for every ImageScope process.

Read from the environment (prefix ``IMAGESCOPE_``, nested sections joined by
``__``, e.g. ``IMAGESCOPE_STORE__KIND=opensearch``) and from an optional
``.env`` file. Nothing is built at import time: call :func:`get_settings`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, PositiveInt, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """Where the embedded store, caches and demo catalog live by default."""
    import os

    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "imagescope"


class EmbedderSettings(BaseModel):
    """CLIP-style embedder: one vector space for images and text."""

    kind: Literal["open_clip", "sentence_transformers", "fake"] = "open_clip"
    #: open_clip architecture name (e.g. ViT-B-32) or a sentence-transformers id/path.
    model: str = "ViT-B-32"
    #: open_clip pretrained tag (laion2b_s34b_b79k), a local checkpoint path, or None.
    pretrained: str | None = "laion2b_s34b_b79k"
    #: Extra folder of open_clip model configs (JSON) for custom architectures.
    config_dir: Path | None = None
    #: sentence-transformers only: a separate model for images (text model is multilingual).
    image_model: str | None = None
    device: str = "cpu"
    batch_size: int = Field(default=32, ge=1)


class ChatEndpoint(BaseModel):
    """An OpenAI-compatible chat server (``vllm serve`` and others)."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = ""
    api_key: SecretStr | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    max_concurrency: int = Field(default=8, ge=1)


class VLLMEngine(BaseModel):
    """In-process vLLM engine options (GPU workers only)."""

    model: str = ""
    dtype: str = "auto"
    max_model_len: int | None = None
    gpu_memory_utilization: float = Field(default=0.85, gt=0, le=1)
    enable_prefix_caching: bool = True


class ProfileSettings(BaseModel):
    """How prompts and images are laid out for a chat model (``models.profiles``).

    ``name`` picks a profile from the registry (unset: chosen by the model id);
    every other field, when set, overrides that profile's value.
    """

    name: str | None = None
    prompt_format: Literal["chat", "raw"] | None = None
    #: Raw prompts only: the prompt with ``{image}``, ``{text}`` (and ``{system}``).
    template: str | None = None
    #: Raw prompts only: what stands for one image in the template.
    image_token: str | None = None
    stop_tokens: list[str] | None = None
    #: Single images (verifier, captioner) are resized to this (width, height).
    image_size: tuple[PositiveInt, PositiveInt] | None = None
    #: Each half of a side-by-side evaluation image is letterboxed to this.
    panel_size: tuple[PositiveInt, PositiveInt] | None = None
    yes_no: Literal["logprobs", "text"] | None = None
    max_images: int | None = Field(default=None, ge=0)
    #: The verifier's question format, with ``{question}``.
    verify_template: str | None = None
    #: The captioner's request (with the built-in prompts).
    caption_text: str | None = None


class RoleSettings(BaseModel):
    """Backend for one model role (reasoner, verifier, evaluator, captioner)."""

    kind: Literal["rule", "clip", "learned", "openai", "vllm", "fake", "none"]
    openai: ChatEndpoint = Field(default_factory=ChatEndpoint)
    vllm: VLLMEngine = Field(default_factory=VLLMEngine)
    #: Generation limit; unset means the role's own default.
    max_tokens: int | None = Field(default=None, ge=1)
    #: Prompt format, stop tokens, image size... of the chat model (openai/vllm kinds).
    profile: ProfileSettings = Field(default_factory=ProfileSettings)
    #: Evaluator only: reference and candidate as one side-by-side image, or as
    #: two images in one prompt (the model's profile must allow several images).
    compose: Literal["side_by_side", "separate"] = "side_by_side"
    #: A folder of prompt files in the research code's layout; unset: ``prompts.dir``.
    prompts_dir: Path | None = None


class ModelSettings(BaseModel):
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    reasoner: RoleSettings = Field(default_factory=lambda: RoleSettings(kind="rule"))
    verifier: RoleSettings = Field(default_factory=lambda: RoleSettings(kind="clip"))
    evaluator: RoleSettings = Field(default_factory=lambda: RoleSettings(kind="clip"))
    captioner: RoleSettings = Field(default_factory=lambda: RoleSettings(kind="none"))


class PromptSettings(BaseModel):
    """Prompts of the chat-driven roles: built in, or a folder of prompt files."""

    #: A folder with prompt1_stage1_reasoner.txt, prompt2_stage2_reasoner.txt,
    #: prompt3_stage3_evaluator.txt and caption.txt (``models.prompt_files``);
    #: unset: the built-in prompts. Applies to every role without its own prompts_dir.
    dir: Path | None = None


class FieldMapping(BaseModel):
    """Field names in the OpenSearch index (to adopt an existing index)."""

    image_vector: str = "image_vector"
    caption_vector: str = "caption_vector"
    caption: str = "caption"
    uri: str = "uri"
    #: Object field holding the filterable metadata; "" means the metadata fields
    #: are top-level (every field that is not one of the four above).
    metadata: str = "metadata"
    #: A text field of the user's index read as the caption where ImageScope's own
    #: ``caption`` is empty (e.g. ``title``); never written.
    text: str = ""


#: Space types each k-NN engine of OpenSearch 2.19 accepts for HNSW fields.
KNN_ENGINE_SPACES: dict[str, frozenset[str]] = {
    "lucene": frozenset({"l2", "cosinesimil", "innerproduct"}),
    "faiss": frozenset({"l2", "cosinesimil", "innerproduct", "hamming"}),
    "nmslib": frozenset({"l2", "l1", "linf", "cosinesimil", "innerproduct"}),
}
KnnEngine = Literal["lucene", "faiss", "nmslib"]
KnnSpace = Literal["l2", "l1", "linf", "cosinesimil", "innerproduct", "hamming"]


class OpenSearchSettings(BaseModel):
    #: Several nodes of one cluster: requests go round-robin and move on from a dead one.
    hosts: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:9200"], min_length=1)
    #: Discover the cluster's other nodes (at start and when a node fails).
    sniff: bool = False
    username: str | None = None
    password: SecretStr | None = None
    verify_certs: bool = True
    #: The alias (or adopted index) searched and written; an index created here is
    #: ``<alias>-v<N>`` behind it (``imagescope opensearch create-index``).
    index: str = "imagescope-catalog"
    #: HNSW method of the fields ImageScope creates (adopted fields keep theirs).
    engine: KnnEngine = "lucene"
    space_type: KnnSpace = "cosinesimil"
    hnsw_m: int = Field(default=16, ge=2)
    ef_construction: int = Field(default=128, ge=8)
    ef_search: int = Field(default=100, ge=8)
    fields: FieldMapping = Field(default_factory=FieldMapping)
    #: Seconds one HTTP request may take.
    timeout_s: float = Field(default=30.0, gt=0)
    #: Total seconds one store call may spend retrying transient failures.
    budget_s: float = Field(default=60.0, gt=0)
    #: Total seconds one call keeps retrying when no node can be reached at all.
    connect_budget_s: float = Field(default=1.5, gt=0)
    #: Create the catalog when the name resolves to no index (catalogs ImageScope
    #: owns, e.g. eval runs); off: a missing or misspelt name is an error.
    create_missing: bool = False
    #: Search pipeline sent with ImageScope's own searches ("_none": bypass the
    #: index's default pipeline, so user pipelines never see them).
    search_pipeline: str = "_none"
    max_retries: int = Field(default=5, ge=0)
    bulk_chunk_size: int = Field(default=500, ge=1)
    #: Bulk requests in flight at once (the server builds HNSW graphs in parallel).
    bulk_threads: int = Field(default=2, ge=1)
    #: ``refresh_interval: -1`` on an index ImageScope created while it bulk-writes.
    #: Off by default: with Lucene HNSW it made bulk ingest 4x slower here, at about
    #: twice the node's CPU per document (graphs built over larger segments;
    #: benchmarks/bench_os_bulk.py --with-paused).
    bulk_pause_refresh: bool = False
    #: First wait between retries of a transient failure (doubles each time, max 30 s).
    retry_backoff_s: float = Field(default=0.5, gt=0)
    #: Refresh the index after each write call, so the next search sees the writes.
    refresh_after_write: bool = True
    #: Used when this store creates an index (not for adopted ones).
    number_of_shards: int = Field(default=1, ge=1)
    number_of_replicas: int = Field(default=1, ge=0)

    @model_validator(mode="after")
    def _engine_knows_space(self) -> OpenSearchSettings:
        allowed = KNN_ENGINE_SPACES[self.engine]
        if self.space_type not in allowed:
            raise ValueError(
                f"the {self.engine} engine does not support space_type {self.space_type!r}; "
                f"it supports {', '.join(sorted(allowed))}"
            )
        return self


class EmbeddedStoreSettings(BaseModel):
    path: Path = Field(default_factory=lambda: default_data_dir() / "catalog")
    hnsw_m: int = Field(default=32, ge=2)
    ef_construction: int = Field(default=200, ge=8)
    #: 64 measured recall@10 0.971 at 11x exact numpy (100k x 512); raise it for recall@100.
    ef_search: int = Field(default=64, ge=8)
    #: Records written per SQLite transaction (the unit a crash can lose).
    write_batch_size: int = Field(default=1000, ge=1)
    #: Save the ANN index files after this many new vectors (or a quarter of the index).
    index_flush_every: int = Field(default=20_000, ge=1)
    #: A filter that leaves at most this many vectors is searched exactly.
    exact_search_max: int = Field(default=8192, ge=0)
    #: How long a write waits for another process's writer lock.
    lock_timeout_s: float = Field(default=30.0, ge=0)
    #: OpenMP threads faiss may use for one knn call over several query vectors
    #: (0: faiss's default, every core). A single query vector always uses one.
    search_threads: int = Field(default=1, ge=0)
    #: How the HNSW index holds its vectors: ``flat`` (float32, exact scores),
    #: ``fp16`` (half the memory) or ``sq8`` (8-bit scalar quantizer, a quarter;
    #: its per-dimension ranges are learnt from the first vectors indexed). With
    #: ``fp16``/``sq8`` the graph proposes ``k * rescore_factor`` candidates and
    #: their float32 vectors, read from SQLite, give the exact scores returned.
    index_storage: Literal["flat", "fp16", "sq8"] = "flat"
    rescore_factor: int = Field(default=4, ge=1)


class StoreSettings(BaseModel):
    #: ``memory``: exact, in process, not persistent (tests, throwaway catalogs).
    kind: Literal["embedded", "opensearch", "memory"] = "embedded"
    embedded: EmbeddedStoreSettings = Field(default_factory=EmbeddedStoreSettings)
    opensearch: OpenSearchSettings = Field(default_factory=OpenSearchSettings)


class PipelineSettings(BaseModel):
    """The method's knobs (defaults are the paper's); the one place they are defined.

    Stage 1 reads ``tau``, ``limit``, ``num_candidates``, ``num_descriptions`` and
    ``exclude_reference``; stages 2-3 read ``top_k``, ``alpha`` and ``early_exit``.
    A request may override ``limit``, ``top_k`` and ``alpha``
    (:meth:`PipelineSettings.for_request` checks them together).
    """

    tau: float = Field(default=0.15, ge=0.0, le=1.0)
    top_k: int = Field(default=20, ge=1)
    alpha: int = Field(default=3, ge=0)
    #: Stage-1 ranking length returned to clients (and merged back after top_k).
    limit: int = Field(default=100, ge=1)
    #: ANN candidates fetched per description and field before exact fusion.
    num_candidates: int = Field(default=200, ge=1)
    #: Target descriptions the reasoner writes per query (stage 1a).
    num_descriptions: int = Field(default=3, ge=1)
    #: A composed query's reference image never ranks among its own results.
    exclude_reference: bool = True
    early_exit: bool = True

    @model_validator(mode="after")
    def _alpha_within_top_k(self) -> PipelineSettings:
        if self.alpha > self.top_k:
            raise ValueError(
                f"alpha ({self.alpha}) must not exceed top_k ({self.top_k}): stage 3 "
                "evaluates the best alpha of the top_k verified candidates"
            )
        return self

    def for_request(
        self, *, limit: int | None = None, top_k: int | None = None, alpha: int | None = None
    ) -> PipelineSettings:
        """These settings with one request's overrides, validated together.

        Raises ``InputError`` (HTTP 400 / CLI exit 2) when they do not fit, e.g.
        ``alpha`` above ``top_k``.
        """
        updates = {
            name: value
            for name, value in (("limit", limit), ("top_k", top_k), ("alpha", alpha))
            if value is not None
        }
        if not updates:
            return self
        try:
            return PipelineSettings.model_validate({**self.model_dump(), **updates})
        except ValueError as exc:
            from imagescope.errors import InputError

            reasons = "; ".join(
                str(e["msg"]).removeprefix("Value error, ")
                for e in getattr(exc, "errors", lambda: [])()
            )
            raise InputError(f"bad search settings: {reasons or exc}") from None


class ImageLimits(BaseModel):
    """Guards for untrusted images (uploads, URLs, paths)."""

    max_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    max_pixels: int = Field(default=40_000_000, ge=1)
    #: Folders that image paths may come from; empty means the current directory.
    allowed_roots: list[Path] = Field(default_factory=list)
    allow_private_urls: bool = False
    url_timeout_s: float = Field(default=10.0, gt=0)


class JobSettings(BaseModel):
    """Rerank jobs: in-process when no broker is set, else Celery on Redis."""

    broker_url: str | None = None
    result_url: str | None = None
    visibility_timeout_s: int = Field(default=3600, ge=60)
    sync_deadline_s: float = Field(default=30.0, gt=0)
    batch_size: int = Field(default=64, ge=1)
    batch_window_ms: int = Field(default=20, ge=0)
    cache_ttl_s: int = Field(default=7 * 24 * 3600, ge=0)
    webhook_secret: SecretStr | None = None
    #: Celery queue the rerank tasks are sent to (workers: ``-Q`` the same name).
    queue: str = "imagescope-rerank"
    #: Prefix of every Redis key the job layer writes (job records, answer cache).
    key_prefix: str = "imagescope:"
    #: A running job whose worker has not sent a heartbeat for this long is re-enqueued.
    lease_s: float = Field(default=30.0, gt=0)
    #: A queued job that no worker has started for this long is sent again.
    requeue_after_s: float = Field(default=600.0, gt=0)
    #: How often the reconciler looks for lost jobs (0 turns it off).
    reconcile_interval_s: float = Field(default=30.0, ge=0)
    #: Retries of a job after a transient backend error, then it fails.
    max_retries: int = Field(default=3, ge=0)
    retry_backoff_s: float = Field(default=2.0, ge=0)
    #: How long finished job records are kept.
    result_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    #: Rerank jobs run at once by the in-process backend (no broker).
    in_process_workers: int = Field(default=2, ge=1)
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    webhook_attempts: int = Field(default=3, ge=1)
    #: Allow completion webhooks to private or loopback addresses (trusted networks).
    webhook_allow_private: bool = False
    #: ``module:function`` called as ``f(components, settings) -> components`` after a
    #: process (API or worker) loads its models: wraps or replaces backends.
    components_hook: str | None = None


class LimitSettings(BaseModel):
    """Bounds on what one request may ask for (each refusal names its limit).

    Image bytes and pixels are bounded by ``images.max_bytes`` and
    ``images.max_pixels``; request bodies by ``api.max_request_bytes``.
    """

    #: Characters in a query's text, instruction, caption, or a dialog question/answer.
    max_query_chars: int = Field(default=2000, ge=1)
    #: Question/answer turns in a dialog query.
    max_dialog_turns: int = Field(default=20, ge=0)
    #: Candidates in a client-supplied stage-1 result of a rerank job.
    max_candidates: int = Field(default=1000, ge=1)
    #: Propositions per query (in a supplied stage-1 trace, and produced by stage 2).
    max_propositions: int = Field(default=32, ge=1)
    #: Unfinished rerank jobs one API key may have at once (0: no limit).
    max_open_jobs: int = Field(default=100, ge=0)


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    #: When non-empty, every request must carry one of these in X-API-Key. Each key
    #: is a tenant: it sees only the jobs it submitted.
    api_keys: list[SecretStr] = Field(default_factory=list)
    #: Keys that may also read and cancel every tenant's jobs (valid keys by themselves).
    admin_keys: list[SecretStr] = Field(default_factory=list)
    #: Signs the short-lived image tokens (cookie or ``?token=``) that let ``<img>``
    #: load images when keys are on. Unset: a random secret per process (set it when
    #: several API processes serve one page).
    image_token_secret: SecretStr | None = None
    image_token_ttl_s: int = Field(default=3600, ge=60)
    max_request_bytes: int = Field(default=25 * 1024 * 1024, ge=1)
    #: Longest side of images served by GET /v1/images/{id} (larger ones are scaled down).
    max_image_side: int = Field(default=2048, ge=16)
    #: Largest ``size`` accepted by the thumbnail endpoint.
    max_thumbnail_side: int = Field(default=512, ge=16)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="IMAGESCOPE_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    models: ModelSettings = Field(default_factory=ModelSettings)
    prompts: PromptSettings = Field(default_factory=PromptSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    images: ImageLimits = Field(default_factory=ImageLimits)
    jobs: JobSettings = Field(default_factory=JobSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)

    @model_validator(mode="after")
    def _paths_follow_data_dir(self) -> Settings:
        """Paths left unset live under ``data_dir`` (``IMAGESCOPE_DATA_DIR``)."""
        embedded = self.store.embedded
        if "path" not in embedded.model_fields_set:
            embedded.path = self.data_dir / "catalog"
        return self

    @model_validator(mode="after")
    def _prompts_reach_roles(self) -> Settings:
        """``prompts.dir`` becomes every chat role's ``prompts_dir`` unless it has its own."""
        if self.prompts.dir is not None:
            for role in (self.models.reasoner, self.models.evaluator, self.models.captioner):
                if "prompts_dir" not in role.model_fields_set:
                    # Not marked as set: a later override of prompts.dir still applies.
                    role.__dict__["prompts_dir"] = self.prompts.dir
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
