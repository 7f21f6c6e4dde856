"""Content types: which are accepted, and whether a file's bytes agree with the declared one.

The magic-number check uses ``filetype`` on the first bytes of the file. A declared type that
``filetype`` knows how to recognise must be recognised; a type it cannot recognise (SVG, say)
must not be contradicted by bytes that look like something else.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

import filetype

from .errors import UnsupportedMediaType

SNIFF_BYTES = 261  # what filetype reads
UNDECLARED = frozenset({"", "application/octet-stream", "binary/octet-stream"})
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


def normalize(content_type: str) -> str:
    base = content_type.split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base)


def is_allowed(content_type: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(normalize(content_type), p.lower()) for p in patterns)


def check_content_type(content_type: str, patterns: Sequence[str]) -> str:
    normalized = normalize(content_type)
    if "/" not in normalized or not is_allowed(normalized, patterns):
        raise UnsupportedMediaType(
            f"content type {content_type!r} is not accepted; allowed: {', '.join(patterns)}",
            allowed=list(patterns),
        )
    return normalized


def check_upload(declared: str | None, head: bytes, patterns: Sequence[str]) -> str:
    """The content type to store for a file whose first bytes are ``head``.

    Raises ``UnsupportedMediaType`` when the type is not allowed or the bytes contradict it.
    """
    sniffed = filetype.guess_mime(head)
    detected = normalize(sniffed) if sniffed else None
    if declared is not None and normalize(declared) in UNDECLARED:
        declared = None  # what clients send when they do not know: go by the bytes
    content_type = check_content_type(declared or detected or "application/octet-stream", patterns)
    if detected != content_type and (detected is not None or content_type in _RECOGNISABLE):
        looks_like = detected or "none of the recognised formats"
        raise UnsupportedMediaType(
            f"the file is declared as {content_type} but its bytes look like {looks_like}",
            declared=content_type,
            detected=detected,
        )
    return content_type
