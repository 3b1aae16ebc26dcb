"""The ImageScope exception hierarchy.

Backend errors (opensearch-py, httpx, PIL, redis, celery) are translated into
these at the boundary where they occur, so callers catch one family::

    ImageScopeError
    ├── ConfigError                 settings that cannot work (bad model name, dim mismatch)
    │   └── DimensionMismatchError  index vector dimension != embedder dimension
    ├── InputError                  the caller's fault -> HTTP 4xx, CLI message with the fix
    │   ├── EmptyQueryError         nothing to search for
    │   ├── UnknownIdError          a catalog id or job id that does not exist (404)
    │   ├── ImageError              unreadable, corrupt, oversized or forbidden image
    │   │   └── ImageTooLargeError  over the byte or pixel limit (413)
    │   ├── ForbiddenSourceError    a path outside the allowed roots, a private URL
    │   ├── InvalidVectorError      wrong dimension, NaN or inf
    │   └── UnknownFilterFieldError a filter on a field the index does not have
    ├── BackendError                a dependency failed; may be retried
    │   ├── StoreUnavailableError   OpenSearch / the embedded index cannot be reached
    │   ├── ModelBackendError       a model server failed or timed out
    │   │   └── ModelOutputError    the model answered, but not in a usable form
    │   └── JobBackendError         broker / result store failure
    ├── BulkIngestError             some documents failed; ``failed`` maps id -> reason
    └── JobError                    a rerank job failed or was cancelled
"""

from __future__ import annotations


class ImageScopeError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(ImageScopeError):
    """Settings that cannot work."""


class DimensionMismatchError(ConfigError):
    def __init__(self, *, index: str, index_dim: int, embedder_dim: int) -> None:
        super().__init__(
            f"index {index!r} stores {index_dim}-d vectors but the embedder makes "
            f"{embedder_dim}-d vectors; use the embedder the index was built with "
            "or ingest into a new index"
        )
        self.index_dim = index_dim
        self.embedder_dim = embedder_dim


class InputError(ImageScopeError):
    """The caller's input is wrong; the message says how to fix it."""

    status_code: int = 400


class EmptyQueryError(InputError):
    pass


class UnknownIdError(InputError):
    status_code = 404

    def __init__(self, kind: str, ids: list[str] | str) -> None:
        ids_list = [ids] if isinstance(ids, str) else list(ids)
        shown = ", ".join(repr(i) for i in ids_list[:5])
        more = f" (+{len(ids_list) - 5} more)" if len(ids_list) > 5 else ""
        super().__init__(f"unknown {kind} id: {shown}{more}")
        self.kind = kind
        self.ids = ids_list


class ImageError(InputError):
    status_code = 422


class ImageTooLargeError(ImageError):
    status_code = 413


class ForbiddenSourceError(InputError):
    status_code = 403


class InvalidVectorError(InputError):
    status_code = 422


class UnknownFilterFieldError(InputError):
    pass


class BackendError(ImageScopeError):
    """A dependency failed (network, server, timeout); may be transient."""

    status_code: int = 503


class StoreUnavailableError(BackendError):
    pass


class ModelBackendError(BackendError):
    pass


class ModelOutputError(ModelBackendError):
    """The model answered, but the answer could not be used even after repair."""


class JobBackendError(BackendError):
    pass


class BulkIngestError(ImageScopeError):
    """Some documents failed to index; the others were written."""

    def __init__(self, failed: dict[str, str], *, succeeded: int) -> None:
        first = next(iter(failed.items()), ("", ""))
        super().__init__(
            f"{len(failed)} document(s) failed ({succeeded} written); "
            f"first: {first[0]!r}: {first[1]}"
        )
        self.failed = failed
        self.succeeded = succeeded


class JobError(ImageScopeError):
    """A rerank job failed or was cancelled."""
