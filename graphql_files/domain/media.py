"""Content types: which are accepted, and whether a file's bytes agree with the declared one.

A declared type must be a well-formed media type (RFC 9110: ``type/subtype`` tokens, optional
``; name=value`` parameters): anything else (CR/LF, NUL, spaces inside, ``image/*``) is
``BAD_USER_INPUT`` before it can reach an S3 header. The bytes decide what is stored: the
magic-number check uses ``filetype`` (plus a small SVG sniff, which ``filetype`` lacks) on the
first bytes; a declared type that can be recognised must be recognised, and one that cannot
must not be contradicted by bytes that look like something else. An image Pillow can decode must
then open and ``verify()`` as that format (``verify_image``, to be run off the event loop).

Types a browser runs scripts in when it renders them inline (SVG, HTML, XML) never match a
wildcard such as ``image/*``: only an entry naming them admits them, and they are then stored
with ``Content-Disposition: attachment`` so that a browser downloads rather than renders them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fnmatch import fnmatchcase
from functools import cache
from typing import IO

import filetype
from PIL import Image

from ..errors import BadUserInput, UnsupportedMediaType, excerpt

SNIFF_BYTES = 4096  # enough for filetype's signatures and an SVG's prolog
MAX_LENGTH = 255  # RFC 6838 allows 127 for each of type and subtype
UNDECLARED = frozenset({"", "application/octet-stream", "binary/octet-stream"})
SCRIPTABLE = frozenset(
    {"image/svg+xml", "text/html", "application/xhtml+xml", "text/xml", "application/xml"}
)
ATTACHMENT = "attachment"
_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/apng": "image/png",
    "image/vnd.microsoft.icon": "image/x-icon",
    "audio/mp3": "audio/mpeg",
    "audio/wav": "audio/x-wav",
    "audio/wave": "audio/x-wav",
    "audio/vnd.wave": "audio/x-wav",
    "audio/flac": "audio/x-flac",
    "audio/m4a": "audio/mp4",
    "audio/x-m4a": "audio/mp4",
    "audio/aiff": "audio/x-aiff",
}
_RECOGNISABLE = frozenset(_ALIASES.get(t.mime, t.mime) for t in filetype.types)

_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[\t !#-\[\]-~]|\\[\t -~])*"'
_MEDIA_TYPE = re.compile(
    rf"({_TCHARS})/({_TCHARS})(?:[ \t]*;[ \t]*(?:{_TCHARS}=(?:{_TCHARS}|{_QUOTED}))?)*"
)
_SVG_ROOT = re.compile(rb"<svg[\s/>]", re.IGNORECASE)


def normalize(content_type: str) -> str:
    base = content_type.split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base)


def parse(content_type: str) -> str:
    """The normalized ``type/subtype`` of a well-formed media type; ``BadUserInput`` otherwise
    (a malformed type would be refused by S3 as a header, or stored for browsers to guess at)."""
    stripped = content_type.strip(" \t")
    matched = _MEDIA_TYPE.fullmatch(stripped) if len(stripped) <= MAX_LENGTH else None
    if matched is None or "*" in matched[1] + matched[2]:
        raise BadUserInput(
            f"content type {excerpt(content_type)} is not a media type such as image/png",
            argument="contentType",
        )
    return normalize(stripped)


def is_allowed(content_type: str, patterns: Sequence[str]) -> bool:
    """Does a pattern admit the type? Scriptable types only by an entry that names them."""
    normalized = normalize(content_type)
    if normalized in SCRIPTABLE:
        return any(normalize(p) == normalized for p in patterns)
    return any(fnmatchcase(normalized, p.lower()) for p in patterns)


def check_content_type(content_type: str, patterns: Sequence[str]) -> str:
    normalized = parse(content_type)
    if not is_allowed(normalized, patterns):
        raise UnsupportedMediaType(
            f"content type {excerpt(normalized)} is not accepted; allowed: {', '.join(patterns)}",
            allowed=list(patterns),
        )
    return normalized


def sniff(head: bytes) -> str | None:
    """The type the first bytes of a file show, if they show one."""
    found = filetype.guess_mime(head)
    if found:
        return normalize(found)
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"<") and _SVG_ROOT.search(text):
        return "image/svg+xml"
    return None


def check_upload(declared: str | None, head: bytes, patterns: Sequence[str]) -> str:
    """The content type to store for a file whose first bytes are ``head``.

    Raises ``BadUserInput`` for a malformed declared type, and ``UnsupportedMediaType`` when
    the type is not allowed or the bytes contradict it.
    """
    detected = sniff(head)
    claimed = parse(declared) if declared else None
    if claimed in UNDECLARED:
        claimed = None  # what clients send when they do not know: go by the bytes
    content_type = check_content_type(claimed or detected or "application/octet-stream", patterns)
    if detected != content_type and (detected is not None or content_type in _RECOGNISABLE):
        looks_like = detected or "none of the recognised formats"
        raise UnsupportedMediaType(
            f"the file is declared as {content_type} but its bytes look like {looks_like}",
            declared=content_type,
            detected=detected,
        )
    return content_type


def disposition(content_type: str) -> str | None:
    """The ``Content-Disposition`` to store an object of this (checked) type with."""
    return ATTACHMENT if content_type in SCRIPTABLE else None


@cache
def _pillow_formats() -> dict[str, list[str]]:
    """Image types Pillow can open, and its format names for each (plugins load on first use)."""
    Image.init()
    formats: dict[str, list[str]] = {}
    for name in Image.OPEN:
        mime = Image.MIME.get(name)
        if mime is not None and mime.startswith("image/"):
            formats.setdefault(normalize(mime), []).append(name)
    return formats


def decodable(content_type: str) -> bool:
    """Is this a type whose files ``verify_image`` checks?"""
    return content_type in _pillow_formats()


def verify_image(file: IO[bytes], content_type: str) -> None:
    """Refuse a file that does not open and verify as an image of ``content_type`` (a valid
    signature followed by anything else, say). Blocking: run it in a thread."""
    formats = _pillow_formats().get(content_type)
    if not formats:
        return
    file.seek(0)
    try:
        with Image.open(file, formats=formats) as image:
            image.verify()
    except Exception as exc:  # Pillow reports hostile input with many exception types
        raise UnsupportedMediaType(
            f"the file does not decode as {content_type}", declared=content_type
        ) from exc
    finally:
        file.seek(0)
