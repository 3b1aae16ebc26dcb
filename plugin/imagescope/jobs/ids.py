"""Job ids: the client's id, the store key ``<owner>~<id>`` it is kept under, digests.

A job belongs to an owner (the API key that submitted it, as a tenant id; one
``PUBLIC_OWNER`` when the server has no keys). The owner's id is what clients
see; the store key is what records, Celery messages and worker logs use.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid

from imagescope.errors import InputError, UnknownIdError
from imagescope.schemas import RerankRequest

_JOB_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
#: Jobs of requests without an API key (the server has none configured).
PUBLIC_OWNER = "public"
#: Joins owner and job id in the store key; never part of a job id.
_SEP = "~"


def new_job_id(job_id: str | None = None) -> str:
    """A fresh id, or the caller's id after checking its form."""
    if job_id is None:
        return uuid.uuid4().hex
    if not _JOB_ID.match(job_id):
        raise InputError(
            f"job id {job_id!r} is not valid: use 1-64 letters, digits, '_', '-', '.', ':'"
        )
    return job_id


def too_many(max_open: int) -> str:
    return (
        f"too many unfinished jobs: the limit is {max_open} per API key "
        "(limits.max_open_jobs); wait for some to finish or cancel them"
    )


def store_key(owner: str, job_id: str) -> str:
    """The id a job is stored and executed under: ``<owner>~<id>``, or the plain id
    for ``PUBLIC_OWNER`` (a server without API keys)."""
    return job_id if owner == PUBLIC_OWNER else f"{owner}{_SEP}{job_id}"


def owner_of(key: str) -> str:
    return key.split(_SEP, 1)[0] if _SEP in key else PUBLIC_OWNER


def public_id(key: str) -> str:
    """The id the owner knows the job by."""
    return key.split(_SEP, 1)[1] if _SEP in key else key


def resolve_key(job_id: str, *, owner: str, admin: bool = False) -> str:
    """The store key of ``job_id`` as ``owner`` names it.

    An admin may also name any job by its full key ``<owner>~<id>``. Ids that no
    job can have raise ``UnknownIdError`` (404), like ids of other owners' jobs.
    """
    if admin and _SEP in job_id:
        job_owner, _, own_id = job_id.partition(_SEP)
        if job_owner and _JOB_ID.match(own_id):
            return job_id
    if not _JOB_ID.match(job_id):
        raise unknown_job(job_id)
    return store_key(owner, job_id)


def request_digest(request: RerankRequest) -> str:
    return hashlib.sha256(request.model_dump_json().encode()).hexdigest()


def input_digest(client_input: object) -> str:
    """A digest of what the client sent (JSON-able), keys sorted: equal input, equal digest."""
    text = json.dumps(client_input, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def unknown_job(job_id: str) -> UnknownIdError:
    return UnknownIdError("job", job_id)
