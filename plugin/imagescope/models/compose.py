"""Images as a chat model receives them: resized per profile, or composed side by side.

Stage 3 shows the evaluator the reference and the candidate. ``side_by_side``
(the paper's way) puts them in one image, reference LEFT and candidate RIGHT,
for models that take one image per prompt; ``separate`` sends them as two
images, for models whose profile allows several.
"""

from __future__ import annotations

from typing import Literal

from PIL import Image as PILImage
from PIL.Image import Image

from imagescope.models.profiles import ModelProfile

Compose = Literal["side_by_side", "separate"]
WHITE = (255, 255, 255)
GREY = (128, 128, 128)


def _to_height(image: Image, height: int) -> Image:
    width = max(1, round(image.width * height / image.height))
    return image.convert("RGB").resize((width, height), PILImage.Resampling.BICUBIC)


def compose_side_by_side(
    reference: Image | None, candidate: Image, *, max_height: int = 448, gap: int = 16
) -> Image:
    """Reference on the left, candidate on the right, both scaled to one height.

    The height is the taller image's, capped at ``max_height``. Without a
    reference the left panel is blank (white) and as large as the candidate's.
    A grey ``gap``-pixel bar separates the panels.
    """
    tallest = max(candidate.height, reference.height if reference is not None else 0)
    height = min(max_height, tallest)
    right = _to_height(candidate, height)
    left = (
        PILImage.new("RGB", right.size, WHITE)
        if reference is None
        else _to_height(reference, height)
    )
    canvas = PILImage.new("RGB", (left.width + gap + right.width, height), GREY)
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width + gap, 0))
    return canvas


def letterbox(image: Image, size: tuple[int, int], *, fill: tuple[int, int, int] = WHITE) -> Image:
    """``image`` scaled to fit ``size`` (aspect kept), centred on a ``fill`` canvas."""
    width, height = size
    scale = min(width / image.width, height / image.height)
    fitted = image.convert("RGB").resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
        PILImage.Resampling.BICUBIC,
    )
    canvas = PILImage.new("RGB", size, fill)
    canvas.paste(fitted, ((width - fitted.width) // 2, (height - fitted.height) // 2))
    return canvas


def compose_panels(
    reference: Image | None, candidate: Image, *, panel: tuple[int, int], gap: int = 16
) -> Image:
    """Reference (or a blank panel) left, candidate right, each letterboxed to ``panel``."""
    width, height = panel
    left = PILImage.new("RGB", panel, WHITE) if reference is None else letterbox(reference, panel)
    canvas = PILImage.new("RGB", (2 * width + gap, height), GREY)
    canvas.paste(left, (0, 0))
    canvas.paste(letterbox(candidate, panel), (width + gap, 0))
    return canvas


def fit_image(image: Image, profile: ModelProfile) -> Image:
    """A single image at the profile's ``image_size`` (stretched, as the research code does)."""
    if profile.image_size is None:
        return image
    return image.convert("RGB").resize(profile.image_size, PILImage.Resampling.BICUBIC)


def evaluation_images(
    reference: Image | None, candidate: Image, *, profile: ModelProfile, compose: Compose
) -> tuple[Image, ...]:
    """What the evaluator is shown for one candidate."""
    if compose == "separate":
        images = (candidate,) if reference is None else (reference, candidate)
        if profile.panel_size is None:
            return images
        return tuple(letterbox(image, profile.panel_size) for image in images)
    if profile.panel_size is None:
        return (compose_side_by_side(reference, candidate),)
    return (compose_panels(reference, candidate, panel=profile.panel_size),)
