"""Opening images from untrusted sources: the one place images are decoded.

Every image ImageScope reads (uploads, reference images, catalog files, URLs)
goes through :func:`load_image`, which applies :class:`~imagescope.settings.ImageLimits`:

- local paths must resolve (symlinks and ``..`` followed) inside
  ``limits.allowed_roots`` (the current directory when the list is empty);
- http(s) URLs are fetched by :mod:`imagescope.ingest.fetch`: public hosts only
  (unless ``limits.allow_private_urls``), every redirect re-checked, a deadline
  and a streamed byte limit;
- the byte size is checked before decoding and the pixel count from the header
  before the pixels are decompressed; PIL's decompression-bomb guards are
  mapped onto the same error;
- only common photo formats are decoded (no EPS, which runs Ghostscript);
- EXIF orientation is applied and the result is RGB (transparency is flattened
  onto white).

Errors: :class:`ForbiddenSourceError` (path outside the roots, private URL,
unsupported scheme), :class:`ImageTooLargeError` (bytes or pixels over the
limit), :class:`ImageError` (missing, unreachable, corrupt or unsupported).
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import stat
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from PIL import Image, ImageOps, UnidentifiedImageError

from imagescope.errors import ForbiddenSourceError, ImageError, ImageTooLargeError
from imagescope.ingest.fetch import byte_limit_error, fetch_url
from imagescope.models.image_data import image_to_data_url as image_to_data_url
from imagescope.models.image_data import to_rgb
from imagescope.schemas import ImageRef
from imagescope.settings import ImageLimits

logger = logging.getLogger(__name__)

ImageSource = ImageRef | str | bytes | Path

#: Formats decoded from untrusted bytes; everything else is refused.
DECODABLE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
_ROOTS_HINT = (
    "put the image under one of the allowed image folders "
    "(IMAGESCOPE_IMAGES__ALLOWED_ROOTS; empty means the current directory) "
    "or send it as data"
)
# PIL reports decompression bombs with a process-wide warning; the lock keeps
# the temporary warning filter from leaking into other threads' header parsing.
_OPEN_LOCK = threading.Lock()


def load_image(
    source: ImageSource,
    *,
    limits: ImageLimits,
    resolve_catalog_uri: Callable[[str], str] | None = None,
) -> Image.Image:
    """Open an image from any supported source and return it as RGB.

    ``source`` is an :class:`ImageRef` (``id`` needs ``resolve_catalog_uri``,
    which maps a catalog id to its stored uri), raw ``bytes``, a ``Path``, or a
    string: an http(s) URL, a ``data:`` URL, a ``file:`` URL or a local path.
    Raises :class:`ForbiddenSourceError`, :class:`ImageTooLargeError` or
    :class:`ImageError` as described in the module docstring.
    """
    if isinstance(source, ImageRef):
        return _load_ref(source, limits=limits, resolve_catalog_uri=resolve_catalog_uri)
    if isinstance(source, bytes):
        return decode_image(source, limits=limits)
    if isinstance(source, Path):
        return decode_image(read_local_file(source, limits=limits), limits=limits)
    if isinstance(source, str):
        return _load_location(source, limits=limits)
    raise TypeError(f"cannot load an image from {type(source).__name__}")


def _load_ref(
    ref: ImageRef,
    *,
    limits: ImageLimits,
    resolve_catalog_uri: Callable[[str], str] | None,
) -> Image.Image:
    if ref.data is not None:
        return decode_image(decode_base64(ref.data, limits=limits), limits=limits)
    if ref.url is not None:
        if urlsplit(ref.url).scheme.lower() not in {"http", "https"}:
            raise ForbiddenSourceError(
                f"reference url {ref.url!r} is not an http(s) URL; give files as path"
            )
        return decode_image(fetch_url(ref.url, limits=limits), limits=limits)
    if ref.path is not None:
        return decode_image(read_local_file(ref.path, limits=limits), limits=limits)
    assert ref.id is not None  # ImageRef guarantees exactly one field
    if resolve_catalog_uri is None:
        raise ImageError(
            "a catalog image id cannot be resolved here; send the image as path, url or data"
        )
    uri = resolve_catalog_uri(ref.id)
    if not uri:
        raise ImageError(
            f"catalog image {ref.id!r} has no stored uri; re-ingest it with a path or URL"
        )
    return _load_location(uri, limits=limits)


def _load_location(location: str, *, limits: ImageLimits) -> Image.Image:
    """A string source: http(s) URL, data URL, file URL or local path."""
    text = location.strip()
    if not text:
        raise ImageError("empty image reference; give a path, an http(s) URL or image data")
    scheme = urlsplit(text).scheme.lower()
    if scheme in {"http", "https"}:
        return decode_image(fetch_url(text, limits=limits), limits=limits)
    if scheme == "data":
        return decode_image(decode_base64(text, limits=limits), limits=limits)
    if scheme == "file":
        parts = urlsplit(text)
        if parts.netloc not in {"", "localhost"}:
            raise ForbiddenSourceError(f"file URL {text!r} names a remote host; give a local path")
        return decode_image(read_local_file(unquote(parts.path), limits=limits), limits=limits)
    if len(scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise ForbiddenSourceError(
            f"unsupported URL scheme {scheme!r}; give an http(s) URL, a file path or data"
        )
    return decode_image(read_local_file(text, limits=limits), limits=limits)


# --------------------------------------------------------------------------- local files


def confine_path(path: str | Path, *, limits: ImageLimits) -> Path:
    """Resolve ``path`` (relative to the current directory) inside the allowed roots.

    Symlinks and ``..`` are resolved before the check, so neither can step out of
    a root. Raises :class:`ForbiddenSourceError` outside the roots. Whether the
    file exists is not checked (and not revealed for forbidden paths).
    """
    text = os.fspath(path)
    if "\x00" in text:
        raise ImageError("image path contains a NUL byte")
    candidate = Path(text)
    if not candidate.is_absolute():
        candidate = Path.cwd() / candidate
    roots = [Path(root).expanduser() for root in limits.allowed_roots] or [Path.cwd()]
    try:
        resolved = candidate.resolve()
        resolved_roots = [root.resolve() for root in roots]
    except (OSError, RuntimeError) as exc:
        raise ImageError(f"cannot resolve image path {text!r}: {exc}") from exc
    if not any(resolved.is_relative_to(root) for root in resolved_roots):
        logger.info("refused image path %r (resolves to %s)", text, resolved)
        raise ForbiddenSourceError(
            f"image path {text!r} is outside the allowed folders; {_ROOTS_HINT}"
        )
    return resolved


def read_local_file(path: str | Path, *, limits: ImageLimits) -> bytes:
    """The bytes of a regular file inside the allowed roots, at most ``max_bytes``."""
    resolved = confine_path(path, limits=limits)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(resolved, flags)
    except FileNotFoundError:
        raise ImageError(f"image file not found: {os.fspath(path)!r}") from None
    except OSError as exc:
        raise ImageError(f"cannot open image file {os.fspath(path)!r}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(f"{os.fspath(path)!r} is not a regular file")
        if info.st_size > limits.max_bytes:
            raise byte_limit_error(info.st_size, limits)
        data = handle.read(limits.max_bytes + 1)
    if len(data) > limits.max_bytes:
        raise byte_limit_error(len(data), limits)
    return data


# --------------------------------------------------------------------------- bytes


def decode_base64(data: str, *, limits: ImageLimits) -> bytes:
    """Bytes of base64 image data, with or without a ``data:...;base64,`` prefix."""
    text = data.strip()
    if text[:5].lower() == "data:":
        header, sep, text = text.partition(",")
        if not sep or not header.lower().endswith(";base64"):
            raise ImageError("a data URL must be base64: data:image/<type>;base64,<data>")
    text = "".join(text.split())
    if len(text) * 3 // 4 > limits.max_bytes + 2:
        raise byte_limit_error(len(text) * 3 // 4, limits)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"image data is not valid base64 ({exc}); send standard base64") from exc


def decode_image(data: bytes, *, limits: ImageLimits) -> Image.Image:
    """Decode image bytes within ``limits``: RGB, EXIF orientation applied."""
    if len(data) > limits.max_bytes:
        raise byte_limit_error(len(data), limits)
    image = _open_header(data, limits=limits)
    try:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        return to_rgb(image)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image is too large to decode safely: {exc}") from exc
    except Exception as exc:  # PIL's decoders raise many types on malformed input
        raise ImageError(f"corrupt or truncated image: {exc}") from exc


def _open_header(data: bytes, *, limits: ImageLimits) -> Image.Image:
    """Identify the format and read the size; no pixels are decompressed yet."""
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=_decodable_formats())
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLargeError(f"image dimensions are too large: {exc}") from exc
        except UnidentifiedImageError:
            raise ImageError(
                f"not an image in a supported format ({', '.join(_decodable_formats())})"
            ) from None
        except Exception as exc:  # malformed headers surface as assorted errors
            raise ImageError(f"cannot read the image header: {exc}") from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"image is {width}x{height} = {width * height} pixels, over the limit of "
            f"{limits.max_pixels}; downscale it or raise IMAGESCOPE_IMAGES__MAX_PIXELS"
        )
    return image


def _decodable_formats() -> tuple[str, ...]:
    Image.init()
    return tuple(name for name in DECODABLE_FORMATS if name in Image.OPEN)


# --------------------------------------------------------------------------- helpers


def thumbnail(image: Image.Image, max_side: int) -> Image.Image:
    """The image scaled so its longer side is at most ``max_side`` (never upscaled).

    Returns the input itself when it is already small enough.
    """
    if max_side < 1:
        raise ValueError("max_side must be at least 1")
    width, height = image.size
    longest = max(width, height)
    if longest <= max_side:
        return image
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
