"""What a run's numbers depend on, so that a run folder never mixes two runs.

A run's *fingerprint* is a flat mapping of named parts, each a short string:
the benchmark and split, the checksums of the dataset files and of the loaded
queries, a digest of the gallery images' bytes, the stage set, every model id
and the model and pipeline settings that change rankings, and the prompt
version. ``fingerprint.json`` in the run folder holds it; resuming a folder
whose fingerprint differs is refused, naming the parts that changed
(:func:`check_fingerprint`).

Image bytes are hashed once per file and remembered in a cache keyed by path,
size and modification time (``image_hashes.json`` under the data folder), so a
50k gallery is read once, not on every run. The gallery digest also names the
gallery's index, so regenerated images are embedded again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from imagescope.errors import InputError
from imagescope.eval.benchmark import Benchmark, GalleryImage
from imagescope.eval.submission import write_json_atomic
from imagescope.models import prompts
from imagescope.settings import Settings

FINGERPRINT_FILE = "fingerprint.json"
#: Settings that never change a ranking (endpoints, timeouts, devices, batching).
_NEUTRAL = frozenset(
    {"api_key", "base_url", "timeout_s", "max_retries", "max_concurrency", "device",
     "batch_size", "gpu_memory_utilization", "config_dir"}
)  # fmt: skip


class FingerprintMismatch(InputError):
    """The run folder holds a run of something else."""


def _sha(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ImageHashes:
    """Content hashes of image files, cached by (path, size, mtime)."""

    def __init__(self, cache_path: Path | None) -> None:
        self.path = cache_path
        self._cache: dict[str, list[Any]] = {}
        if cache_path is not None and cache_path.is_file():
            try:
                self._cache = json.loads(cache_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self._cache = {}
        self._dirty = False

    def of(self, path: Path) -> str | None:
        """The file's sha256, or None when it cannot be read."""
        try:
            stat = path.stat()
        except OSError:
            return None
        key = str(path.resolve())
        cached = self._cache.get(key)
        if cached and cached[0] == stat.st_size and cached[1] == stat.st_mtime_ns:
            return str(cached[2])
        try:
            digest = file_sha256(path)
        except OSError:
            return None
        self._cache[key] = [stat.st_size, stat.st_mtime_ns, digest]
        self._dirty = True
        return digest

    def save(self) -> None:
        if self.path is not None and self._dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, self._cache)
            self._dirty = False


def gallery_hashes(gallery: Iterable[GalleryImage], hashes: ImageHashes) -> dict[str, str | None]:
    """Gallery id -> content hash (None: the file cannot be read)."""
    out = {image.id: hashes.of(image.path) for image in gallery}
    hashes.save()
    return out


def gallery_digest(content: Mapping[str, str | None]) -> str:
    return _sha(json.dumps(sorted(content.items(), key=lambda kv: kv[0])))


def queries_digest(benchmark: Benchmark) -> str:
    """The loaded queries and ground truth (ids, query text, targets, extras)."""
    rows = [
        [q.id, q.query.model_dump(mode="json"), list(q.targets),
         [r.model_dump(mode="json") for r in q.rounds], dict(q.extras)]
        for q in benchmark.queries
    ]  # fmt: skip
    return _sha(json.dumps(rows, sort_keys=True, default=str))


def _without_neutral(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_neutral(v) for k, v in value.items() if k not in _NEUTRAL}
    if isinstance(value, list):
        return [_without_neutral(v) for v in value]
    return value


def _prompt_version(settings: Settings) -> str:
    folders = {settings.prompts.dir} | {
        role.prompts_dir
        for role in (
            settings.models.reasoner,
            settings.models.evaluator,
            settings.models.captioner,
        )  # fmt: skip
    }
    files = sorted(
        p for folder in folders if folder is not None and folder.is_dir()
        for p in folder.iterdir() if p.is_file()
    )  # fmt: skip
    if not files:
        return prompts.PROMPT_VERSION
    return "files-" + _sha("".join(f"{p.name}:{file_sha256(p)}" for p in files))[:16]


def run_fingerprint(
    benchmark: Benchmark,
    settings: Settings,
    *,
    model_ids: Mapping[str, str],
    stages: Sequence[int],
    gallery: str,
) -> dict[str, str]:
    """The fingerprint of a run (see the module docstring)."""
    parts = {
        "benchmark": benchmark.name,
        "split": benchmark.split,
        "queries": queries_digest(benchmark)[:16],
        "gallery images": gallery[:16],
        "stages": ",".join(str(s) for s in sorted(set(stages))),
        "prompts": _prompt_version(settings),
        "pipeline settings": json.dumps(settings.pipeline.model_dump(mode="json"), sort_keys=True),
        "model settings": _sha(
            json.dumps(
                _without_neutral(settings.models.model_dump(mode="json")),
                sort_keys=True,
                default=str,
            )
        )[:16],  # fmt: skip
    }
    for path in benchmark.files:
        parts[f"file {path.name}"] = file_sha256(path)[:16]
    for role, model_id in sorted(model_ids.items()):
        parts[f"model {role}"] = model_id
    return parts


def _changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    changed = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name, "(none)"), new.get(name, "(none)")
        if before != after:
            changed.append(f"{name}: {before} -> {after}")
    return changed


def check_fingerprint(out: Path, fingerprint: Mapping[str, str], *, resume: bool) -> None:
    """Refuse to resume ``out`` when it holds a run with another fingerprint; record
    ``fingerprint`` there otherwise."""
    path = out / FINGERPRINT_FILE
    if resume and path.is_file():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FingerprintMismatch(
                f"{path} cannot be read ({exc}); pass --fresh to start over"
            ) from exc
        changed = _changes(stored, fingerprint)
        if changed:
            raise FingerprintMismatch(
                f"{out} holds a run made with other inputs, so its results cannot be "
                f"continued: {'; '.join(changed[:6])}. Pass --fresh to start over there, "
                "or --out for a new folder"
            )
        return
    if resume and any((out / name).exists() for name in ("rankings.jsonl", "metrics.json")):
        raise FingerprintMismatch(
            f"{out} holds results without a fingerprint (an older run); pass --fresh to "
            "start over there, or --out for a new folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, dict(fingerprint))
