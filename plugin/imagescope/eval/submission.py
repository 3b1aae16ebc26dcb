"""Evaluation-server submission files (CIRR and CIRCO test splits).

CIRR: two files, one per metric::

    {"version": "rc2", "metric": "recall", "<pairid>": [top-50 image names], ...}
    {"version": "rc2", "metric": "recall_subset", "<pairid>": [top-3 names], ...}

The recall list is the ranking with the reference removed; the subset list is
the ranking restricted to the img_set members other than the reference, in the
model's order, completed with the members the ranking lacks (in img_set order)
so that it always has three names.

CIRCO: ``{"<query id>": [top-50 image ids as ints], ...}`` for every query.

Files are written atomically (a temporary file renamed into place), so an
interrupted write never leaves a truncated submission behind.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from imagescope.eval.metrics import MetricError, check_unique

logger = logging.getLogger(__name__)

CIRR_VERSION = "rc2"
CIRR_TOP_N = 50
CIRR_SUBSET_TOP_N = 3
CIRCO_TOP_N = 50


def write_json_atomic(path: Path, payload: Any) -> Path:
    """Write ``payload`` as JSON to ``path`` via a temporary file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=1)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def cirr_submissions(
    rankings: Mapping[str, Sequence[str]],
    references: Mapping[str, str],
    *,
    members: Mapping[str, Sequence[str]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build the CIRR (recall, recall_subset) payloads, keyed by pair id.

    Every pair id in ``references`` needs a ranking; ``members`` holds each
    pair's six img_set members (reference included).
    """
    recall: dict[str, Any] = {"version": CIRR_VERSION, "metric": "recall"}
    subset: dict[str, Any] = {"version": CIRR_VERSION, "metric": "recall_subset"}
    short = 0
    for pair_id, reference in references.items():
        ranking = _ranking_for(rankings, pair_id)
        top = [i for i in ranking if i != reference][:CIRR_TOP_N]
        short += len(top) < CIRR_TOP_N
        recall[pair_id] = top
        group = [m for m in dict.fromkeys(members[pair_id]) if m != reference]
        in_group = set(group)
        ordered = [i for i in ranking if i in in_group]
        ordered += [m for m in group if m not in set(ordered)]
        subset[pair_id] = ordered[:CIRR_SUBSET_TOP_N]
    if short:
        logger.warning("CIRR submission: %d ranking(s) have fewer than %d names", short, CIRR_TOP_N)
    return recall, subset


def write_cirr_submission(
    rankings: Mapping[str, Sequence[str]],
    references: Mapping[str, str],
    *,
    members: Mapping[str, Sequence[str]],
    out_dir: Path,
    split: str,
) -> list[Path]:
    """Write ``cirr_<split>_recall.json`` and ``cirr_<split>_recall_subset.json``."""
    recall, subset = cirr_submissions(rankings, references, members=members)
    return [
        write_json_atomic(out_dir / f"cirr_{split}_recall.json", recall),
        write_json_atomic(out_dir / f"cirr_{split}_recall_subset.json", subset),
    ]


def circo_submission(
    rankings: Mapping[str, Sequence[str]], query_ids: Sequence[str]
) -> dict[str, list[int]]:
    """Build the CIRCO payload: every query id -> its top-50 image ids as ints."""
    payload: dict[str, list[int]] = {}
    for query_id in query_ids:
        ranking = _ranking_for(rankings, query_id)
        try:
            payload[query_id] = [int(i) for i in ranking[:CIRCO_TOP_N]]
        except ValueError as exc:
            raise MetricError(
                f"CIRCO query {query_id!r}: gallery ids must be COCO image numbers ({exc})"
            ) from None
        if len(payload[query_id]) < CIRCO_TOP_N:
            logger.warning("CIRCO query %s has only %d ids", query_id, len(payload[query_id]))
    return payload


def write_circo_submission(
    rankings: Mapping[str, Sequence[str]],
    query_ids: Sequence[str],
    *,
    out_dir: Path,
    split: str,
) -> list[Path]:
    """Write ``circo_<split>.json``."""
    payload = circo_submission(rankings, query_ids)
    return [write_json_atomic(out_dir / f"circo_{split}.json", payload)]


def _ranking_for(rankings: Mapping[str, Sequence[str]], query_id: str) -> Sequence[str]:
    if query_id not in rankings:
        raise MetricError(f"no ranking for query {query_id!r}; every query needs one")
    ranking = rankings[query_id]
    check_unique(ranking, query=query_id)
    return ranking
