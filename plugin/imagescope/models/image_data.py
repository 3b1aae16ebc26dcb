"""Images as models receive them: RGB pixels, or a ``data:`` URL for chat endpoints.

Low-level helpers shared by the model clients and the ingest/API layers above
them; nothing here reads files or the network.
"""

from __future__ import annotations

import base64
import io

from PIL import Image

#: Formats a ``data:`` URL may carry, with their MIME types.
DATA_URL_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with any transparency flattened onto white."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    has_alpha = image.mode in {"RGBA", "LA", "PA", "RGBa", "La"} or "transparency" in image.info
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    flattened = Image.new("RGB", rgba.size, (255, 255, 255))
    flattened.paste(rgba, mask=rgba.getchannel("A"))
    return flattened


def image_to_data_url(image: Image.Image, fmt: str = "JPEG", *, quality: int = 90) -> str:
    """Encode ``image`` as a ``data:`` URL (JPEG, PNG or WEBP), for chat models and the API."""
    name = fmt.upper().replace("JPG", "JPEG")
    if name not in DATA_URL_MIME:
        raise ValueError(f"unsupported data URL format {fmt!r}; use one of {sorted(DATA_URL_MIME)}")
    if name == "JPEG" and image.mode not in {"RGB", "L"}:
        image = to_rgb(image)
    buffer = io.BytesIO()
    image.save(buffer, format=name, quality=quality)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:{DATA_URL_MIME[name]};base64,{encoded}"
