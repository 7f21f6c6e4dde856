"""Images: the one module that calls the imaging library (Pillow) to make variants.

Pillow, not libvips, by measurement (``python -m bench.images``): with JPEG shrink-on-load it
makes 256px thumbnails of a 24 MP JPEG a little faster than pyvips (about 8/s against 6.5/s on
one core) with a fraction of the memory (a 2 MiB peak against 24 MiB), and it is a dependency
already. Both functions block: run them in a thread (Pillow releases the GIL while it decodes,
resizes and encodes). Memory is the pixels of one decoded image: up to 4 bytes a pixel for a
PNG at ``max_pixels`` (200 MB at 50 MP; more for an animated WebP), per worker.

Hostile files are refused with ``BadUserInput`` (every Pillow exception is translated here):

- too many pixels: the count the header declares is checked before a pixel is decoded (Pillow's
  ``open`` reads headers only, and refuses on its own past 2 x ``Image.MAX_IMAGE_PIXELS``, about
  179 M: a ``max_pixels`` above that changes nothing; between 89 M and 179 M Pillow also warns);
- truncated or corrupt data (Pillow's ``LOAD_TRUNCATED_IMAGES`` stays off);
- a PNG whose data does not inflate to exactly what its IHDR declares (Pillow leaves missing
  rows black and ignores extra data: ``_check_png_data`` counts the bytes, a chunk at a time;
  this second inflate costs 25-50 ms for a 2000x2000 PNG, about a third of its variant's time).

What a variant is made of, and from:

- read: JPEG (and MPO, as cameras write it), PNG (and APNG), GIF, WebP, BMP: what browsers
  show. Not TIFF and the like: libtiff's attack surface is large, and browsers do not show them.
  An animation gives its first frame.
- pixels: EXIF orientation applied, then none of the metadata kept (no EXIF, GPS, XMP, text
  chunks). An ICC profile converts the pixels to sRGB and is dropped (a profile LittleCMS cannot
  read, or a grey one, is ignored: the pixels stay as stored). Palette, 1-bit and grey+alpha
  images become RGB(A) or L, 16-bit grey is scaled to 8 bits, CMYK becomes RGB; alpha is kept
  for PNG and WebP and flattened onto white for JPEG.
- JPEG decodes at 1/2, 1/4 or 1/8 of its size when the variant is that much smaller (libjpeg's
  shrink-on-load): a 24 MP photo is never decoded at full size for a thumbnail (a progressive
  one still holds all its DCT coefficients while it decodes: 70 MB for 24 MP).
- written: the format ``VariantSpec.output_format`` says, lossy ones at ``output_quality``.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import IO, Final

from PIL import ExifTags, Image, ImageCms, UnidentifiedImageError

from ..domain.variants import Layout, VariantSpec
from ..errors import BadUserInput, DomainError

HEAD_BYTES: Final = 64 * 1024  # what ``probe`` is given: headers, EXIF and ICC fit in it
READ_FORMATS: Final = ("JPEG", "PNG", "GIF", "WEBP", "BMP")  # Pillow's names (JPEG reads MPO)
REDUCING_GAP: Final = 3.0  # Pillow's fast integer shrink first, Lanczos for the last 3x
_NAMES: Final = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}
_SAVE: Final = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
_TRANSPOSE: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_WHITE: Final = (255, 255, 255)
_PNG_CHANNELS: Final = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
# Adam7's seven passes: (first column, first row, column step, row step)
_ADAM7: Final = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
_INFLATE_CHUNK: Final = 256 * 1024


@dataclass(frozen=True)
class ImageInfo:
    """What an image's header says: its size as stored (before EXIF orientation), its format
    (``jpeg``, ``png``, ``gif``, ``webp``, ``bmp``) and whether it has more than one frame."""

    width: int
    height: int
    format: str
    animated: bool

    @property
    def pixels(self) -> int:
        return self.width * self.height


def probe(head: bytes) -> ImageInfo | None:
    """What the first bytes of a file (``HEAD_BYTES`` of them) say of the image, without
    decoding pixels; None when they are not the start of an image ``make_variant`` reads (or
    declare more than Pillow opens at all). A GIF is ``animated`` when a second frame or a loop
    count shows within ``head``."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _probe_webp(head)  # Pillow reads a WebP only whole
    try:
        with Image.open(io.BytesIO(head), formats=READ_FORMATS) as image:
            return ImageInfo(image.width, image.height, _name(image), _animated(image))
    except Exception:  # whatever Pillow makes of a file that is not an image: not one
        return None


def make_variant(source: IO[bytes] | bytes, spec: VariantSpec, *, max_pixels: int) -> bytes:
    """The variant ``spec`` of the image in ``source`` (a seekable file, or bytes), encoded
    in ``spec.output_format`` of the original's format. ``BadUserInput`` for a file that is not
    an image read here, one past ``max_pixels``, or one that does not decode."""
    file = io.BytesIO(source) if isinstance(source, bytes) else source
    file.seek(0)
    with _translated(max_pixels):
        with Image.open(file, formats=READ_FORMATS) as image:
            if image.width * image.height > max_pixels:
                raise _too_large(max_pixels, image.size)
            if image.format == "PNG":
                _check_png_data(file)
            fmt = spec.output_format(_name(image))
            variant = _resized(image, spec)
        return _encode(variant, fmt, spec.output_quality(fmt))


def _resized(image: Image.Image, spec: VariantSpec) -> Image.Image:
    """Cut, resize, turn upright and convert to sRGB, as ``spec.layout`` says."""
    orientation = _orientation(image)
    icc = image.info.get("icc_profile")
    layout = spec.layout(image.width, image.height, transposed=orientation in (5, 6, 7, 8))
    crop = _shrink_on_load(image, layout)
    image.load()  # here, so that a failure refuses the file: a second load sees a half image
    if image.mode == "CMYK":  # a CMYK profile converts before resizing: there is no CMYK out
        pixels, icc = _to_srgb(image, icc, "RGB") or image.convert("RGB"), None
    else:
        pixels = _normalised(image)
    resized = pixels.resize(
        layout.size, Image.Resampling.LANCZOS, box=crop, reducing_gap=REDUCING_GAP
    )
    if orientation in _TRANSPOSE:
        resized = resized.transpose(_TRANSPOSE[orientation])
    if icc and resized.mode in ("RGB", "RGBA"):
        resized = _to_srgb(resized, icc, resized.mode) or resized
    return resized


def _shrink_on_load(image: Image.Image, layout: Layout) -> tuple[float, float, float, float]:
    """Have a JPEG decode at the smallest of 1/8, 1/4, 1/2 or full size that still holds the
    variant's pixels; the crop box, in the pixels it will decode to."""
    left, top, right, bottom = layout.crop
    if image.format not in ("JPEG", "MPO"):
        return layout.crop
    scale_x, scale_y = layout.size[0] / (right - left), layout.size[1] / (bottom - top)
    wanted = (math.ceil(image.width * scale_x), math.ceil(image.height * scale_y))
    full_width = image.width
    drafted = image.draft(image.mode, wanted)
    if drafted is None:
        return layout.crop
    factor = drafted[1][2] / full_width  # exactly 1/s: the decoded size is rounded up
    return (left * factor, top * factor, right * factor, bottom * factor)


def _normalised(image: Image.Image) -> Image.Image:
    """The image in a mode that resizes and encodes as it looks: L, RGB or RGBA."""
    mode = image.mode
    if mode in ("L", "RGB", "RGBA"):
        return image
    if mode.startswith("I;16") or mode == "I":  # 16-bit grey: scale, do not clip
        return image.convert("I").point(lambda value: value * (1 / 257)).convert("L")
    if mode == "1":
        return image.convert("L")
    return image.convert("RGBA" if image.has_transparency_data else "RGB")  # P, PA, LA, ...


def _to_srgb(image: Image.Image, icc: bytes | None, mode: str) -> Image.Image | None:
    """The pixels converted from the embedded profile to sRGB; None without a usable profile."""
    if not icc:
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(image, profile, _srgb(), outputMode=mode)
    except (ImageCms.PyCMSError, OSError, ValueError):  # a broken profile: keep the pixels
        return None


@cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _encode(image: Image.Image, fmt: str, quality: int | None) -> bytes:
    """The pixels alone in ``fmt``: nothing of the original's metadata rides along."""
    if fmt == "jpeg" and image.mode not in ("L", "RGB"):
        image = _flattened(image)
    image.info = {}  # Pillow's PNG writer would copy an ICC profile from here
    buffer = io.BytesIO()
    if quality is None:
        image.save(buffer, _SAVE[fmt])
    else:
        image.save(buffer, _SAVE[fmt], quality=quality)
    return buffer.getvalue()


def _flattened(image: Image.Image) -> Image.Image:
    """Alpha composited onto white (JPEG has no alpha; white is what a page shows behind)."""
    rgba = image.convert("RGBA")
    background = Image.new("RGB", image.size, _WHITE)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8); 1 when there is none, or the EXIF block does not parse
    (as browsers do: a broken block is no reason to refuse the pixels)."""
    if image.format == "PNG":
        image.load()  # Pillow looks past a PNG's pixels for its EXIF: decode them, unguarded
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (OSError, ValueError, SyntaxError, struct.error, TypeError, KeyError):
        return 1
    return value if value in _TRANSPOSE else 1


def _name(image: Image.Image) -> str:
    return _NAMES.get(image.format or "", (image.format or "").lower())


def _animated(image: Image.Image) -> bool:
    try:
        animated = bool(getattr(image, "is_animated", False))
    except (OSError, EOFError, ValueError, SyntaxError, struct.error):
        animated = False  # a header cut short: the second frame is past it
    return animated or (image.format == "GIF" and "loop" in image.info)


def _probe_webp(head: bytes) -> ImageInfo | None:
    """A WebP's size from its first chunk (VP8X canvas, or a still VP8/VP8L frame)."""
    kind, payload = head[12:16], head[20:50]
    if kind == b"VP8X" and len(payload) >= 10:
        width = int.from_bytes(payload[4:7], "little") + 1
        height = int.from_bytes(payload[7:10], "little") + 1
        return ImageInfo(width, height, "webp", bool(payload[0] & 0x02))
    if kind == b"VP8 " and len(payload) >= 10 and payload[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", payload[6:10])
        return ImageInfo(width & 0x3FFF, height & 0x3FFF, "webp", False)
    if kind == b"VP8L" and len(payload) >= 5 and payload[0] == 0x2F:
        bits = int.from_bytes(payload[1:5], "little")
        return ImageInfo((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, "webp", False)
    return None


def _check_png_data(file: IO[bytes]) -> None:
    """Refuse a PNG whose IDAT chunks do not inflate to exactly the bytes its IHDR declares.
    Reads the file once more, holding at most ``_INFLATE_CHUNK`` of output at a time."""
    file.seek(0)
    start = file.read(33)  # signature, then the IHDR chunk (Pillow checked they are there)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", start[16:29])
    expected = _png_data_size(width, height, depth * _PNG_CHANNELS.get(colour, 4), interlace)
    inflater = zlib.decompressobj()
    produced, in_data = 0, False
    while len(chunk := file.read(8)) == 8:
        length, kind = struct.unpack(">I4s", chunk)
        if kind != b"IDAT":
            if in_data:
                break  # the image data is over (IDAT chunks are consecutive)
            file.seek(length + 4, io.SEEK_CUR)
            continue
        in_data = True
        data = file.read(length)
        file.seek(4, io.SEEK_CUR)  # the CRC: Pillow checks it
        while data and produced <= expected:
            produced += len(inflater.decompress(data, _INFLATE_CHUNK))
            data = inflater.unconsumed_tail
    while produced <= expected and (rest := inflater.decompress(b"", _INFLATE_CHUNK)):
        produced += len(rest)
    if produced != expected or not inflater.eof:
        raise BadUserInput(
            f"the PNG's data does not match its declared {width} x {height} pixels "
            "(truncated, or the header lies about the size)",
            reason="CORRUPT_IMAGE",
        )
    file.seek(0)


def _png_data_size(width: int, height: int, bits_per_pixel: int, interlace: int) -> int:
    """Bytes a PNG's image data inflates to: per row, a filter byte and the packed pixels
    (for an interlaced one, per row of each of the seven Adam7 passes that has pixels)."""
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    total = 0
    for first_column, first_row, column_step, row_step in passes:
        columns = (width - first_column + column_step - 1) // column_step
        rows = (height - first_row + row_step - 1) // row_step
        if columns > 0 and rows > 0:
            total += rows * (1 + (columns * bits_per_pixel + 7) // 8)
    return total


def _too_large(max_pixels: int, size: tuple[int, int] | None = None) -> BadUserInput:
    declared = f"{size[0]:,} x {size[1]:,} pixels, more than" if size else "more than"
    return BadUserInput(
        f"the image declares {declared} the {max_pixels:,} pixels the server resizes",
        reason="IMAGE_TOO_LARGE",
        maxPixels=max_pixels,
    )


@contextmanager
def _translated(max_pixels: int) -> Iterator[None]:
    """Pillow's exceptions as ``BadUserInput``: it reports hostile input with many types
    (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, ...)."""
    try:
        yield
    except (DomainError, MemoryError):
        raise  # our own refusals; and running out of memory is the server's trouble
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_large(max_pixels) from exc
    except UnidentifiedImageError as exc:
        raise BadUserInput(
            "the file is not an image the server resizes (JPEG, PNG, GIF, WebP or BMP)",
            reason="NOT_AN_IMAGE",
        ) from exc
    except Exception as exc:
        raise BadUserInput(
            "the image does not decode: it is truncated or corrupt", reason="CORRUPT_IMAGE"
        ) from exc
