"""S3 object keys: what a valid key is, where a record's files live, and safe file names.

Every key that reaches S3 passed ``check_key``. A record's folder is
``<ATTACHMENT_PREFIX><TypeName>/<record id>/`` (two models may share an id, never a folder);
files uploaded by a workflow get
``<folder><32 hex digits>-<safe file name>``, a new key for every upload, so a replacement never
overwrites an object another client may still be reading.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from pathlib import PurePosixPath, PureWindowsPath

from ..errors import BadUserInput

MAX_KEY_BYTES = 1024
MAX_FILE_NAME = 100
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def check_key(key: str, *, what: str = "path", folder: bool = False) -> str:
    """A valid object key (or, with ``folder``, a prefix that may end in '/' or be empty)."""
    if not key and not folder:
        raise BadUserInput(f"{what} must not be empty")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise BadUserInput(f"{what} is longer than {MAX_KEY_BYTES} bytes")
    if _CONTROL.search(key):
        raise BadUserInput(f"{what} contains control characters")
    if key.startswith("/"):
        raise BadUserInput(f"{what} must not start with '/'")
    segments = key.split("/")
    if folder and segments[-1] == "":
        segments = segments[:-1]
    for segment in segments:
        if segment == "":
            raise BadUserInput(f"{what} has an empty segment ('//' or a trailing '/')")
        if segment in (".", ".."):
            raise BadUserInput(f"{what} must not contain '.' or '..' segments")
    return key


def safe_file_name(name: str | None) -> str:
    """A file name reduced to ``[A-Za-z0-9._-]``, at most 100 characters, extension kept (a
    name whose stem has no safe character left, such as ``日本.jpg``, becomes ``file.jpg``)."""
    base = PureWindowsPath(PurePosixPath(name or "").name).name  # drop folders, / or \
    ascii_name = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    cleaned = _UNSAFE.sub("-", ascii_name).strip(".-_")
    stem, dot, _ = base.rpartition(".")
    extension = _UNSAFE.sub("", ascii_name.rpartition(".")[2])
    if dot and stem and 0 < len(extension) <= 10 and cleaned in ("", extension):
        return f"file.{extension}"
    if not cleaned:
        return "file"
    if len(cleaned) > MAX_FILE_NAME:
        stem, dot, extension = cleaned.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            cleaned = f"{stem[: MAX_FILE_NAME - len(extension) - 1]}.{extension}"
        else:
            cleaned = cleaned[:MAX_FILE_NAME]
    return cleaned


def record_folder(prefix: str, type_name: str, record_id: str) -> str:
    """The folder a record owns: ``images/Song/<record id>/``."""
    return check_key(f"{prefix}{type_name}/{record_id}/", what="record folder", folder=True)


def folder_model(prefix: str, path: str) -> str | None:
    """The model whose record folders ``path`` lies in (``images/Song/<id>/...`` -> Song);
    None outside ``prefix``, or with no record folder under the model's."""
    if not path.startswith(prefix):
        return None
    type_name, slash, rest = path[len(prefix) :].partition("/")
    return type_name if slash and rest else None


def new_attachment_key(folder: str, file_name: str | None) -> str:
    """A fresh key inside a record's folder for one upload."""
    return check_key(f"{folder}{uuid.uuid4().hex}-{safe_file_name(file_name)}")


def in_folder(key: str, folder: str) -> bool:
    return key.startswith(folder) and len(key) > len(folder)
