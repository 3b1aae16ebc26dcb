"""GPU check: does this machine run ImageScope's GPU parts, and how fast?

Run by ``scripts/gpu-check.sh`` from a fresh clone after ``scripts/bootstrap.sh``;
needs no network (no model download: the CLIP tower has random weights, the
same compute as the real one). Three parts:

1. ``torch``: torch sees a CUDA device and runs a matrix product on it.
2. ``open_clip``: ViT-B-32 image and text embeddings per second at batch 64
   and 256 (fp16 autocast, inference mode, inputs already on the device).
3. ``store``: the embedded store (faiss HNSW + SQLite) built from N x 512
   unit vectors (default 1,000,000 with CUDA, 20,000 without), then k-NN
   query p50/p99 (k=10) and recall@10 against exact search, and peak RSS.

Without CUDA the CUDA parts print a ``SKIP`` line and a tiny CPU smoke run of
the same code (batch 2, not a figure); the store part runs on the CPU anyway.
``--store-n`` (env ``IMAGESCOPE_GPU_CHECK_STORE_N``) sets N; ``--cpu`` ignores
any GPU. With ``$OUT`` set, the results go to ``$OUT/gpu-check.json`` (and to
``--json PATH`` if given). Exit status 1 when a part that ran failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

DIM = 512
BATCHES = (64, 256)
CAPTIONS = [
    "a red car parked on a street at night",
    "two dogs playing with a ball on green grass",
    "a woman in a long blue dress with short sleeves",
    "a plate of pasta next to a glass of wine",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="ignore any GPU")
    parser.add_argument(
        "--store-n",
        type=int,
        default=int(os.environ.get("IMAGESCOPE_GPU_CHECK_STORE_N", "0")) or None,
        help="store size (default 1,000,000 with CUDA, 20,000 without)",
    )
    parser.add_argument("--queries", type=int, default=200, help="timed k-NN queries")
    parser.add_argument("--iters", type=int, default=10, help="timed batches per CLIP size")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser.parse_args(argv)


def say(line: str) -> None:
    print(line, flush=True)


# --------------------------------------------------------------------------- torch


def check_torch(use_cuda: bool) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "torch": torch.__version__,
        "built_with_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }
    if not use_cuda:
        reason = "--cpu given" if torch.cuda.is_available() else "torch sees no CUDA device"
        say(f"SKIP torch-cuda: {reason} (torch {torch.__version__}, CUDA {torch.version.cuda})")
        return {**info, "status": "skipped", "reason": reason}
    props = torch.cuda.get_device_properties(0)
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(10):
        a = (a @ a).clamp_(-1, 1)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    tflops = 10 * 2 * 4096**3 / seconds / 1e12
    info.update(
        status="ok",
        device=props.name,
        capability=f"{props.major}.{props.minor}",
        memory_gib=round(props.total_memory / 2**30, 1),
        device_count=torch.cuda.device_count(),
        fp16_matmul_tflops=round(tflops, 1),
    )
    say(
        f"OK   torch-cuda: {props.name}, {info['memory_gib']} GiB, fp16 matmul {tflops:.0f} TFLOP/s"
    )
    return info


# --------------------------------------------------------------------------- open_clip


def _rate(run: Callable[[], Any], items: int, iters: int, sync: Callable[[], None]) -> float:
    for _ in range(2):
        run()
    sync()
    started = time.perf_counter()
    for _ in range(iters):
        run()
    sync()
    return items * iters / (time.perf_counter() - started)


def clip_rates(device: str, batches: tuple[int, ...], iters: int) -> dict[str, Any]:
    """Images/s and texts/s of a random-weight ViT-B-32 at each batch size."""
    import open_clip
    import torch

    model = open_clip.create_model("ViT-B-32", pretrained=None, device=device).eval()
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    out: dict[str, Any] = {"model": "ViT-B-32", "weights": "random", "device": device}
    out["precision"] = "fp16 autocast" if cuda else "fp32"
    for batch in batches:
        images = torch.randn(batch, 3, 224, 224, device=device)
        texts = tokenizer([CAPTIONS[i % len(CAPTIONS)] for i in range(batch)]).to(device)
        with torch.inference_mode(), torch.autocast(device, enabled=cuda, dtype=torch.float16):
            image_rate = _rate(partial(model.encode_image, images), batch, iters, sync)
            text_rate = _rate(partial(model.encode_text, texts), batch, iters, sync)
        out[f"batch_{batch}"] = {
            "images_per_s": round(image_rate, 1),
            "texts_per_s": round(text_rate, 1),
        }
    return out


def check_clip(use_cuda: bool, iters: int) -> dict[str, Any]:
    if use_cuda:
        result = clip_rates("cuda", BATCHES, iters)
        for batch in BATCHES:
            rates = result[f"batch_{batch}"]
            say(
                f"OK   open_clip ViT-B-32 batch {batch}: {rates['images_per_s']:.0f} images/s, "
                f"{rates['texts_per_s']:.0f} texts/s"
            )
        return {**result, "status": "ok"}
    say("SKIP open_clip-cuda: no CUDA device; running a CPU smoke test (batch 2, not a figure)")
    smoke = clip_rates("cpu", (2,), 1)
    say("OK   open_clip cpu smoke: ViT-B-32 encodes images and texts")
    return {"status": "skipped", "reason": "no CUDA device", "cpu_smoke": smoke}


# --------------------------------------------------------------------------- embedded store


def lowrank_unit(n: int, rng: np.random.Generator, basis: np.ndarray) -> np.ndarray:
    """Unit vectors near a low-dimensional subspace (as CLIP embeddings are)."""
    vectors = rng.standard_normal((n, basis.shape[0]), dtype=np.float32) @ basis
    vectors += 0.075 * rng.standard_normal((n, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def check_store(n: int, queries: int) -> dict[str, Any]:
    from imagescope.settings import EmbeddedStoreSettings
    from imagescope.store.base import CatalogRecord
    from imagescope.store.embedded import EmbeddedStore

    rng = np.random.default_rng(0)
    basis = rng.standard_normal((32, DIM)).astype(np.float32)
    data = np.concatenate(
        [lowrank_unit(min(100_000, n - i), rng, basis) for i in range(0, n, 100_000)]
    )
    probes = lowrank_unit(queries, rng, basis)
    truth = np.argpartition(-(probes @ data.T), 10, axis=1)[:, :10]  # exact top 10, unordered
    with tempfile.TemporaryDirectory(prefix="gpu-check-store-") as folder:
        settings = EmbeddedStoreSettings(path=Path(folder) / "catalog")
        with EmbeddedStore(settings) as store:
            started = time.perf_counter()
            store.ensure(DIM)
            store.upsert(CatalogRecord(id=f"{i:08d}", image_vector=v) for i, v in enumerate(data))
            store.flush()
            build_s = time.perf_counter() - started
            latencies, hits = [], 0
            for probe, expected in zip(probes, truth, strict=True):
                started = time.perf_counter()
                [found] = store.knn("image", probe[None, :], k=10)
                latencies.append(time.perf_counter() - started)
                hits += len({int(h.id) for h in found} & set(expected.tolist()))
    p50, p99 = np.percentile(np.array(latencies) * 1000, [50, 99])
    result = {
        "status": "ok",
        "n": n,
        "dim": DIM,
        "build_s": round(build_s, 1),
        "vectors_per_s": round(n / build_s, 1),
        "query_p50_ms": round(float(p50), 3),
        "query_p99_ms": round(float(p99), 3),
        "recall_at_10": round(hits / (10 * queries), 4),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "settings": settings.model_dump(mode="json", exclude={"path"}),
    }
    say(
        f"OK   embedded store {n:,} x {DIM}: build {build_s:.1f} s, query p50 {p50:.2f} ms "
        f"p99 {p99:.2f} ms, recall@10 {result['recall_at_10']:.3f}"
    )
    return result


# --------------------------------------------------------------------------- main


def run_part(name: str, part: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return part()
    except Exception as exc:  # report every part, whatever fails
        traceback.print_exc()
        say(f"FAIL {name}: {type(exc).__name__}: {exc}")
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    use_cuda = torch.cuda.is_available() and not args.cpu
    n = args.store_n or (1_000_000 if use_cuda else 20_000)
    results: dict[str, Any] = {
        "host": platform.node(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "mode": "cuda" if use_cuda else "cpu",
    }
    results["torch"] = run_part("torch", lambda: check_torch(use_cuda))
    results["open_clip"] = run_part("open_clip", lambda: check_clip(use_cuda, args.iters))
    results["store"] = run_part("store", lambda: check_store(n, args.queries))
    failed = [k for k in ("torch", "open_clip", "store") if results[k]["status"] == "failed"]
    targets = [args.json] if args.json else []
    if os.environ.get("OUT"):
        targets.append(Path(os.environ["OUT"]) / "gpu-check.json")
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(results, indent=2) + "\n")
        say(f"wrote {target}")
    say(
        "gpu-check: "
        + (f"FAILED ({', '.join(failed)})" if failed else f"passed ({results['mode']})")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
