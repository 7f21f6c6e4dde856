"""Models declared the way a user declares their own, so that the tests that run over the
built-in Song and PhotoAlbum run over these too: a model declared tomorrow is covered by the
same tests.

- ``Post``: one file field with its own types and size, an enum and a list of strings;
- ``Dossier``: a many-file field that accepts PDFs, not images;
- ``Track``: several file fields (two one-file, one many-file) and its own id argument;
- relations: a ``Post`` may belong to a ``Dossier``, whose delete carries its posts away.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from graphql_files.domain.declaration import parse_declaration
from graphql_files.domain.models import FieldType, FileSpec, ModelSpec
from graphql_files.settings import Settings

from .helpers import MP3, PNG

DECLARED_TEXT = """\
[enums.Status]
values = ["DRAFT", "LIVE"]

[models.Post]
fields.title = "String!"
fields.tags = "[String!]"
fields.status = "Status"
fields.rating = "Float"
fields.pinned = "Boolean"
files.image = { one = "imagePath", types = ["image/*"], max_bytes = 65536 }
fields.dossierId = "ID"
relations.dossier = { belongs_to = "Dossier", references = "dossierId" }

[models.Dossier]
noun = "dossier"
fields.name = "String!"
fields.pages = "Int"
files.documents = { many = "documentPaths", singular = "Document", types = ["application/pdf"] }
relations.posts = { has_many = "Post", references = "dossierId", on_delete = "cascade" }

[models.Track]
id_argument = "trackKey"
fields.title = "String!"
fields.released = "DateTime"
files.audio = { one = "audioPath", types = ["audio/*"] }
files.artwork = { one = "artworkPath", types = ["image/*"], max_bytes = 32768 }
files.stems = { many = "stemPaths", singular = "Stem", types = ["audio/*"] }
"""
DECLARED = parse_declaration(DECLARED_TEXT, "tests/declared.py")

# The README's blog (DESIGN.md's relations): a Post with an image and comments, a Comment with an
# attachment, a User with a profile picture and a Profile.
BLOG_FILE = Path(__file__).parent.parent / "examples" / "blog.toml"
BLOG_TEXT = BLOG_FILE.read_text()
# The blog, grown to every kind of delete: comments carry their reactions away (a cascade two
# levels deep, through a model that is a parent itself), a post's flags keep it (restrict).
RELATED_TEXT = """\
[models.Post]
fields.title = "String!"
files.image = { one = "imagePath", types = ["image/*"] }
relations.comments = { has_many = "Comment", references = "postId", on_delete = "cascade" }
relations.flags = { has_many = "Flag", references = "postId" }

[models.Comment]
fields.content = "String!"
fields.postId = "ID"
files.attachment = { one = "attachmentPath" }
relations.post = { belongs_to = "Post", references = "postId" }
relations.reactions = { has_many = "Reaction", references = "commentId", on_delete = "cascade" }

[models.User]
fields.name = "String!"
files.profilePicture = { one = "profilePicturePath", types = ["image/*"] }
relations.profile = { has_one = "Profile", references = "userId", on_delete = "nullify" }

[models.Profile]
fields.bio = "String"
fields.userId = "ID"
relations.user = { belongs_to = "User", references = "userId" }

[models.Reaction]
fields.emoji = "String!"
fields.commentId = "ID!"
files.picture = { one = "picturePath", types = ["image/*"] }
relations.comment = { belongs_to = "Comment", references = "commentId" }

[models.Flag]
fields.reason = "String"
fields.postId = "ID"
relations.post = { belongs_to = "Post", references = "postId" }
"""
BLOG = parse_declaration(BLOG_TEXT, "tests/declared.py (blog)")
RELATED = parse_declaration(RELATED_TEXT, "tests/declared.py (related)")

# The README's example (DESIGN.md's Post, and a User with a profile picture).
POST_EXAMPLE = """\
[enums.PostStatus]
values = ["DRAFT", "PUBLISHED"]

[models.Post]
fields.title = "String!"
fields.body = "String"
fields.tags = "[String!]"
fields.status = "PostStatus"
files.image = { one = "imagePath", types = ["image/*"], max_bytes = 10485760 }
files.attachments = { many = "attachmentPaths", singular = "Attachment", \
types = ["application/pdf"] }

[models.User]
fields.name = "String!"
files.profilePicture = { one = "profilePicturePath", types = ["image/*"] }
"""

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
SAMPLES = (  # (bytes, content type, file name)
    (PNG, "image/png", "picture.png"),
    (MP3, "audio/mpeg", "sound.mp3"),
    (PDF, "application/pdf", "paper.pdf"),
)


DEFAULT_TYPES: tuple[str, ...] = Settings.model_fields["allowed_content_types"].default


def accepts(file: FileSpec, content_type: str) -> bool:
    """Does ``file`` (or the server's default, when it declares no types) accept the type?"""
    major = content_type.split("/")[0]
    return any(p in (content_type, f"{major}/*") for p in file.types or DEFAULT_TYPES)


def sample_file(file: FileSpec) -> tuple[bytes, str, str]:
    """A file ``file`` accepts: (bytes, content type, file name)."""
    return next(s for s in SAMPLES if accepts(file, s[1]))


def wrong_file(file: FileSpec) -> tuple[bytes, str, str]:
    """A file of a type ``file`` refuses."""
    return next(s for s in SAMPLES if not accepts(file, s[1]))


def value_for(kind: FieldType) -> Any:
    """A valid value of a field type, as GraphQL variables carry it."""
    if kind.enum is not None:
        item: Any = kind.enum.values[0]
    else:
        item = {
            "String": "x",
            "ID": "i",
            "Int": 3,
            "Float": 2.5,
            "Boolean": True,
            "DateTime": datetime(2026, 1, 31, 12, tzinfo=UTC).isoformat().replace("+00:00", "Z"),
        }[kind.name]
    return [item] if kind.is_list else item


def required_values(model: ModelSpec) -> dict[str, Any]:
    """The fields a create must carry, with valid values."""
    return {f.name: value_for(f.type) for f in model.fields if f.required}


def stored_values(model: ModelSpec) -> dict[str, Any]:
    """``required_values`` as records store them (what the services take)."""
    return required_values(model)
