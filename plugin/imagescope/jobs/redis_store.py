"""Job records in Redis, one hash per job; every transition is one Lua script.

Keys (``prefix`` from ``settings.jobs.key_prefix``)::

    <prefix>job:<id>    hash: request, digest, state, progress, result, error,
                        created_at, updated_at, enqueued_at, heartbeat_at,
                        attempts, result_writes, worker, webhook
    <prefix>jobs:open   set of the ids of jobs that are not final
    <prefix>jobs:open:<owner>  the same, per owner (the per-key job limit)

Timestamps come from the Redis server clock (``TIME``), so workers and API
processes on different hosts compare them on one clock. A final record expires
after ``result_ttl_s``. Redis errors are translated into ``JobBackendError``
(whose message never names the server's address; the log does).

Two ways to connect (``connect``): workers retry connection errors with backoff
for ~15 s, so a Redis restart is ridden out; the API (``fail_fast``) uses ~1 s
timeouts, no retry and a ``CircuitBreaker``, so an outage costs one timeout and
then every call answers "unavailable" at once until Redis is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from imagescope.errors import JobBackendError, UnknownIdError
from imagescope.jobs.base import (
    FINAL_STATES,
    JobRecord,
    JobStore,
    TooManyJobsError,
    owner_of,
    too_many,
    unknown_job,
)
from imagescope.jobs.breaker import CircuitBreaker, CircuitOpenError
from imagescope.schemas import JobState, RerankRequest, SearchResult

T = TypeVar("T")
log = logging.getLogger(__name__)

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000\n"
_FINAL = "local final = {succeeded=true, failed=true, cancelled=true}\n"

_CREATE = (
    _NOW
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, redis.call('HGETALL', KEYS[1])} end
if tonumber(ARGV[4]) > 0 and redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[4]) then
  return {-2, {}}
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'request', ARGV[2], 'digest', ARGV[3],
  'state', 'queued', 'progress', 0, 'created_at', now, 'updated_at', now,
  'enqueued_at', now, 'heartbeat_at', 0, 'attempts', 0, 'result_writes', 0)
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return {1, redis.call('HGETALL', KEYS[1])}
"""
)

_CLAIM = (
    _NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
local silent = now - tonumber(redis.call('HGET', KEYS[1], 'heartbeat_at'))
if state == 'queued' or (state == 'running' and silent > tonumber(ARGV[2])) then
  redis.call('HSET', KEYS[1], 'state', 'running', 'heartbeat_at', now, 'updated_at', now,
    'worker', ARGV[1])
  redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  return redis.call('HGETALL', KEYS[1])
end
return 0
"""
)

_HEARTBEAT = (
    _NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if state == 'running' then
  redis.call('HSET', KEYS[1], 'heartbeat_at', now, 'updated_at', now)
  if ARGV[1] ~= '' then
    local p = math.max(tonumber(redis.call('HGET', KEYS[1], 'progress')), tonumber(ARGV[1]))
    redis.call('HSET', KEYS[1], 'progress', math.min(p, 1))
  end
end
return state
"""
)

_FINISH = (
    _NOW
    + _FINAL
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if final[state] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'updated_at', now)
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'result', ARGV[2]) end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[3]) end
if ARGV[1] == 'succeeded' then redis.call('HSET', KEYS[1], 'progress', 1) end
redis.call('HINCRBY', KEYS[1], 'result_writes', 1)
redis.call('SREM', KEYS[2], redis.call('HGET', KEYS[1], 'id'))
redis.call('SREM', KEYS[3], redis.call('HGET', KEYS[1], 'id'))
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[1])
return 1
"""
)

_RELEASE = (
    _NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if state ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'queued', 'enqueued_at', now, 'updated_at', now)
return 1
"""
)

_REQUEUE = (
    _NOW
    + _FINAL
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state or final[state] then
  redis.call('SREM', KEYS[2], ARGV[3])
  redis.call('SREM', KEYS[3], ARGV[3])
  if not state then return -1 end
  return 0
end
local queued = now - tonumber(redis.call('HGET', KEYS[1], 'enqueued_at'))
local silent = now - tonumber(redis.call('HGET', KEYS[1], 'heartbeat_at'))
if (state == 'queued' and queued > tonumber(ARGV[1]))
   or (state == 'running' and silent > tonumber(ARGV[2])) then
  redis.call('HSET', KEYS[1], 'state', 'queued', 'enqueued_at', now, 'updated_at', now)
  return 1
end
return 0
"""
)

_DELETE = (
    _NOW
    + _FINAL
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if not final[state] then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'error', 'deleted by request')
  redis.call('HINCRBY', KEYS[1], 'result_writes', 1)
  redis.call('SREM', KEYS[2], redis.call('HGET', KEYS[1], 'id'))
  redis.call('SREM', KEYS[3], redis.call('HGET', KEYS[1], 'id'))
  redis.call('PUBLISH', ARGV[2], 'cancelled')
end
redis.call('HSET', KEYS[1], 'deleted', 1, 'updated_at', now)
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""
)


try:  # redis-py >= 8
    from redis.driver_info import DriverInfo

    #: No CLIENT SETINFO on connect: two round trips on every new connection
    #: (and each wait's pub/sub connection is a new one).
    _NO_SETINFO: dict[str, Any] = {"driver_info": DriverInfo(name=None, lib_version=None)}
except ImportError:  # pragma: no cover - older redis-py
    _NO_SETINFO = {"lib_name": None, "lib_version": None}


def connect(url: str, *, retry_for_s: float = 15.0, fail_fast: bool = False) -> redis.Redis:
    """A client that retries connection errors with backoff for about ``retry_for_s``;
    ``fail_fast``: ~1 s connect and operation timeouts and no retry."""
    retries = 0 if fail_fast else max(1, int(retry_for_s / 0.5))
    return redis.Redis.from_url(
        url,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        socket_connect_timeout=1.0 if fail_fast else 2.0,
        socket_timeout=1.0 if fail_fast else 10.0,
        health_check_interval=15,
        decode_responses=False,
        **_NO_SETINFO,
    )


def _text(raw: Mapping[Any, Any], name: str, default: str = "") -> str:
    value = raw.get(name.encode())
    return default if value is None else bytes(value).decode()


def _pairs(flat: list[Any]) -> dict[Any, Any]:
    """A hash as a script returns it (``HGETALL``: name, value, ...) as a mapping."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _record(raw: Mapping[Any, Any]) -> JobRecord:
    result = _text(raw, "result")
    return JobRecord(
        id=_text(raw, "id"),
        request=RerankRequest.model_validate_json(_text(raw, "request")),
        digest=_text(raw, "digest"),
        state=JobState(_text(raw, "state")),
        progress=float(_text(raw, "progress", "0")),
        result=SearchResult.model_validate_json(result) if result else None,
        error=_text(raw, "error") or None,
        created_at=float(_text(raw, "created_at", "0")),
        updated_at=float(_text(raw, "updated_at", "0")),
        enqueued_at=float(_text(raw, "enqueued_at", "0")),
        heartbeat_at=float(_text(raw, "heartbeat_at", "0")),
        attempts=int(_text(raw, "attempts", "0")),
        result_writes=int(_text(raw, "result_writes", "0")),
        worker=_text(raw, "worker"),
        webhook=_text(raw, "webhook"),
        deleted=_text(raw, "deleted") == "1",
    )


class RedisJobStore(JobStore):
    """``JobStore`` on a Redis server (see the module docstring for the layout)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "imagescope:",
        result_ttl_s: int = 604800,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._client = client
        self._breaker = breaker
        self._prefix = prefix
        self._ttl = result_ttl_s
        self._local = threading.local()  # one pub/sub connection per waiting thread
        self._open = f"{prefix}jobs:open"
        scripts = {
            "create": _CREATE,
            "claim": _CLAIM,
            "heartbeat": _HEARTBEAT,
            "finish": _FINISH,
            "release": _RELEASE,
            "requeue": _REQUEUE,
            "delete": _DELETE,
        }
        self._scripts = {name: client.register_script(body) for name, body in scripts.items()}

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str, result_ttl_s: int, fail_fast: bool = False
    ) -> RedisJobStore:
        """``fail_fast`` (the API): short timeouts and a circuit breaker."""
        return cls(
            connect(url, fail_fast=fail_fast),
            prefix=prefix,
            result_ttl_s=result_ttl_s,
            breaker=CircuitBreaker(reset_s=2.0) if fail_fast else None,
        )

    def key(self, job_id: str) -> str:
        return f"{self._prefix}job:{job_id}"

    def channel(self, job_id: str) -> str:
        """Pub/sub channel on which the final state is announced."""
        return f"{self._prefix}job:{job_id}:final"

    def owner_open_key(self, job_id: str) -> str:
        return f"{self._open}:{owner_of(job_id)}"

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        breaker = self._breaker
        try:
            if breaker is not None:
                breaker.before()
            result = fn()
        except CircuitOpenError:
            raise JobBackendError(
                f"the job store is unavailable (cannot {what}); retry in a few seconds"
            ) from None
        except redis.RedisError as exc:
            if breaker is not None:
                breaker.failure()
            log.warning("job store (Redis) failed to %s: %s", what, exc)
            raise JobBackendError(
                f"the job store is unavailable (cannot {what}); retry in a few seconds"
            ) from exc
        if breaker is not None:
            breaker.success()
        return result

    def _run(self, script: str, job_id: str, *args: Any) -> Any:
        keys = [self.key(job_id), self._open, self.owner_open_key(job_id)]
        result = self._call(script, lambda: self._scripts[script](keys=keys, args=list(args)))
        if result == -1:
            raise unknown_job(job_id)
        return result

    def create(self, record: JobRecord, *, max_open: int = 0) -> tuple[JobRecord, bool]:
        request = record.request.model_dump_json()
        # The script answers with the stored record: no read after the write.
        created, fields = self._run(
            "create", record.id, record.id, request, record.digest, max_open
        )
        if created == -2:
            raise TooManyJobsError(too_many(max_open))
        return _record(_pairs(fields)), bool(created)

    def get(self, job_id: str) -> JobRecord:
        raw = self._call("read a job", lambda: self._client.hgetall(self.key(job_id)))
        if not raw:
            raise unknown_job(job_id)
        return _record(raw)

    def claim(self, job_id: str, *, worker: str, lease_s: float) -> JobRecord | None:
        fields = self._run("claim", job_id, worker, lease_s)
        return _record(_pairs(fields)) if fields else None

    def heartbeat(self, job_id: str, progress: float | None = None) -> JobState:
        state = self._run("heartbeat", job_id, "" if progress is None else progress)
        return JobState(state.decode() if isinstance(state, bytes) else state)

    def finish(
        self,
        job_id: str,
        *,
        state: JobState,
        result: SearchResult | None = None,
        error: str | None = None,
    ) -> bool:
        if state not in FINAL_STATES:
            raise ValueError(f"{state} is not a final state")
        payload = "" if result is None else result.model_dump_json()
        return bool(
            self._run(
                "finish", job_id, state.value, payload, error or "", self._ttl, self.channel(job_id)
            )
        )

    def cancel(self, job_id: str) -> JobRecord:
        self.finish(job_id, state=JobState.CANCELLED, error="cancelled by request")
        return self.get(job_id)

    def delete(self, job_id: str) -> JobRecord:
        self._run("delete", job_id, self._ttl, self.channel(job_id))
        return self.get(job_id)

    def release(self, job_id: str) -> None:
        self._run("release", job_id)

    def open_ids(self) -> Iterator[str]:
        members = self._call("list open jobs", lambda: list(self._client.sscan_iter(self._open)))
        return (m.decode() if isinstance(m, bytes) else str(m) for m in members)

    def requeue_if_stale(self, job_id: str, *, queued_for_s: float, silent_for_s: float) -> bool:
        try:
            return bool(self._run("requeue", job_id, queued_for_s, silent_for_s, job_id))
        except UnknownIdError:  # the record expired: nothing to re-send
            return False

    def set_webhook(self, job_id: str, outcome: str) -> None:
        self._call(
            "record a webhook", lambda: self._client.hset(self.key(job_id), "webhook", outcome)
        )

    def wait(self, job_id: str, timeout_s: float) -> JobRecord:
        """Sleeps on the job's pub/sub channel (re-reading the record every second,
        so a lost announcement costs at most a second)."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        channel = self.channel(job_id).encode()
        try:
            pubsub = self._pubsub()
            pubsub.subscribe(channel)
        except redis.RedisError:
            self._drop_pubsub()
            return super().wait(job_id, timeout_s)
        announced = False
        try:
            while True:
                # The state alone until it is final (an announcement on the channel
                # is the final state itself): the full record (request and result
                # JSON) is read and parsed once, at the end.
                left = deadline - time.monotonic()
                if announced or left <= 0 or self._final_or_gone(job_id):
                    return self.get(job_id)
                try:
                    message = pubsub.get_message(timeout=min(left, 1.0))
                    announced = message is not None and message["channel"] == channel
                except redis.RedisError:
                    time.sleep(min(left, 0.2))
        finally:
            try:  # the connection stays for this thread's next wait (no reconnect)
                pubsub.unsubscribe(channel)
            except redis.RedisError:
                self._drop_pubsub()

    def _pubsub(self) -> Any:
        pubsub = getattr(self._local, "pubsub", None)
        if pubsub is None:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            self._local.pubsub = pubsub
        return pubsub

    def _drop_pubsub(self) -> None:
        pubsub, self._local.pubsub = getattr(self._local, "pubsub", None), None
        if pubsub is not None:
            pubsub.close()

    def _final_or_gone(self, job_id: str) -> bool:
        state = self._call("read a job", lambda: self._client.hget(self.key(job_id), "state"))
        if state is None:
            return True
        value = state.decode() if isinstance(state, bytes) else str(state)
        return value in {s.value for s in FINAL_STATES}

    def ping(self) -> None:
        self._call("answer a ping", self._client.ping)

    def close(self) -> None:
        self._client.close()
