"""The verifier answer cache in Redis, shared by every worker and API process.

Keys are ``<prefix>answer:<cache_key(image id, question, model id)>`` holding
the ``Answer`` as JSON, expiring after ``ttl_s`` (0 keeps them). The cache is
an optimisation: when Redis cannot be reached a lookup misses and a write is
dropped (both logged); a job never fails because of its cache.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import redis
from pydantic import ValidationError

from imagescope.pipeline.context import AnswerCache
from imagescope.schemas import Answer

log = logging.getLogger(__name__)


class RedisAnswerCache(AnswerCache):
    def __init__(self, client: redis.Redis, *, ttl_s: int, prefix: str = "imagescope:") -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._prefix = f"{prefix}answer:"

    def get_many(self, keys: Iterable[str]) -> dict[str, Answer]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        try:
            values = self._client.mget([self._prefix + k for k in wanted])
        except redis.RedisError as exc:
            log.warning("answer cache unavailable (lookup skipped): %s", exc)
            return {}
        found = {}
        for key, value in zip(wanted, values, strict=True):
            if value is None:
                continue
            try:
                found[key] = Answer.model_validate_json(value)
            except ValidationError:
                log.warning("answer cache entry %s is unreadable; ignored", key)
        return found

    def put_many(self, answers: Mapping[str, Answer]) -> None:
        if not answers:
            return
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for key, answer in answers.items():
                    pipe.set(self._prefix + key, answer.model_dump_json(), ex=self._ttl_s or None)
                pipe.execute()
        except redis.RedisError as exc:
            log.warning("answer cache unavailable (%d answers not stored): %s", len(answers), exc)
