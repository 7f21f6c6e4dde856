"""Image variants without a server: the adapter on real images made here (Pillow writes them,
hostile PNGs are written byte by byte), and the domain's declarations and key scheme."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import ExifTags, Image, ImageCms

from graphql_files.adapters.images import HEAD_BYTES, ImageInfo, make_variant, probe
from graphql_files.domain.object_keys import new_attachment_key, record_folder
from graphql_files.domain.variants import (
    THUMB,
    VariantSpec,
    content_type_of,
    extension_of,
    is_variant_key,
    original_of,
    variant_key,
    variants_prefix,
)
from graphql_files.errors import BadUserInput

MAX_PIXELS = 50_000_000
MIB = 1024 * 1024
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


# --- making images -------------------------------------------------------------------------


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def halves(size: tuple[int, int], left: tuple[int, ...], right: tuple[int, ...]) -> Image.Image:
    """An image whose left half is ``left`` and right half ``right``."""
    mode = "RGBA" if len(left) == 4 else "RGB"
    image = Image.new(mode, size, left)
    image.paste(Image.new(mode, (size[0] - size[0] // 2, size[1]), right), (size[0] // 2, 0))
    return image


def near(pixel: object, colour: tuple[int, ...], tolerance: int = 40) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(int(a) - b) <= tolerance for a, b in zip(pixel, colour, strict=False))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def handmade_png(width: int, height: int, raw: bytes, *, interlace: int = 0) -> bytes:
    """An 8-bit RGB PNG whose IHDR says ``width`` x ``height`` and whose IDAT is ``raw``
    compressed, whatever it holds (correct CRCs: only the sizes may lie)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, interlace)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def rows(width: int, height: int, colour: tuple[int, int, int] = RED) -> bytes:
    """Unfiltered RGB rows: a filter byte (0) then the pixels, for each row."""
    return (b"\x00" + bytes(colour) * width) * height


def interlaced_png(image: Image.Image) -> bytes:
    """``image`` (RGB) as an Adam7-interlaced PNG (Pillow writes none): the pixels of each
    pass, row by row, each row unfiltered."""
    width, height = image.size
    pixels = image.tobytes()
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4)]
    raw = bytearray()
    for x0, y0, dx, dy in [*passes, (1, 0, 2, 2), (0, 1, 1, 2)]:
        columns = range(x0, width, dx)
        if not columns:
            continue
        for y in range(y0, height, dy):
            raw.append(0)
            for x in columns:
                raw += pixels[(y * width + x) * 3 : (y * width + x) * 3 + 3]
    return handmade_png(width, height, bytes(raw), interlace=1)


def peak_rss_growth(work: Callable[[], object]) -> int:
    """Bytes ``work`` added to this process's peak RSS (Linux: the high-water mark is reset
    first, so an earlier test's peak cannot hide this one's)."""
    clear = Path("/proc/self/clear_refs")
    if not clear.exists():
        pytest.skip("measuring peak memory needs Linux's /proc/self/clear_refs")

    def status(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(field)

    before = status("VmRSS")
    clear.write_text("5")
    work()
    return status("VmHWM") - before


def refused(data: bytes, spec: VariantSpec = THUMB, max_pixels: int = MAX_PIXELS) -> str:
    """The reason ``make_variant`` gives for refusing ``data``."""
    with pytest.raises(BadUserInput) as caught:
        make_variant(data, spec, max_pixels=max_pixels)
    assert "\n" not in caught.value.message
    return str(caught.value.extensions["reason"])


# --- sizes and crops -----------------------------------------------------------------------


def test_cover_crops_the_centre_to_exactly_the_box() -> None:
    # 4000x3000: the centred 3000x3000 is blue, the 500px strips either side green
    image = Image.new("RGB", (4000, 3000), GREEN)
    image.paste(Image.new("RGB", (3000, 3000), BLUE), (500, 0))
    variant = opened(make_variant(encoded(image, "JPEG"), THUMB, max_pixels=MAX_PIXELS))
    assert (variant.format, variant.size) == ("WEBP", (256, 256))
    for corner in [(0, 0), (255, 0), (0, 255), (255, 255), (128, 128)]:
        assert near(variant.convert("RGB").getpixel(corner), BLUE), corner


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        (VariantSpec("preview", 1024, 1024), (1024, 768)),
        (VariantSpec("wide", 300, None), (300, 225)),
        (VariantSpec("tall", None, 150), (200, 150)),
        (VariantSpec("box", 1000, 100), (133, 100)),
    ],
)
def test_contain_fits_inside_keeping_the_aspect_ratio(
    spec: VariantSpec, size: tuple[int, int]
) -> None:
    image = halves((4000, 3000), RED, BLUE)
    variant = opened(make_variant(encoded(image, "JPEG"), spec, max_pixels=MAX_PIXELS))
    assert variant.size == size
    assert near(variant.getpixel((0, 0)), RED)
    assert near(variant.getpixel((size[0] - 1, size[1] - 1)), BLUE)


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        (THUMB, (80, 80)),  # cover: the box's shape, at the original's scale
        (VariantSpec("fit", 256, 256), (100, 80)),
        (VariantSpec("wide", 2000, 500, "cover"), (100, 25)),
    ],
)
def test_a_small_image_is_never_enlarged(spec: VariantSpec, size: tuple[int, int]) -> None:
    small = encoded(Image.new("RGB", (100, 80), RED), "PNG")
    assert opened(make_variant(small, spec, max_pixels=MAX_PIXELS)).size == size


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_orientation_turns_the_variant_upright(fmt: str) -> None:
    # stored landscape, left half red; orientation 6: shown turned 90 degrees clockwise
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    data = encoded(halves((300, 200), RED, BLUE), fmt, exif=exif)
    variant = opened(make_variant(data, VariantSpec("fit", 256, 256), max_pixels=MAX_PIXELS))
    assert variant.size == (171, 256)  # portrait
    assert near(variant.getpixel((85, 10)), RED)  # the stored left is now the top
    assert near(variant.getpixel((85, 245)), BLUE)
    assert ExifTags.Base.Orientation not in variant.getexif()


def test_cover_crops_the_upright_image() -> None:
    # shown 200x300, red above blue; a 2:1 cover takes the middle 200x100 band
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    data = encoded(halves((300, 200), RED, BLUE), "JPEG", exif=exif)
    spec = VariantSpec("band", 200, 100, "cover")
    variant = opened(make_variant(data, spec, max_pixels=MAX_PIXELS))
    assert variant.size == (200, 100)
    assert near(variant.getpixel((100, 10)), RED)
    assert near(variant.getpixel((100, 90)), BLUE)


def test_a_large_jpeg_decodes_shrunk() -> None:
    data = encoded(halves((6000, 4000), RED, BLUE), "JPEG")
    grew = peak_rss_growth(lambda: make_variant(data, THUMB, max_pixels=MAX_PIXELS))
    assert grew < 20 * MIB  # at full size it would be 72 MB of pixels


# --- what the output carries ---------------------------------------------------------------


def source_with_metadata() -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Example Camera"
    exif[ExifTags.Base.Orientation] = 1
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 24.0)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    data = encoded(Image.new("RGB", (400, 300), RED), "JPEG", exif=exif, icc_profile=srgb, xmp=xmp)
    original = opened(data)
    assert original.getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the test's own premise
    assert {"exif", "icc_profile", "xmp"} <= set(original.info)
    return data


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_the_variant_carries_no_metadata(fmt: str) -> None:
    spec = VariantSpec("v", 100, 100, format=fmt)
    variant = opened(make_variant(source_with_metadata(), spec, max_pixels=MAX_PIXELS))
    assert variant.format == fmt.upper()
    assert not variant.getexif()
    assert not variant.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert not {"exif", "icc_profile", "xmp", "XML:com.adobe.xmp"} & set(variant.info)
    assert near(variant.convert("RGB").getpixel((50, 37)), RED)


def test_a_broken_icc_profile_is_ignored() -> None:
    data = encoded(Image.new("RGB", (40, 30), RED), "JPEG", icc_profile=b"not a profile" * 20)
    variant = opened(make_variant(data, THUMB, max_pixels=MAX_PIXELS))
    assert near(variant.getpixel((10, 10)), RED)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_an_animation_gives_its_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (64, 48), colour) for colour in (RED, GREEN, BLUE)]
    data = encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)
    assert getattr(opened(data), "n_frames", 1) == 3
    info = probe(data)
    assert info is not None
    assert info.animated
    variant = opened(make_variant(data, THUMB, max_pixels=MAX_PIXELS))
    assert getattr(variant, "n_frames", 1) == 1
    assert near(variant.convert("RGB").getpixel((20, 20)), RED)


@pytest.mark.parametrize(
    ("source", "spec_format", "output"),
    [
        ("JPEG", None, "JPEG"),
        ("PNG", None, "PNG"),
        ("WEBP", None, "WEBP"),
        ("GIF", None, "WEBP"),  # formats a variant is not written in become webp
        ("BMP", None, "WEBP"),
        ("JPEG", "webp", "WEBP"),
        ("PNG", "jpeg", "JPEG"),
    ],
)
def test_output_format(source: str, spec_format: str | None, output: str) -> None:
    data = encoded(Image.new("RGB", (60, 40), RED), source)
    spec = VariantSpec("v", 30, None, format=spec_format)
    assert opened(make_variant(data, spec, max_pixels=MAX_PIXELS)).format == output


def test_alpha_is_flattened_onto_white_for_jpeg() -> None:
    data = encoded(halves((200, 100), (0, 0, 0, 0), (*RED, 255)), "PNG")
    jpeg = opened(make_variant(data, VariantSpec("j", 100, None, format="jpeg"), max_pixels=10**6))
    assert jpeg.mode == "RGB"
    assert near(jpeg.getpixel((10, 25)), WHITE)
    assert near(jpeg.getpixel((90, 25)), RED)
    webp = opened(make_variant(data, VariantSpec("w", 100, None, format="webp"), max_pixels=10**6))
    assert webp.mode == "RGBA"
    assert webp.getpixel((10, 25))[3] == 0  # type: ignore[index]
    assert webp.getpixel((90, 25))[3] == 255  # type: ignore[index]


@pytest.mark.parametrize(
    ("image", "colour"),
    [
        (Image.new("CMYK", (80, 60), (0, 255, 255, 0)), RED),
        (Image.new("I;16", (80, 60), 40000), (156, 156, 156)),  # 16 bits scaled, not clipped
        (Image.new("LA", (80, 60), (200, 255)), (200, 200, 200)),
        (Image.new("1", (80, 60), 1), WHITE),
        (Image.new("RGB", (80, 60), RED).convert("P"), RED),
    ],
    ids=["cmyk", "grey-16", "grey-alpha", "bilevel", "palette"],
)
def test_modes_convert_as_they_look(image: Image.Image, colour: tuple[int, ...]) -> None:
    data = encoded(image, "JPEG" if image.mode == "CMYK" else "PNG")
    variant = opened(make_variant(data, VariantSpec("v", 40, None), max_pixels=MAX_PIXELS))
    assert near(variant.convert("RGB").getpixel((20, 15)), colour, tolerance=12)


def test_an_interlaced_png_is_read() -> None:
    image = halves((37, 23), RED, BLUE)
    variant = opened(
        make_variant(interlaced_png(image), VariantSpec("v", 100, None), max_pixels=10**6)
    )
    assert variant.size == (37, 23)
    assert variant.tobytes() == image.tobytes()


# --- hostile files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "max_pixels"),
    [
        ((50_000, 50_000), MAX_PIXELS),  # past Pillow's own ceiling as well
        ((10_000, 6_000), MAX_PIXELS),  # 60 MP: 180 MB of pixels
        ((101, 100), 10_000),
    ],
)
def test_a_decompression_bomb_is_refused_before_decoding(
    size: tuple[int, int], max_pixels: int
) -> None:
    bomb = handmade_png(*size, rows(1, 1))  # a hundred bytes
    assert len(bomb) < 100
    reasons: list[str] = []
    grew = peak_rss_growth(lambda: reasons.append(refused(bomb, max_pixels=max_pixels)))
    assert reasons == ["IMAGE_TOO_LARGE"]
    assert grew < 50 * MIB


def test_an_animated_webp_canvas_bomb_is_refused_before_decoding() -> None:
    # a 9000x9000 canvas around one 1x1 frame: decoded, it would take 1.2 GB
    def riff(kind: bytes, data: bytes) -> bytes:
        return kind + struct.pack("<I", len(data)) + data + b"\0" * (len(data) % 2)

    frame = encoded(Image.new("RGB", (1, 1), RED), "WEBP", lossless=True)[12:]
    side = (9000 - 1).to_bytes(3, "little")
    body = (
        b"WEBP"
        + riff(b"VP8X", b"\x02\0\0\0" + side + side)
        + riff(b"ANIM", bytes(6))
        + riff(b"ANMF", bytes(12) + b"\x64\0\0\0" + frame)
    )
    bomb = b"RIFF" + struct.pack("<I", len(body)) + body
    assert probe(bomb) == ImageInfo(9000, 9000, "webp", animated=True)
    reasons: list[str] = []
    assert peak_rss_growth(lambda: reasons.append(refused(bomb))) < 50 * MIB
    assert reasons == ["IMAGE_TOO_LARGE"]


@pytest.mark.parametrize(
    ("mode", "fmt", "options"),
    [
        ("RGB", "JPEG", {}),
        ("RGB", "JPEG", {"progressive": True}),
        ("CMYK", "JPEG", {}),
        ("L", "JPEG", {}),
        ("RGB", "PNG", {}),
        ("RGBA", "WEBP", {}),
        ("P", "GIF", {}),
        ("RGB", "BMP", {}),
    ],
)
def test_a_truncated_image_is_refused(mode: str, fmt: str, options: dict[str, object]) -> None:
    whole = encoded(Image.effect_noise((400, 300), 60).convert(mode), fmt, **options)
    assert refused(whole[: len(whole) // 2]) == "CORRUPT_IMAGE"


@pytest.mark.parametrize(
    "raw",
    [
        rows(20, 20),  # more rows, and longer ones, than 10x10
        rows(10, 5),  # half the rows
        rows(10, 10) + b"\x00" * 31,  # one row too many
        bytes(range(256)) * 3,  # not rows at all
    ],
    ids=["larger", "shorter", "one-row-more", "garbage"],
)
def test_a_png_whose_header_lies_about_its_size_is_refused(raw: bytes) -> None:
    assert refused(handmade_png(10, 10, raw)) == "CORRUPT_IMAGE"


def test_an_honest_handmade_png_is_accepted() -> None:
    variant = opened(make_variant(handmade_png(10, 10, rows(10, 10)), THUMB, max_pixels=100))
    assert variant.size == (10, 10)
    assert near(variant.convert("RGB").getpixel((5, 5)), RED)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, world\n" * 100,
        b"\x89PNG\r\n\x1a\n" + b"\0" * 100,
        b"GIF89a",
        b"\xff\xd8\xff",
        b'<svg xmlns="http://www.w3.org/2000/svg"/>',
    ],
)
def test_a_file_that_is_not_an_image_is_refused(data: bytes) -> None:
    assert refused(data) in ("NOT_AN_IMAGE", "CORRUPT_IMAGE")
    assert probe(data) is None


def test_formats_a_variant_is_not_made_from_are_refused() -> None:
    tiff = encoded(Image.new("RGB", (30, 20), RED), "TIFF")
    assert refused(tiff) == "NOT_AN_IMAGE"
    assert probe(tiff) is None


# --- probe ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("JPEG", {}),
        ("PNG", {}),
        ("GIF", {}),
        ("BMP", {}),
        ("WEBP", {}),
        ("WEBP", {"lossless": True}),
        ("WEBP", {"exif": b"Exif\0\0"}),  # an extended (VP8X) file
    ],
)
def test_probe_reads_the_header_alone(fmt: str, options: dict[str, object]) -> None:
    data = encoded(Image.effect_noise((1500, 1000), 80).convert("RGB"), fmt, **options)
    assert len(data) > HEAD_BYTES  # the pixels lie past what probe sees
    info = probe(data[:HEAD_BYTES])
    assert info is not None
    assert info == ImageInfo(1500, 1000, fmt.lower(), animated=False)
    assert info.pixels == 1_500_000


# --- declarations --------------------------------------------------------------------------


def test_parse_a_declaration() -> None:
    declared = {"width": 256, "height": 256, "fit": "cover", "format": "webp"}
    assert VariantSpec.parse("thumb", declared) == THUMB
    preview = VariantSpec.parse("preview", {"width": 1024, "format": "webp", "quality": 80})
    assert preview == VariantSpec("preview", 1024, None, "contain", "webp", 80)
    assert preview.output_quality("webp") == 80
    assert VariantSpec("v", 10, None).output_quality("jpeg") == 80
    assert VariantSpec("v", 10, None, quality=50).output_quality("png") is None


@pytest.mark.parametrize(
    ("name", "table", "says"),
    [
        ("thumb", {"width": 256, "crop": True}, "unknown key(s) crop"),
        ("thumb", {"fit": "cover"}, "give a width, a height or both"),
        ("thumb", {"width": 0}, "width must be an integer from 1 to 10000"),
        ("thumb", {"height": -5}, "height must be an integer from 1 to 10000"),
        ("thumb", {"width": 10_001}, "width must be an integer from 1 to 10000"),
        ("thumb", {"width": "256"}, "width must be an integer"),
        ("thumb", {"width": 25.6}, "width must be an integer"),
        ("thumb", {"width": True}, "width must be an integer"),
        ("thumb", {"width": 256, "fit": "fill"}, "fit must be 'cover' or 'contain', not 'fill'"),
        ("thumb", {"width": 256, "fit": 1}, "fit must be a string"),
        ("thumb", {"width": 256, "fit": "cover"}, "fit 'cover' needs both a width and a height"),
        ("thumb", {"width": 256, "format": "gif"}, "format must be 'jpeg', 'png' or 'webp'"),
        ("thumb", {"width": 256, "format": "jpg"}, "format must be 'jpeg', 'png' or 'webp'"),
        ("thumb", {"width": 256, "quality": 0}, "quality must be an integer from 1 to 100"),
        ("thumb", {"width": 256, "quality": 101}, "quality must be an integer from 1 to 100"),
        ("1thumb", {"width": 256}, "a variant name is a letter then"),
        ("", {"width": 256}, "a variant name is a letter then"),
        ("a" * 33, {"width": 256}, "a variant name is a letter then"),
        ("th umb", {"width": 256}, "a variant name is a letter then"),
        ("thumb.webp", {"width": 256}, "a variant name is a letter then"),
    ],
)
def test_parse_refuses_in_one_line(name: str, table: dict[str, object], says: str) -> None:
    with pytest.raises(ValueError, match=r"^variant ") as caught:
        VariantSpec.parse(name, table)
    message = str(caught.value)
    assert says in message, message
    assert message.startswith(f"variant {name!r}: ")
    assert "\n" not in message


def test_content_types_and_extensions() -> None:
    assert [content_type_of(f) for f in ("jpeg", "png", "webp")] == [
        "image/jpeg",
        "image/png",
        "image/webp",
    ]
    assert [extension_of(f) for f in ("jpeg", "png", "webp")] == ["jpg", "png", "webp"]
    with pytest.raises(ValueError, match="no variant format 'gif'"):
        content_type_of("gif")


# --- keys ----------------------------------------------------------------------------------

ORIGINAL = "images/Song/song-1/0123456789abcdef0123456789abcdef-cover.jpg"


def test_a_variant_lives_beside_its_original() -> None:
    key = variant_key(ORIGINAL, "thumb", "webp")
    assert key == (
        "images/Song/song-1/.variants/0123456789abcdef0123456789abcdef-cover.jpg/thumb.webp"
    )
    assert key.startswith(variants_prefix(ORIGINAL))
    assert is_variant_key(key)
    assert original_of(key) == ORIGINAL
    assert not is_variant_key(ORIGINAL)
    assert original_of(ORIGINAL) is None
    assert original_of(variant_key("top.png", "v", "png")) == "top.png"


@pytest.mark.parametrize(
    "key",
    [
        "a/.variants/x.jpg/thumb.gif",  # not an extension a variant has
        "a/.variants/x.jpg/1thumb.webp",  # not a variant name
        "a/.variants/x.jpg/sub/thumb.webp",  # one level too deep
        "a/.variants/thumb.webp",  # no original's name
        "a/.variants/.variants/x.jpg/thumb.webp/v.png",  # a variant of a variant
    ],
)
def test_other_keys_have_no_original(key: str) -> None:
    assert original_of(key) is None


def test_variant_key_refuses_what_it_cannot_name() -> None:
    variant = variant_key(ORIGINAL, "thumb", "webp")
    with pytest.raises(ValueError, match="is not the key of an original"):
        variant_key(variant, "thumb", "webp")
    with pytest.raises(ValueError, match="is not a variant name"):
        variant_key(ORIGINAL, "thumb/x", "webp")
    with pytest.raises(ValueError, match="is not a variant extension"):
        variant_key(ORIGINAL, "thumb", "gif")
    with pytest.raises(ValueError, match="would pass 1024 bytes"):
        variant_key("a/" + "x" * 1010, "thumb", "webp")


record_ids = st.text(
    st.characters(exclude_categories=["Cc", "Cs"], exclude_characters="/"),
    min_size=1,
    max_size=128,
).filter(lambda i: i not in (".", ".."))


@given(record_id=record_ids | st.just(".variants"), file_name=st.text() | st.just(".variants"))
def test_no_upload_key_is_a_variant_key(record_id: str, file_name: str) -> None:
    for model in ("Song", "PhotoAlbum"):
        key = new_attachment_key(record_folder("images/", model, record_id), file_name)
        assert not is_variant_key(key)
        assert original_of(key) is None
        assert original_of(variant_key(key, "thumb", "webp")) == key
