"""Loading untrusted images: confinement, private URLs, limits, decoding."""

from __future__ import annotations

import base64
import io
import ipaddress
import os
import socket
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imagescope.errors import ForbiddenSourceError, ImageError, ImageTooLargeError
from imagescope.ingest import fetch
from imagescope.ingest.images import image_to_data_url, load_image, thumbnail
from imagescope.schemas import ImageRef
from imagescope.settings import ImageLimits

pytestmark = pytest.mark.unit


def png_bytes(size: tuple[int, int] = (8, 6), color: tuple[int, ...] = (200, 30, 40)) -> bytes:
    mode = "RGBA" if len(color) == 4 else "RGB"
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but carries no real pixels."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    folder.mkdir()
    (folder / "ok.png").write_bytes(png_bytes())
    (tmp_path / "outside.png").write_bytes(png_bytes())
    return folder


@pytest.fixture
def limits(root: Path) -> ImageLimits:
    return ImageLimits(allowed_roots=[root])


# --------------------------------------------------------------------------- paths


def test_loads_a_file_inside_the_root_as_rgb(root: Path, limits: ImageLimits) -> None:
    image = load_image(root / "ok.png", limits=limits)
    assert image.mode == "RGB"
    assert image.size == (8, 6)
    assert image.getpixel((0, 0)) == (200, 30, 40)


def test_dotdot_cannot_leave_the_root(root: Path, limits: ImageLimits) -> None:
    with pytest.raises(ForbiddenSourceError, match="ALLOWED_ROOTS"):
        load_image(str(root / ".." / "outside.png"), limits=limits)


def test_symlink_pointing_out_of_the_root_is_refused(root: Path, limits: ImageLimits) -> None:
    (root / "link.png").symlink_to(root.parent / "outside.png")
    with pytest.raises(ForbiddenSourceError):
        load_image(root / "link.png", limits=limits)


def test_symlinked_root_and_inner_symlink_are_allowed(tmp_path: Path, root: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(root, target_is_directory=True)
    (root / "inner.png").symlink_to(root / "ok.png")
    image = load_image(alias / "inner.png", limits=ImageLimits(allowed_roots=[alias]))
    assert image.size == (8, 6)


def test_empty_roots_mean_the_current_directory(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(root)
    assert load_image("ok.png", limits=ImageLimits()).size == (8, 6)
    with pytest.raises(ForbiddenSourceError):
        load_image(str(root.parent / "outside.png"), limits=ImageLimits())


def test_forbidden_paths_do_not_reveal_whether_files_exist(root: Path, limits: ImageLimits) -> None:
    with pytest.raises(ForbiddenSourceError):
        load_image("/definitely/not/here.png", limits=limits)
    with pytest.raises(ImageError, match="not found") as missing:
        load_image(root / "missing.png", limits=limits)
    assert not isinstance(missing.value, ForbiddenSourceError)


@pytest.mark.timeout(10)
def test_non_regular_files_are_refused_without_blocking(root: Path, limits: ImageLimits) -> None:
    os.mkfifo(root / "pipe.png")
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(root / "pipe.png", limits=limits)


def test_file_url_follows_the_path_rules(root: Path, limits: ImageLimits) -> None:
    assert load_image((root / "ok.png").as_uri(), limits=limits).size == (8, 6)
    with pytest.raises(ForbiddenSourceError):
        load_image((root.parent / "outside.png").as_uri(), limits=limits)


@pytest.mark.parametrize("source", ["ftp://example.com/a.png", "gopher://x/1"])
def test_unsupported_schemes_are_refused(source: str, limits: ImageLimits) -> None:
    with pytest.raises(ForbiddenSourceError, match="scheme"):
        load_image(source, limits=limits)


def test_reference_url_field_only_takes_http(root: Path, limits: ImageLimits) -> None:
    with pytest.raises(ForbiddenSourceError):
        load_image(ImageRef(url=(root / "ok.png").as_uri()), limits=limits)


def test_catalog_ids_resolve_through_the_path_rules(root: Path, limits: ImageLimits) -> None:
    uris = {"good": str(root / "ok.png"), "escape": str(root.parent / "outside.png")}
    assert load_image(ImageRef(id="good"), limits=limits, resolve_catalog_uri=uris.__getitem__)
    with pytest.raises(ForbiddenSourceError):
        load_image(ImageRef(id="escape"), limits=limits, resolve_catalog_uri=uris.__getitem__)
    with pytest.raises(ImageError, match="path, url or data"):
        load_image(ImageRef(id="good"), limits=limits)


# --------------------------------------------------------------------------- local HTTP server


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ImageServer:
    port: int
    routes: dict[str, Route]
    seen: list[tuple[str, str]]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture(scope="module")
def module_server() -> Iterator[ImageServer]:
    routes: dict[str, Route] = {}
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            seen.append((self.path, self.headers.get("Host", "")))
            route = routes.get(self.path, Route(status=404))
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(route.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield ImageServer(port=httpd.server_address[1], routes=routes, seen=seen)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def server(module_server: ImageServer) -> ImageServer:
    """The shared local server, with no routes and no requests seen."""
    module_server.routes.clear()
    module_server.seen.clear()
    return module_server


PRIVATE_OK = ImageLimits(allow_private_urls=True, url_timeout_s=5)


AddrInfo = list[tuple[Any, ...]]


def fake_resolver(table: dict[str, list[str]]) -> Callable[..., AddrInfo]:
    """A getaddrinfo that answers for the names in ``table`` (IPv4) and defers otherwise."""
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> AddrInfo:
        if host not in table:
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in table[host]]

    return getaddrinfo


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/img.png",
        "http://localhost:{port}/img.png",
        "http://[::1]:{port}/img.png",
        "http://[::ffff:127.0.0.1]:{port}/img.png",
        "http://10.1.2.3/img.png",
        "http://192.168.0.7/img.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://2130706433:{port}/img.png",
    ],
)
def test_private_and_loopback_urls_are_refused_before_connecting(
    url: str, server: ImageServer
) -> None:
    server.routes["/img.png"] = Route(body=png_bytes())
    with pytest.raises(ForbiddenSourceError, match="ALLOW_PRIVATE_URLS"):
        load_image(url.format(port=server.port), limits=ImageLimits())
    assert server.seen == []


def test_every_resolved_address_must_be_public(monkeypatch: pytest.MonkeyPatch) -> None:
    resolver = fake_resolver({"mixed.example": ["93.184.216.34", "10.0.0.5"]})
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    with pytest.raises(ForbiddenSourceError, match="10.0.0.5"):
        load_image("http://mixed.example/a.png", limits=ImageLimits())


def test_allow_private_urls_fetches_from_a_local_server(server: ImageServer) -> None:
    server.routes["/img.png"] = Route(body=png_bytes((5, 4)), headers={"Content-Type": "image/png"})
    image = load_image(server.url("/img.png", host="localhost"), limits=PRIVATE_OK)
    assert image.size == (5, 4)
    assert server.seen == [("/img.png", f"localhost:{server.port}")]


def test_connection_goes_to_the_checked_address_with_the_original_host(
    server: ImageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: a second, different answer for the name must not be used."""
    server.routes["/img.png"] = Route(body=png_bytes((3, 3)))
    answers = iter([["127.0.0.1"]])  # later lookups would get the next answer
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: str, port: int, *args: Any, **kwargs: Any) -> AddrInfo:
        if host != "images.test":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        ips = next(answers, ["127.0.0.2"])  # nothing listens there
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in ips]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(fetch, "is_public_address", lambda a: str(a) == "127.0.0.1")
    image = load_image(server.url("/img.png", host="images.test"), limits=ImageLimits())
    assert image.size == (3, 3)
    assert lookups == ["images.test"]
    assert server.seen == [("/img.png", f"images.test:{server.port}")]


def test_redirects_are_followed_and_rechecked(
    server: ImageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.routes["/img.png"] = Route(body=png_bytes((2, 7)))
    server.routes["/hop"] = Route(status=302, headers={"Location": "/img.png"})
    assert load_image(server.url("/hop"), limits=PRIVATE_OK).size == (2, 7)

    # Treat 127.0.0.1 as public: the redirect to 127.0.0.2 must still be refused.
    real_check = fetch.is_public_address
    monkeypatch.setattr(
        fetch,
        "is_public_address",
        lambda a: a == ipaddress.ip_address("127.0.0.1") or real_check(a),
    )
    server.seen.clear()
    server.routes["/bounce"] = Route(
        status=307, headers={"Location": f"http://127.0.0.2:{server.port}/img.png"}
    )
    with pytest.raises(ForbiddenSourceError):
        load_image(server.url("/bounce"), limits=ImageLimits())
    assert [path for path, _ in server.seen] == ["/bounce"]


def test_redirect_to_a_file_url_is_refused(server: ImageServer) -> None:
    server.routes["/hop"] = Route(status=301, headers={"Location": "file:///etc/passwd"})
    with pytest.raises(ForbiddenSourceError, match="scheme"):
        load_image(server.url("/hop"), limits=PRIVATE_OK)


def test_http_errors_name_the_status(server: ImageServer) -> None:
    with pytest.raises(ImageError, match="HTTP 404"):
        load_image(server.url("/nothing.png"), limits=PRIVATE_OK)


# --------------------------------------------------------------------------- limits


def test_byte_limit_for_files_bytes_and_base64(root: Path) -> None:
    data = png_bytes((64, 64))
    small = ImageLimits(allowed_roots=[root], max_bytes=len(data) - 1)
    (root / "big.png").write_bytes(data)
    with pytest.raises(ImageTooLargeError, match="MAX_BYTES"):
        load_image(root / "big.png", limits=small)
    with pytest.raises(ImageTooLargeError):
        load_image(data, limits=small)
    with pytest.raises(ImageTooLargeError):
        load_image(ImageRef(data=base64.b64encode(data).decode()), limits=small)
    exact = ImageLimits(allowed_roots=[root], max_bytes=len(data))
    assert load_image(root / "big.png", limits=exact).size == (64, 64)


def test_byte_limit_for_urls_declared_and_streamed(server: ImageServer) -> None:
    data = png_bytes((64, 64))
    server.routes["/declared.png"] = Route(body=data, headers={"Content-Length": str(len(data))})
    server.routes["/streamed.png"] = Route(body=data)  # no length: read until close
    small = ImageLimits(allow_private_urls=True, max_bytes=len(data) // 2, url_timeout_s=5)
    with pytest.raises(ImageTooLargeError):
        load_image(server.url("/declared.png"), limits=small)
    with pytest.raises(ImageTooLargeError, match="more than"):
        load_image(server.url("/streamed.png"), limits=small)
    assert load_image(server.url("/streamed.png"), limits=PRIVATE_OK).size == (64, 64)


def test_pixel_limit_is_checked_from_the_header_before_decoding() -> None:
    crafted = png_header_only(3000, 3000)  # 9 MP claimed, no real pixel data
    with pytest.raises(ImageTooLargeError, match="3000x3000"):
        load_image(crafted, limits=ImageLimits(max_pixels=1_000_000))
    # Under the limit the same bytes get as far as decoding, and fail there.
    with pytest.raises(ImageError, match="corrupt") as corrupt:
        load_image(crafted, limits=ImageLimits())
    assert not isinstance(corrupt.value, ImageTooLargeError)


def test_pil_decompression_bomb_error_and_warning_become_too_large() -> None:
    with pytest.raises(ImageTooLargeError):  # over 2x PIL's limit: PIL raises
        load_image(png_header_only(50_000, 50_000), limits=ImageLimits(max_pixels=10**10))
    assert Image.MAX_IMAGE_PIXELS is not None
    side = int((Image.MAX_IMAGE_PIXELS * 1.5) ** 0.5)  # between 1x and 2x: PIL warns
    with pytest.raises(ImageTooLargeError):
        load_image(png_header_only(side, side), limits=ImageLimits(max_pixels=10**10))


# --------------------------------------------------------------------------- decoding


def test_truncated_and_non_image_bytes_are_image_errors(limits: ImageLimits) -> None:
    data = png_bytes((32, 32), (1, 2, 3))
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(data[: len(data) - 30], limits=limits)
    with pytest.raises(ImageError, match="supported format"):
        load_image(b"definitely not an image", limits=limits)
    with pytest.raises(ImageError, match="supported format"):  # EPS would run Ghostscript
        load_image(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", limits=limits)


def test_exif_orientation_is_applied(limits: ImageLimits) -> None:
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 20))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display after turning 90 degrees clockwise
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif, quality=95)
    loaded = load_image(buffer.getvalue(), limits=limits)
    assert loaded.size == (20, 40)
    top, bottom = loaded.getpixel((10, 5)), loaded.getpixel((10, 35))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60  # the red half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_transparency_is_flattened_onto_white(limits: ImageLimits) -> None:
    loaded = load_image(png_bytes((4, 4), (255, 0, 0, 0)), limits=limits)
    assert loaded.mode == "RGB"
    assert loaded.getpixel((1, 1)) == (255, 255, 255)


def test_base64_and_data_urls(limits: ImageLimits) -> None:
    encoded = base64.b64encode(png_bytes((7, 3))).decode()
    assert load_image(ImageRef(data=encoded), limits=limits).size == (7, 3)
    assert load_image(f"data:image/png;base64,{encoded}", limits=limits).size == (7, 3)
    with pytest.raises(ImageError, match="base64"):
        load_image(ImageRef(data="not base64 at all!"), limits=limits)


# --------------------------------------------------------------------------- helpers


def test_thumbnail_bounds_the_longer_side() -> None:
    image = Image.new("RGB", (400, 100))
    assert thumbnail(image, 100).size == (100, 25)
    small = Image.new("RGB", (50, 20))
    assert thumbnail(small, 100) is small
    with pytest.raises(ValueError):
        thumbnail(image, 0)


@pytest.mark.parametrize("fmt", ["JPEG", "png", "WEBP"])
def test_image_to_data_url_round_trips(fmt: str, limits: ImageLimits) -> None:
    url = image_to_data_url(Image.new("RGBA", (9, 5), (10, 200, 30, 255)), fmt)
    assert url.startswith(f"data:image/{fmt.lower()};base64,")
    assert load_image(url, limits=limits).size == (9, 5)


def test_image_to_data_url_rejects_unknown_formats() -> None:
    with pytest.raises(ValueError, match="GIF"):
        image_to_data_url(Image.new("RGB", (2, 2)), "GIF")
