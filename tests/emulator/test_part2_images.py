"""Unit tests of emulator/images.py, on tiny images built byte by byte."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest

from emulator.images import (
    MAX_BASE64_BYTES,
    ImageError,
    check_images,
    describe_images,
    image_infos,
    image_size,
    sniff_size,
)


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png(width: int, height: int, full: bool = True) -> bytes:
    """A real RGB PNG (every scanline filled) when ``full``; header-only otherwise, for sizes
    too large to build in a test (the API and this parser read the header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    if full:
        raw = b"".join(b"\x00" + b"\x80\x40\x20" * width for _ in range(height))
        idat = zlib.compress(raw)
    else:
        idat = zlib.compress(b"\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def gif(width: int, height: int) -> bytes:
    # Header, logical screen with a 2-colour global table, one image with a minimal LZW stream.
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0)
    palette = b"\x00\x00\x00\xff\xff\xff"
    descriptor = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    return b"GIF89a" + screen + palette + descriptor + b"\x02\x02\x44\x01\x00" + b"\x3b"


def jpeg(width: int, height: int, sof: int = 0xC0, fill: bool = True) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    dqt = b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes(range(1, 65))
    frame = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x01\x03\x11\x01"
    sof_segment = bytes([0xFF, sof]) + struct.pack(">H", len(frame) + 2) + frame
    # A fill byte before a marker is legal and must be skipped.
    return b"\xff\xd8" + app0 + (b"\xff" if fill else b"") + dqt + sof_segment + b"\xff\xd9"


def _riff(chunk: bytes, payload: bytes) -> bytes:
    body = b"WEBP" + chunk + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_lossy(width: int, height: int) -> bytes:
    payload = b"\x30\x01\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + b"\x00" * 8
    return _riff(b"VP8 ", payload)


def webp_lossless(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    return _riff(b"VP8L", b"\x2f" + struct.pack("<I", bits) + b"\x00" * 16)


def webp_extended(width: int, height: int) -> bytes:
    payload = (
        b"\x10\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    )
    return _riff(b"VP8X", payload)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("media_type", "data", "size"),
    [
        ("image/png", png(3, 2), (3, 2)),
        ("image/gif", gif(5, 4), (5, 4)),
        ("image/jpeg", jpeg(640, 480), (640, 480)),
        ("image/jpeg", jpeg(33, 17, sof=0xC2), (33, 17)),  # progressive
        ("image/webp", webp_lossy(320, 200), (320, 200)),
        ("image/webp", webp_lossless(1000, 3), (1000, 3)),
        ("image/webp", webp_extended(4000, 2500), (4000, 2500)),
    ],
)
def test_real_pixel_size_from_the_header(media_type, data, size):
    assert image_size(media_type, b64(data)) == size


def test_declared_type_must_match_the_bytes():
    with pytest.raises(ImageError) as err:
        image_size("image/jpeg", b64(png(2, 2)))
    assert err.value.message == "Image does not match the provided media type image/jpeg"
    assert err.value.field == ".base64.data"


def test_bytes_that_are_no_image():
    with pytest.raises(ImageError) as err:
        image_size("image/png", b64(b"<html>not an image</html>"))
    assert err.value.message == "Could not process image"


def test_invalid_base64():
    with pytest.raises(ImageError) as err:
        image_size("image/png", "not base64!!")
    assert err.value.message == "invalid base64 data"


def test_base64_over_five_megabytes():
    data = "A" * (MAX_BASE64_BYTES + 4)
    with pytest.raises(ImageError) as err:
        image_size("image/png", data)
    assert err.value.message == (
        f"image exceeds 5 MB maximum: {MAX_BASE64_BYTES + 4} bytes > 5242880 bytes"
    )
    assert err.value.field == ".base64"


def test_unsupported_media_type():
    with pytest.raises(ImageError) as err:
        image_size("image/bmp", b64(png(1, 1)))
    assert err.value.field == ".base64.media_type"


def test_side_over_8000_pixels():
    with pytest.raises(ImageError) as err:
        image_size("image/png", b64(png(8001, 10, full=False)))
    assert err.value.message == (
        "At least one of the image dimensions exceed max allowed size: 8000 pixels"
    )
    assert image_size("image/png", b64(png(8000, 8000, full=False))) == (8000, 8000)


# -- whole requests --------------------------------------------------------------------


def image_block(data: bytes, media_type: str = "image/png", **extra) -> dict:
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": media_type, "data": b64(data)},
        **extra,
    }


def request(*blocks: dict) -> dict:
    return {
        "messages": [
            {"role": "user", "content": [*blocks, {"type": "text", "text": "What is this?"}]}
        ]
    }


def test_check_images_names_the_block_like_the_real_api():
    body = request(image_block(png(2, 2)), image_block(png(2, 2), media_type="image/jpeg"))
    assert check_images(body) == (
        "messages.0.content.1.image.source.base64.data: "
        "Image does not match the provided media type image/jpeg"
    )


def test_more_than_twenty_images_are_limited_to_2000_pixels():
    big = png(2001, 5, full=False)
    assert check_images(request(*[image_block(big)] * 20)) is None
    assert check_images(request(*[image_block(big)] * 21)) == (
        "messages.0.content.0.image.source.base64.data: At least one of the image dimensions "
        "exceed max allowed size for many-image requests: 2000 pixels"
    )


def test_oversized_image_error_transformation():
    large = image_block(png(3000, 1500, full=False), transformations={"oversized_image": "error"})
    message = check_images(request(large))
    assert message.startswith("messages.0.content.0.image: The image is 3000x1500 pixels")
    assert "1568x784" in message
    downsized = image_block(png(3000, 1500, full=False))
    assert check_images(request(downsized)) is None


def test_images_inside_tool_results_and_documents_are_checked():
    result = {
        "type": "tool_result",
        "tool_use_id": "t",
        "content": [image_block(gif(1, 1), "image/png")],
    }
    body = {"messages": [{"role": "user", "content": [result]}]}
    assert check_images(body).startswith("messages.0.content.0.content.0.image.source.base64.data:")
    doc = {
        "type": "document",
        "source": {"type": "content", "content": [image_block(gif(1, 1), "image/png")]},
    }
    body = {"messages": [{"role": "user", "content": [doc]}]}
    assert check_images(body).startswith("messages.0.content.0.source.content.0.image")


def test_url_images_are_not_fetched():
    url = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    assert check_images(request(url)) is None


def test_image_count_limit_when_asked():
    assert check_images(request(*[image_block(png(1, 1))] * 3), max_images=2) is not None


def test_reply_states_the_real_dimensions():
    body = request(image_block(jpeg(640, 480), "image/jpeg"))
    assert describe_images(body) == "I see a JPEG image of 640x480 pixels."
    two = request(image_block(png(3, 2)), image_block(webp_lossy(10, 20), "image/webp"))
    assert describe_images(two) == (
        "I see 2 images: image 1 is a PNG image of 3x2 pixels; "
        "image 2 is a WEBP image of 10x20 pixels."
    )
    assert describe_images({"messages": [{"role": "user", "content": "hi"}]}) is None
    assert [i.path for i in image_infos(two)] == ["messages.0.content.0", "messages.0.content.1"]


def test_the_token_counter_reads_sizes_with_the_same_parser():
    tokens = pytest.importorskip("emulator.tokens")
    for data in (
        png(3, 2),
        gif(5, 4),
        jpeg(640, 480, fill=False),
        webp_lossless(1000, 3),
        webp_extended(9, 7),
    ):
        media = {
            b"\x89P": "image/png",
            b"GI": "image/gif",
            b"\xff\xd8": "image/jpeg",
            b"RI": "image/webp",
        }[data[:2]]
        width, height = image_size(media, b64(data))
        assert sniff_size(data) == (media, width, height)
        block = {"type": "image", "source": {"type": "base64", "media_type": media,
                                             "data": b64(data)}}  # fmt: skip
        assert tokens.block_tokens(block) == tokens.image_tokens_for_size(width, height)
