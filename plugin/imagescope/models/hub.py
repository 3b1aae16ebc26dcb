"""Whether model weights can come from the Hugging Face Hub, decided without torch.

``hub_offline()`` is true when downloads are off (``HF_HUB_OFFLINE=1``) or the
Hub does not accept a connection within ``HUB_PROBE_TIMEOUT_S`` (a machine
without internet), so a missing model fails at once instead of retrying for a
minute. ``nothing_cached()`` lets the model factory fail before importing torch
on a machine that has no cached weights at all.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

from huggingface_hub import constants as hf_constants

log = logging.getLogger(__name__)

#: Seconds to wait for the Hub to accept a connection before treating it as offline.
HUB_PROBE_TIMEOUT_S = 2.0
#: Where open_clip keeps weights downloaded from URLs (not from the Hub).
OPEN_CLIP_CACHE = Path("~/.cache/clip")


@functools.lru_cache(maxsize=4)
def hub_reachable(endpoint: str | None = None, timeout_s: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the Hugging Face Hub accepts a TCP connection (checked once per process)."""
    url = urlsplit(endpoint or hf_constants.ENDPOINT)
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        log.info("Hugging Face Hub %s:%d unreachable (%s): working offline", host, port, exc)
        return False
    return True


def hub_offline() -> bool:
    """True when Hub downloads cannot happen: ``HF_HUB_OFFLINE=1``, or the Hub does not
    answer within ``HUB_PROBE_TIMEOUT_S`` (then only cached files are used).

    Reads the environment now, as well as huggingface_hub's import-time flag.
    """
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    if bool(hf_constants.HF_HUB_OFFLINE) or value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    return not hub_reachable()


def _has_entries(folder: Path) -> bool:
    try:
        return folder.is_dir() and any(folder.iterdir())
    except OSError:
        return False


def nothing_cached() -> bool:
    """True when neither the Hugging Face cache nor open_clip's holds any model."""
    hub_cache = Path(os.environ.get("HF_HUB_CACHE") or hf_constants.HF_HUB_CACHE)
    models = hub_cache.glob("models--*") if hub_cache.is_dir() else iter(())
    return next(models, None) is None and not _has_entries(OPEN_CLIP_CACHE.expanduser())
