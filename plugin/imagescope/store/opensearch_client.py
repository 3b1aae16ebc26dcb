"""Requests to OpenSearch with bounded retries and errors translated at the boundary.

Transient failures (the node cannot be reached, a timeout, HTTP 429 or 502-504)
are retried with exponential backoff (at most ``settings.max_retries`` times,
starting at ``settings.retry_backoff_s``) within a total time budget per call
(``settings.budget_s``; ``settings.connect_budget_s`` while no node can be
reached at all, so a dead single host fails within about two seconds) and then
raised as ``StoreUnavailableError``. With several ``hosts`` the client sends
each request to the next live node and moves on from a dead one within the same
call; ``settings.sniff`` discovers the cluster's other nodes.
HTTP 401/403 become ``ConfigError`` (credentials, permissions); a blocked index
(read-only, disk full) ``StoreUnavailableError``; anything else ``BackendError``.
Bulk writes go through ``opensearchpy.helpers.streaming_bulk``, which retries
documents rejected with 429 on its own; per-document failures are reported by
id, never raised.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any, TypeVar

from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import ConnectionTimeout, TransportError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    wait_exponential,
)

from imagescope.errors import (
    BackendError,
    ConfigError,
    ImageScopeError,
    StoreUnavailableError,
)
from imagescope.settings import OpenSearchSettings
from imagescope.store.base import BulkReport
from imagescope.store.opensearch_json import OrjsonSerializer

log = logging.getLogger(__name__)
T = TypeVar("T")

#: HTTP statuses worth retrying: too many requests, bad gateway, unavailable, gateway timeout.
TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
MAX_BACKOFF_S = 30.0
#: Connections kept per node (threads searching at once reuse them).
POOL_SIZE = 16
#: Bulk chunks built ahead per thread (opensearch-py's parallel_bulk queues 4 in all).
QUEUE_FACTOR = 2


def build_client(settings: OpenSearchSettings) -> OpenSearch:
    """An opensearch-py client for ``settings`` writing request bodies with orjson
    (:class:`OrjsonSerializer`); retries are left to :class:`Requester`."""
    auth = None
    if settings.username:
        password = settings.password.get_secret_value() if settings.password else ""
        auth = (settings.username, password)
    return OpenSearch(
        hosts=settings.hosts,
        http_auth=auth,
        verify_certs=settings.verify_certs,
        ssl_show_warn=settings.verify_certs,
        timeout=settings.timeout_s,
        # A connection error moves on to the next host within the same call.
        max_retries=len(settings.hosts) - 1,
        retry_on_timeout=False,
        pool_maxsize=POOL_SIZE,
        sniff_on_start=settings.sniff,
        sniff_on_connection_fail=settings.sniff,
        sniffer_timeout=60 if settings.sniff else None,
        sniff_timeout=min(settings.timeout_s, 5.0),
        serializer=OrjsonSerializer(),
    )


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same request later may succeed."""
    if isinstance(exc, OSConnectionError):
        return True
    return isinstance(exc, TransportError) and exc.status_code in TRANSIENT_STATUS


def error_reason(error: Any) -> str:
    """A readable reason from an OpenSearch error object (or string)."""
    if not isinstance(error, Mapping):
        return str(error)
    reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
    cause = error.get("caused_by")
    if isinstance(cause, Mapping) and cause.get("reason"):
        reason += f" ({cause['reason']})"
    return reason


def translate_error(exc: TransportError, *, what: str, hosts: Sequence[str]) -> ImageScopeError:
    """Map an opensearch-py error onto the imagescope hierarchy."""
    where = ", ".join(hosts)
    if isinstance(exc, OSConnectionError):
        return StoreUnavailableError(
            f"OpenSearch at {where} cannot be reached ({what}): {exc.error}; check that it "
            "runs and that settings.store.opensearch.hosts points at it"
        )
    status = exc.status_code
    info = exc.args[2] if len(exc.args) > 2 else None
    if isinstance(info, Mapping):
        info = info.get("error", info)
    reason = error_reason(info) if info else str(exc.error)
    if status in TRANSIENT_STATUS or exc.error == "cluster_block_exception":
        return StoreUnavailableError(f"OpenSearch at {where} is unavailable ({what}): {reason}")
    if status in (401, 403):
        return ConfigError(
            f"OpenSearch refused {what} (HTTP {status}): {reason}; check the username, "
            "password and index permissions in settings.store.opensearch"
        )
    return BackendError(f"OpenSearch failed {what} (HTTP {status}): {reason}")


def http_status(exc: BaseException) -> int | str | None:
    """The HTTP status of the OpenSearch error behind a translated error, if any."""
    cause = exc.__cause__
    return cause.status_code if isinstance(cause, TransportError) else None


def error_type(exc: BaseException) -> str | None:
    """The OpenSearch error type behind a translated error (``resource_already_exists...``)."""
    cause = exc.__cause__
    return str(cause.error) if isinstance(cause, TransportError) else None


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most ``size`` items."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class Requester:
    """Runs requests on one client with the retry and translation rules above."""

    def __init__(self, client: OpenSearch, settings: OpenSearchSettings) -> None:
        self.client = client
        self.settings = settings

    def _log_retry(self, what: str) -> Callable[[RetryCallState], None]:
        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.warning("OpenSearch %s failed (attempt %d): %s", what, state.attempt_number, error)

        return before_sleep

    def _stop(self, state: RetryCallState) -> bool:
        """Stop after ``max_retries`` or once the call's time budget is spent."""
        if state.attempt_number > self.settings.max_retries:
            return True
        error = state.outcome.exception() if state.outcome else None
        # No node accepted the connection at all (a timeout means one did, and is slow).
        unreachable = isinstance(error, OSConnectionError) and not isinstance(
            error, ConnectionTimeout
        )
        budget = self.settings.connect_budget_s if unreachable else self.settings.budget_s
        return (state.seconds_since_start or 0.0) >= budget

    def call(self, what: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
        """``fn(**kwargs)``, retried on transient failures, errors translated."""
        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            stop=self._stop,
            wait=wait_exponential(
                multiplier=self.settings.retry_backoff_s,
                max=min(MAX_BACKOFF_S, self.settings.budget_s / 4),
            ),
            before_sleep=self._log_retry(what),
            reraise=True,
        )
        try:
            return retrying(fn, **kwargs)
        except TransportError as exc:
            raise translate_error(exc, what=what, hosts=self.settings.hosts) from exc

    def call_or_none(self, what: str, fn: Callable[..., T], /, **kwargs: Any) -> T | None:
        """Like :meth:`call`, but "not found" (a missing index) gives ``None``."""
        try:
            return self.call(what, fn, **kwargs)
        except BackendError as exc:
            if http_status(exc) == 404:
                return None
            raise

    def _send_chunk(self, actions: Sequence[dict[str, Any]]) -> list[tuple[bool, Any]]:
        return list(
            helpers.streaming_bulk(
                self.client,
                actions,
                chunk_size=len(actions),
                raise_on_error=False,
                raise_on_exception=True,
                max_retries=self.settings.max_retries,
                initial_backoff=self.settings.retry_backoff_s,  # type: ignore[arg-type]
                max_backoff=int(MAX_BACKOFF_S),
            )
        )

    def bulk(self, what: str, actions: Iterable[dict[str, Any]]) -> BulkReport:
        """Send bulk actions in chunks, ``bulk_threads`` requests in flight; every
        action's id lands in the report.

        A chunk whose request fails transiently is sent again as a whole, which
        is safe because every action is idempotent by id. At most
        ``QUEUE_FACTOR * bulk_threads`` chunks are read from ``actions`` ahead
        of the answers (so memory stays bounded), which keeps a chunk waiting
        for each thread while this thread builds the next one.
        """
        report = BulkReport()
        threads = self.settings.bulk_threads
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bulk") as pool:
            pending: deque[Future[list[tuple[bool, Any]]]] = deque()
            for chunk in chunked(actions, self.settings.bulk_chunk_size):
                if len(pending) >= QUEUE_FACTOR * threads:
                    self._collect(pending.popleft().result(), report)
                pending.append(pool.submit(self.call, what, self._send_chunk, actions=chunk))
            while pending:
                self._collect(pending.popleft().result(), report)
        return report

    @staticmethod
    def _collect(results: list[tuple[bool, Any]], report: BulkReport) -> None:
        for ok, item in results:
            result = next(iter(item.values()))
            if ok:
                report.succeeded.append(result["_id"])
            elif result.get("status") == 404:
                report.failed[result["_id"]] = "unknown id: no record has this id"
            else:
                report.failed[result["_id"]] = error_reason(result.get("error"))
