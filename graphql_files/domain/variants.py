"""Image variants: what a declared variant is, how it is laid out, and where its object lives.

A variant is a resized copy of an uploaded image that the server makes (DESIGN.md, "Image
variants"). This module is pure: ``adapters.images`` does the pixels, following the ``Layout``
and the output format decided here.

Keys. The variant ``thumb`` (webp) of ``images/Song/<id>/<32 hex>-cover.jpg`` is
``images/Song/<id>/.variants/<32 hex>-cover.jpg/thumb.webp``: beside its original, in the same
record folder (the folder's owner owns its variants; deleting ``variants_prefix(original)``
removes them all). A variant key has a ``.variants`` segment with two segments after it. A key
the server makes for an upload (``object_keys.new_attachment_key``) never has: its last two
segments are the record id and the file name, and everything before is ``ATTACHMENT_PREFIX``
and the model's name (a record may even be called ``.variants``). So no upload key is a variant
key, and ``original_of`` maps a variant back to exactly one original. A path a client chooses
(``uploadFile``, ``createUploadUrl``, then ``uploadedPath``) may be any valid key: the
namespace stays the server's only if a client's write to a key ``is_variant_key`` accepts is
refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from .object_keys import MAX_KEY_BYTES

FITS: Final = frozenset({"cover", "contain"})
FORMATS: Final = frozenset({"jpeg", "png", "webp"})
LOSSY: Final = frozenset({"jpeg", "webp"})
DEFAULT_QUALITY: Final = 80
FALLBACK_FORMAT: Final = "webp"  # for originals in other formats (GIF, BMP): small, keeps alpha
MAX_SIDE: Final = 10_000
VARIANTS_SEGMENT: Final = ".variants"
_KEYS: Final = ("width", "height", "fit", "format", "quality")
_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
_EXTENSIONS: Final = {"jpeg": "jpg", "png": "png", "webp": "webp"}
_CONTENT_TYPES: Final = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_VARIANT_KEY: Final = re.compile(
    rf"(?P<folder>(?:.*/)?){re.escape(VARIANTS_SEGMENT)}/(?P<file>[^/]+)/"
    rf"(?P<name>{_NAME.pattern})\.(?P<ext>jpg|png|webp)"
)


@dataclass(frozen=True)
class Layout:
    """How a variant is cut from an image: the ``crop`` box (left, top, right, bottom, in the
    image's pixels, fractional when centring needs it) resized to ``size`` (width, height)."""

    crop: tuple[float, float, float, float]
    size: tuple[int, int]


@dataclass(frozen=True)
class VariantSpec:
    """One declared variant; constructing it checks it (``ValueError`` saying what is wrong)."""

    name: str
    width: int | None
    height: int | None
    fit: str = "contain"
    format: str | None = None  # None: the original's (see ``output_format``)
    quality: int | None = None  # None: DEFAULT_QUALITY for lossy formats

    def __post_init__(self) -> None:
        where = f"variant {self.name!r}"
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(
                f"{where}: a variant name is a letter then up to 31 letters, digits, '_' or '-'"
            )
        if self.width is None and self.height is None:
            raise ValueError(f"{where}: give a width, a height or both")
        for what, side in (("width", self.width), ("height", self.height)):
            if side is not None and (not _is_int(side) or not 0 < side <= MAX_SIDE):
                raise ValueError(f"{where}: {what} must be an integer from 1 to {MAX_SIDE}")
        if self.fit not in FITS:
            raise ValueError(f"{where}: fit must be 'cover' or 'contain', not {self.fit!r}")
        # cover crops to the box's shape: with a side missing there is no shape to crop to
        if self.fit == "cover" and (self.width is None or self.height is None):
            raise ValueError(f"{where}: fit 'cover' needs both a width and a height")
        if self.format is not None and self.format not in FORMATS:
            raise ValueError(
                f"{where}: format must be 'jpeg', 'png' or 'webp', not {self.format!r}"
            )
        if self.quality is not None and (not _is_int(self.quality) or not 1 <= self.quality <= 100):
            raise ValueError(f"{where}: quality must be an integer from 1 to 100")

    @classmethod
    def parse(cls, name: str, table: Mapping[str, object]) -> VariantSpec:
        """A variant from its declaration (``{ width = 256, fit = "cover" }``)."""
        unknown = sorted(str(key) for key in table if key not in _KEYS)
        if unknown:
            raise ValueError(
                f"variant {name!r}: unknown key(s) {', '.join(unknown)} "
                f"(expected {', '.join(_KEYS)})"
            )
        for key in ("fit", "format"):
            if key in table and not isinstance(table[key], str):
                raise ValueError(f"variant {name!r}: {key} must be a string")
        return cls(
            name=name,
            width=table.get("width"),  # type: ignore[arg-type]  # __post_init__ checks them
            height=table.get("height"),  # type: ignore[arg-type]
            fit=str(table.get("fit", "contain")),
            format=table.get("format"),  # type: ignore[arg-type]
            quality=table.get("quality"),  # type: ignore[arg-type]
        )

    def output_format(self, original: str) -> str:
        """The variant's format for an original in ``original`` (lower-case, as ``probe`` says):
        the declared one, else the original's when it is one of ``FORMATS``, else webp."""
        if self.format is not None:
            return self.format
        return original if original in FORMATS else FALLBACK_FORMAT

    def output_quality(self, fmt: str) -> int | None:
        """The encoder quality for ``fmt``: None for lossless formats."""
        return (self.quality or DEFAULT_QUALITY) if fmt in LOSSY else None

    def layout(self, width: int, height: int, *, transposed: bool = False) -> Layout:
        """Where to crop a ``width`` x ``height`` image and what size to make it.

        ``contain`` fits the whole image inside the box; ``cover`` crops the centre of the image
        to the box's aspect ratio, then scales it to the box. Neither ever enlarges: an image
        smaller than the box keeps its scale (``cover`` of a 100x80 image into 256x256 is its
        centred 80x80). ``transposed``: the image is stored turned a quarter (EXIF orientation
        5-8) and turned upright after resizing, so the box is turned to match it.
        """
        box_w, box_h = (self.height, self.width) if transposed else (self.width, self.height)
        if self.fit == "cover" and box_w is not None and box_h is not None:
            if width * box_h > height * box_w:  # wider than the box: cut the sides
                crop_w, crop_h = height * box_w / box_h, float(height)
            else:
                crop_w, crop_h = float(width), width * box_h / box_w
            scale = min(1.0, box_w / crop_w)
            left, top = (width - crop_w) / 2, (height - crop_h) / 2
            return Layout(
                crop=(left, top, left + crop_w, top + crop_h),
                size=(_side(crop_w * scale, box_w), _side(crop_h * scale, box_h)),
            )
        scale = min(1.0, *(b / s for b, s in ((box_w, width), (box_h, height)) if b is not None))
        return Layout(
            crop=(0.0, 0.0, float(width), float(height)),
            size=(_side(width * scale, box_w), _side(height * scale, box_h)),
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # TOML's true is not 1


def _side(exact: float, bound: int | None) -> int:
    """A rounded side, at least 1 pixel and never past the box's side."""
    rounded = max(1, round(exact))
    return rounded if bound is None else min(rounded, bound)


# the built-in declaration's, for Song.coverArt and PhotoAlbum.images
THUMB: Final = VariantSpec("thumb", 256, 256, "cover", "webp", None)


def content_type_of(fmt: str) -> str:
    """The media type a variant in ``fmt`` (``jpeg``, ``png``, ``webp``) is stored with."""
    try:
        return _CONTENT_TYPES[fmt]
    except KeyError:
        raise ValueError(f"no variant format {fmt!r}") from None


def extension_of(fmt: str) -> str:
    """The file extension of a variant in ``fmt``: ``jpg``, ``png`` or ``webp``."""
    try:
        return _EXTENSIONS[fmt]
    except KeyError:
        raise ValueError(f"no variant format {fmt!r}") from None


def variants_prefix(original_key: str) -> str:
    """The folder holding every variant of ``original_key`` (delete it with the original)."""
    folder, slash, file = original_key.rpartition("/")
    return f"{folder}{slash}{VARIANTS_SEGMENT}/{file}/"


def variant_key(original_key: str, name: str, fmt_ext: str) -> str:
    """The key of variant ``name`` of ``original_key``, with extension ``fmt_ext`` (see
    ``extension_of``); ``ValueError`` for a variant key as original, or a key past S3's
    1,024 bytes (an original chosen by a client within 50 bytes of the limit)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a variant name")
    if fmt_ext not in _EXTENSIONS.values():
        raise ValueError(f"{fmt_ext!r} is not a variant extension (jpg, png, webp)")
    if not original_key or original_key.endswith("/") or is_variant_key(original_key):
        raise ValueError(f"{original_key!r} is not the key of an original")
    key = f"{variants_prefix(original_key)}{name}.{fmt_ext}"
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"the variant key of {original_key!r} would pass {MAX_KEY_BYTES} bytes")
    return key


def is_variant_key(key: str) -> bool:
    """Is ``key`` in the variants' namespace (a ``.variants`` segment with at least two after
    it)? The server's alone: a client's write, upload or ``uploadedPath`` there is to be
    refused."""
    return VARIANTS_SEGMENT in key.split("/")[:-2]


def original_of(key: str) -> str | None:
    """The original a variant key belongs to; None for any other key (including one in the
    namespace that ``variant_key`` does not make)."""
    matched = _VARIANT_KEY.fullmatch(key)
    if matched is None or is_variant_key(matched["folder"] + matched["file"]):
        return None
    return matched["folder"] + matched["file"]


# What a variant is made from: a key whose name ends in one of these is an image the server
# resizes (the workflows make sure its bytes are one: see ``services.variants``); any other key
# has no variants. Decided from the key alone, so a URL of a variant is signed without asking S3.
IMAGE_EXTENSIONS: Final = {
    "jpg": "jpeg",
    "jpeg": "jpeg",
    "jpe": "jpeg",
    "png": "png",
    "gif": "gif",
    "webp": "webp",
    "bmp": "bmp",
}


def image_format_of(key: str) -> str | None:
    """The image format a key's file name says (``jpeg`` for ``a.JPG``); None for any other."""
    name = key.rpartition("/")[2]
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem:
        return None
    return IMAGE_EXTENSIONS.get(extension.lower())


def key_of(spec: VariantSpec, original_key: str) -> str:
    """Where variant ``spec`` of ``original_key`` lives: its format is the declared one, else
    the one the original's name says (``output_format``), so the key follows from the
    original's key and the declaration alone."""
    fmt = spec.output_format(image_format_of(original_key) or "")
    return variant_key(original_key, spec.name, extension_of(fmt))
