"""Content types: syntax, the SVG rule, sniffing and decoding, without a server."""

from __future__ import annotations

import io

import pytest

from graphql_files.domain import media
from graphql_files.errors import BadUserInput, UnsupportedMediaType

from ..helpers import JPEG, MP3, PNG

DEFAULT = ("image/*", "audio/*")
SVG = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4">'
    b"<script>alert(document.domain)</script></svg>"
)


@pytest.mark.parametrize(
    "value",
    [
        "image/ text/html",
        "image/png\r\nx-amz-meta-evil: 1",
        "image/png\n",
        "image/png\x00",
        "image",
        "/png",
        "image/",
        "image/png/x",
        "image/png; charset",
        'image/png; name="unterminated',
        "image/*",
        "*/*",
        "imáge/png",
    ],
)
def test_malformed_media_types_are_bad_input(value: str) -> None:
    with pytest.raises(BadUserInput):
        media.parse(value)
    with pytest.raises(BadUserInput):
        media.check_content_type(value, DEFAULT)
    with pytest.raises(BadUserInput):
        media.check_upload(value, PNG, DEFAULT)


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("image/png", "image/png"),
        ("IMAGE/PNG", "image/png"),
        ("image/jpg", "image/jpeg"),
        ("image/png ; q=1", "image/png"),
        ('image/png; name="a b; c"', "image/png"),
        ("audio/mpeg;", "audio/mpeg"),
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", None),
    ],
)
def test_valid_media_types_parse_to_their_base(value: str, parsed: str | None) -> None:
    assert media.parse(value) == (parsed or value)


def test_errors_do_not_echo_a_huge_content_type() -> None:
    with pytest.raises(BadUserInput) as refused:
        media.parse("image/" + "a" * 100_000)
    assert len(refused.value.message) < 300
    with pytest.raises(UnsupportedMediaType) as unsupported:
        media.check_content_type("text/" + "b" * 120, DEFAULT)
    assert len(unsupported.value.message) < 300


def test_svg_never_matches_a_wildcard() -> None:
    assert not media.is_allowed("image/svg+xml", ["image/*"])
    assert not media.is_allowed("image/svg+xml", ["*/*", "*"])
    assert media.is_allowed("image/svg+xml", ["image/*", "image/svg+xml"])
    assert media.is_allowed("image/png", ["image/*"])


@pytest.mark.parametrize(
    "head",
    [
        SVG,
        b"\xef\xbb\xbf  \n<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"<!-- made by hand -->\n<!DOCTYPE svg>\n<SVG viewBox='0 0 1 1'></SVG>",
    ],
)
def test_svg_is_sniffed(head: bytes) -> None:
    assert media.sniff(head) == "image/svg+xml"


def test_other_bytes_are_not_svg() -> None:
    assert media.sniff(PNG) == "image/png"
    assert media.sniff(b"<html><body>no vector here</body></html>") is None
    assert media.sniff(b"plain text that mentions <svg") is None


@pytest.mark.parametrize(
    "declared", [None, "image/svg+xml", "image/png", "application/octet-stream"]
)
def test_svg_is_refused_under_the_defaults(declared: str | None) -> None:
    with pytest.raises(UnsupportedMediaType):
        media.check_upload(declared, SVG, DEFAULT)


def test_an_explicitly_listed_svg_is_stored_as_an_attachment() -> None:
    allowed = (*DEFAULT, "image/svg+xml")
    assert media.check_upload(None, SVG, allowed) == "image/svg+xml"
    assert media.check_upload("application/octet-stream", SVG, allowed) == "image/svg+xml"
    with pytest.raises(UnsupportedMediaType):
        media.check_upload("image/png", SVG, allowed)  # the bytes decide
    assert media.disposition("image/svg+xml") == "attachment"
    assert media.disposition("image/png") is None


def test_the_stored_type_is_the_sniffed_one() -> None:
    assert media.check_upload("image/jpg; q=0.5", JPEG, DEFAULT) == "image/jpeg"
    assert media.check_upload(None, MP3, DEFAULT) == "audio/mpeg"
    with pytest.raises(UnsupportedMediaType):
        media.check_upload("image/png", JPEG, DEFAULT)


def test_only_formats_pillow_decodes_are_verified() -> None:
    assert media.decodable("image/png")
    assert media.decodable("image/jpeg")
    assert not media.decodable("audio/mpeg")
    assert not media.decodable("image/svg+xml")


def test_real_images_verify() -> None:
    for data, kind in ((PNG, "image/png"), (JPEG, "image/jpeg")):
        file = io.BytesIO(data)
        media.verify_image(file, kind)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>", "image/png"),
        (PNG[:40], "image/png"),  # truncated
        (PNG[:-12] + b"<script>alert(1)</script>", "image/png"),  # IEND replaced
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00<html><script>alert(1)</script>", "image/jpeg"),
        (JPEG, "image/png"),  # decodes, but not as what it claims to be
    ],
)
def test_undecodable_images_are_refused(data: bytes, kind: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        media.verify_image(io.BytesIO(data), kind)
