"""The scripted-components hook for dry runs of the job layer.

The scripted roles themselves (``KeywordReasoner``, ``HashVerifier``,
``HashEvaluator``) live with the other model fakes in :mod:`imagescope.models.fakes`.

``scripted_components`` is a components hook: point a worker (or the API's
in-process backend) at it to exercise queues, retries and merges without any
model weights, e.g. to smoke-test a deployment::

    IMAGESCOPE_MODELS__EMBEDDER__KIND=fake
    IMAGESCOPE_JOBS__COMPONENTS_HOOK=imagescope.jobs.fakes:scripted_components

Answers depend only on their inputs (hashes), so two processes give the same
result for the same request. Environment knobs (read when the hook runs):

- ``IMAGESCOPE_FAKES__VERIFY_DELAY_S``: seconds each verifier call sleeps (a
  window in which to kill a worker mid-job);
- a question containing ``explode`` makes the verifier raise a transient
  ``ModelBackendError``, one containing ``garbage`` a ``ModelOutputError``.
"""

from __future__ import annotations

import dataclasses
import os

from imagescope.models.fakes import HashEvaluator, HashVerifier, KeywordReasoner
from imagescope.pipeline.context import Components
from imagescope.settings import Settings

__all__ = ["DELAY_ENV", "HashEvaluator", "HashVerifier", "KeywordReasoner", "scripted_components"]

DELAY_ENV = "IMAGESCOPE_FAKES__VERIFY_DELAY_S"


def scripted_components(components: Components, settings: Settings) -> Components:
    """Components hook: the scripted reasoner, verifier and evaluator over the real store."""
    delay = float(os.environ.get(DELAY_ENV, "0") or 0)
    return dataclasses.replace(
        components,
        reasoner=KeywordReasoner(),
        verifier=HashVerifier(delay_s=delay),
        evaluator=HashEvaluator(),
    )
