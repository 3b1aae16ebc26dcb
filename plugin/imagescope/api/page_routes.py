"""What the search page needs besides searching: its options, and URL previews.

``GET /v1/page-options``
    The upload limits the page checks in the browser before sending a file (the
    largest file the server accepts: the image limit, and the request-body limit
    once the file is base64 inside a JSON body; the image types it decodes), and
    the pipeline's defaults the page shows (candidates verified, evaluated, listed).

``GET /v1/reference/preview?url=&size=``
    A reference image given by URL, fetched through the server's guarded fetcher
    (``imagescope.ingest.fetch``: public hosts only unless allowed, bounded size
    and time) and returned as a JPEG thumbnail. A URL the search would refuse is
    refused here with the same reason, before the user searches with it.
"""

from __future__ import annotations

import io
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from imagescope.api.deps import EngineDep, SettingsDep, require_api_key
from imagescope.api.schemas import ERROR_RESPONSES
from imagescope.errors import InputError
from imagescope.ingest.images import DECODABLE_FORMATS, thumbnail
from imagescope.schemas import ImageRef
from imagescope.settings import PipelineSettings, Settings

#: MIME type of each decodable format, as browsers name a file's type.
_MIME = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "AVIF": "image/avif",
}
#: Room left in a request body for the JSON around a base64 upload.
_JSON_OVERHEAD = 16 * 1024


class PageOptions(BaseModel):
    max_upload_bytes: int = Field(description="Largest image file an upload may be.")
    image_types: list[str] = Field(description="MIME types of the formats the server decodes.")
    top_k: int = Field(description="Candidates stage 2 verifies unless a request says otherwise.")
    alpha: int = Field(description="Candidates stage 3 evaluates unless a request says otherwise.")
    limit: int = Field(description="Stage-1 list length unless a request says otherwise.")


def page_options(settings: Settings, pipeline: PipelineSettings) -> PageOptions:
    """Upload limit (the image limit, or what fits in a request body as base64) and defaults."""
    fits_in_body = max(0, (settings.api.max_request_bytes - _JSON_OVERHEAD) * 3 // 4)
    types = [_MIME[name] for name in DECODABLE_FORMATS if name in _MIME]
    return PageOptions(
        max_upload_bytes=min(settings.images.max_bytes, fits_in_body),
        image_types=types,
        top_k=pipeline.top_k,
        alpha=pipeline.alpha,
        limit=pipeline.limit,
    )


router = APIRouter(
    prefix="/v1",
    tags=["page"],
    dependencies=[Depends(require_api_key)],
    responses=ERROR_RESPONSES,
)


@router.get("/page-options", response_model=PageOptions)
def get_page_options(engine: EngineDep, settings: SettingsDep) -> PageOptions:
    """Upload limits for the browser's own check, and the pipeline's defaults."""
    return page_options(settings, engine.pipeline)


@router.get(
    "/reference/preview",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "A JPEG thumbnail."}},
)
def get_preview(
    engine: EngineDep,
    settings: SettingsDep,
    url: Annotated[str, Query(min_length=1, max_length=4096, description="http(s) URL.")],
    size: Annotated[int, Query(ge=16, description="Longest side in pixels.")] = 160,
) -> Response:
    """The image at ``url`` through the guarded fetcher, as a thumbnail."""
    if size > settings.api.max_thumbnail_side:
        raise InputError(
            f"preview size must be at most {settings.api.max_thumbnail_side}; got {size}"
        )
    image = engine.load_image(ImageRef(url=url))
    buffer = io.BytesIO()
    thumbnail(image, size).save(buffer, format="JPEG", quality=85)
    return Response(
        buffer.getvalue(), media_type="image/jpeg", headers={"Cache-Control": "no-store"}
    )
