"""Image blocks: real pixel sizes from the file headers, and the real API's limits (section I).

The headers of PNG, JPEG, GIF and WebP are parsed by hand (no imaging library): the emulator
only needs the format and the dimensions, to check the declared ``media_type`` and the size
limits and to state the real width and height in its reply.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
MAX_BASE64_BYTES = 5 * 1024 * 1024  # counted on the base64 string
MAX_DIMENSION = 8000
MANY_IMAGES = 20  # more than this in one request...
MANY_IMAGES_MAX_DIMENSION = 2000  # ...and each may be at most this
# Long edge the model sees natively; larger images are downsized unless the request asks
# ``transformations.oversized_image: "error"`` (then it is a 400 naming the sizes).
NATIVE_LONG_EDGE = 1568

_SOF_MARKERS = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)


class ImageError(ValueError):
    """A rejected image. ``field`` is the path under ``...image.source`` the real API names
    (e.g. ``.base64.data``); ``message`` is its text."""

    def __init__(self, message: str, field: str = ".base64.data") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def sniff(data: bytes) -> str | None:
    """The media type the bytes really are, from their magic numbers."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ImageError("Could not process image")
    return struct.unpack(">II", data[16:24])


def _gif_size(data: bytes) -> tuple[int, int]:
    if len(data) < 10:
        raise ImageError("Could not process image")
    return struct.unpack("<HH", data[6:10])


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i = 2
    while i < len(data):
        if data[i] != 0xFF:
            raise ImageError("Could not process image")
        while i < len(data) and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= len(data):
            break
        marker = data[i]
        i += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            continue  # markers without a length
        if marker in (0xD9, 0xDA):
            break  # end of image / start of scan before any frame header
        if i + 2 > len(data):
            break
        (length,) = struct.unpack(">H", data[i : i + 2])
        if marker in _SOF_MARKERS:
            if i + 7 > len(data):
                break
            height, width = struct.unpack(">HH", data[i + 3 : i + 7])
            return width, height
        i += length
    raise ImageError("Could not process image")


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    raise ImageError("Could not process image")


_PARSERS = {
    "image/png": _png_size,
    "image/gif": _gif_size,
    "image/jpeg": _jpeg_size,
    "image/webp": _webp_size,
}


def decode(b64: str) -> bytes:
    """The bytes of a base64 string; ``ImageError`` when it is not valid base64."""
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("invalid base64 data") from None


def sniff_size(data: bytes) -> tuple[str, int, int]:
    """``(media_type, width, height)`` from the bytes of a PNG, JPEG, GIF or WebP image.

    The one image parser of the emulator: validation (``image_size``) and the token counter
    (``emulator.tokens``) both use it. ``ImageError`` when the bytes are no readable image.
    """
    if not data:
        raise ImageError("image cannot be empty")
    actual = sniff(data)
    if actual is None:
        raise ImageError("Could not process image")
    width, height = _PARSERS[actual](data)
    if width == 0 or height == 0:
        raise ImageError("Could not process image")
    return actual, width, height


def image_size(media_type: str, b64: str) -> tuple[int, int]:
    """``(width, height)`` of a base64 image, or ``ImageError`` as the real API would reject it:
    base64 over 5 MB, invalid base64, bytes that are no image or not the declared type, or a
    side over 8000 px."""
    if media_type not in MEDIA_TYPES:
        raise ImageError(
            "Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'",
            ".base64.media_type",
        )
    if len(b64) > MAX_BASE64_BYTES:
        raise ImageError(
            f"image exceeds 5 MB maximum: {len(b64)} bytes > {MAX_BASE64_BYTES} bytes",
            ".base64",
        )
    data = decode(b64)
    if data and sniff(data) not in (None, media_type):
        raise ImageError(f"Image does not match the provided media type {media_type}")
    _, width, height = sniff_size(data)
    if max(width, height) > MAX_DIMENSION:
        raise ImageError(
            f"At least one of the image dimensions exceed max allowed size: {MAX_DIMENSION} pixels"
        )
    return width, height


@dataclass(frozen=True)
class ImageInfo:
    path: str  # e.g. messages.0.content.1
    media_type: str
    width: int
    height: int


def _blocks(content: Any) -> list[dict]:
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def iter_image_blocks(body: dict) -> Iterator[tuple[str, dict]]:
    """``(path, block)`` for every image in the messages: message content, tool_result content
    and custom-content documents."""
    for i, message in enumerate(body.get("messages") or []):
        if not isinstance(message, dict):
            continue
        for j, block in enumerate(_blocks(message.get("content"))):
            path = f"messages.{i}.content.{j}"
            kind = block.get("type")
            if kind == "image":
                yield path, block
            elif kind == "tool_result":
                for k, inner in enumerate(_blocks(block.get("content"))):
                    if inner.get("type") == "image":
                        yield f"{path}.content.{k}", inner
            elif kind == "document":
                source = block.get("source") or {}
                if isinstance(source, dict) and source.get("type") == "content":
                    for k, inner in enumerate(_blocks(source.get("content"))):
                        if inner.get("type") == "image":
                            yield f"{path}.source.content.{k}", inner


def _fit(width: int, height: int, long_edge: int) -> tuple[int, int]:
    scale = long_edge / max(width, height)
    return max(1, min(long_edge, round(width * scale))), max(
        1, min(long_edge, round(height * scale))
    )


def check_images(body: dict, max_images: int | None = None) -> str | None:
    """The 400 message for the request's images, or None. Only base64 sources are checked
    (the emulator cannot fetch url/file images). ``max_images`` is the model's per-request
    image limit (100 for 200K-context models, 600 otherwise), when the caller enforces it."""
    found = list(iter_image_blocks(body))
    if max_images is not None and len(found) > max_images:
        return f"Too many images in request: {len(found)} > {max_images}."
    many = len(found) > MANY_IMAGES
    for path, block in found:
        source = block.get("source")
        if not isinstance(source, dict) or source.get("type") != "base64":
            continue
        data = source.get("data")
        if not isinstance(data, str):
            return f"{path}.image.source.base64.data: Input should be a valid string"
        try:
            width, height = image_size(str(source.get("media_type")), data)
        except ImageError as err:
            return f"{path}.image.source{err.field}: {err.message}"
        if many and max(width, height) > MANY_IMAGES_MAX_DIMENSION:
            return (
                f"{path}.image.source.base64.data: At least one of the image dimensions exceed "
                f"max allowed size for many-image requests: {MANY_IMAGES_MAX_DIMENSION} pixels"
            )
        transformations = block.get("transformations") or {}
        if (
            isinstance(transformations, dict)
            and transformations.get("oversized_image") == "error"
            and max(width, height) > NATIVE_LONG_EDGE
        ):
            fit_w, fit_h = _fit(width, height, NATIVE_LONG_EDGE)
            return (
                f"{path}.image: The image is {width}x{height} pixels, larger than the "
                f"{fit_w}x{fit_h} pixels this model takes at this aspect ratio; scale it "
                'down, or omit `transformations.oversized_image: "error"` to let the API '
                "downsize it."
            )
    return None


def image_infos(body: dict) -> list[ImageInfo]:
    """Sizes of the request's readable base64 images (call after ``check_images``)."""
    infos: list[ImageInfo] = []
    for path, block in iter_image_blocks(body):
        source = block.get("source") or {}
        if source.get("type") != "base64":
            continue
        try:
            width, height = image_size(str(source.get("media_type")), str(source.get("data")))
        except ImageError:
            continue
        infos.append(ImageInfo(path, str(source["media_type"]), width, height))
    return infos


def describe_images(body: dict) -> str | None:
    """What the reply says about the last user turn's images: their real pixel sizes."""
    messages = body.get("messages") or []
    last_user = max(
        (i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"),
        default=None,
    )
    if last_user is None:
        return None
    prefix = f"messages.{last_user}."
    infos = [info for info in image_infos(body) if info.path.startswith(prefix)]
    if not infos:
        return None

    def one(info: ImageInfo) -> str:
        kind = info.media_type.split("/")[1].upper()
        return f"a {kind} image of {info.width}x{info.height} pixels"

    if len(infos) == 1:
        return f"I see {one(infos[0])}."
    listed = "; ".join(f"image {n} is {one(info)}" for n, info in enumerate(infos, start=1))
    return f"I see {len(infos)} images: {listed}."
