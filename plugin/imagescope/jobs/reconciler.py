"""Finding accepted jobs whose message was lost, and sending them again.

A job can lose its broker message: Redis restarted without the queue, a worker
died holding it (Redis redelivers only after the visibility timeout), or the
API crashed between recording the job and sending it. The reconciler scans the
open jobs and re-sends those QUEUED for longer than ``requeue_after_s`` and
those RUNNING without a heartbeat for longer than ``lease_s``.

It is safe to run repeatedly and from several processes at once: the store
marks a job re-enqueued atomically, so each stale job is re-sent by one caller,
and a duplicate message is harmless because running a job is idempotent by id.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from imagescope.errors import ImageScopeError
from imagescope.jobs.base import JobStore

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(
        self,
        store: JobStore,
        dispatch: Callable[[str], None],
        *,
        requeue_after_s: float,
        lease_s: float,
    ) -> None:
        self._store = store
        self._dispatch = dispatch
        self._requeue_after_s = requeue_after_s
        self._lease_s = lease_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> list[str]:
        """One pass; returns the ids it re-sent."""
        resent = []
        for job_id in self._store.open_ids():
            if self._store.requeue_if_stale(
                job_id, queued_for_s=self._requeue_after_s, silent_for_s=self._lease_s
            ):
                self._dispatch(job_id)
                resent.append(job_id)
        if resent:
            log.warning("reconciler re-sent %d lost job(s): %s", len(resent), resent[:10])
        return resent

    def _loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.run_once()
            except ImageScopeError as exc:
                log.warning("reconciler pass failed (will try again): %s", exc)
            except Exception:
                log.exception("reconciler pass failed (will try again)")

    def start(self, interval_s: float) -> None:
        """Runs a pass every ``interval_s`` seconds in a daemon thread."""
        if self._thread is not None or interval_s <= 0:
            return
        self._thread = threading.Thread(
            target=self._loop, args=(interval_s,), name="job-reconciler", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
