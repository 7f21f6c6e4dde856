"""Reading a model declaration: the names it generates, the defaults, and one line naming the
file, the line and the fault for every malformed declaration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from graphql_files.domain.declaration import (
    BUILTIN,
    BUILTIN_TEXT,
    DeclarationError,
    load_declaration,
    parse_declaration,
    plural_of,
)
from graphql_files.domain.models import FieldType

from ..declared import BLOG_TEXT, DECLARED, POST_EXAMPLE


def test_the_design_example_generates_the_documented_names() -> None:
    declaration = parse_declaration(POST_EXAMPLE, "models.toml")
    post = declaration.model("Post")
    assert (post.name, post.plural, post.collection, post.enum_name) == (
        "Post",
        "Posts",
        "posts",
        "POST",
    )
    assert post.id_argument == "postId"
    assert [(f.name, f.type.sdl) for f in post.fields] == [
        ("title", "String!"),
        ("body", "String"),
        ("tags", "[String!]"),
        ("status", "PostStatus"),
        ("imagePath", "String"),
        ("attachmentPaths", "[String!]"),
    ]
    image, attachments = post.files
    assert (image.key_field, image.many, image.types, image.max_bytes) == (
        "imagePath",
        False,
        ("image/*",),
        10485760,
    )
    assert (attachments.key_field, attachments.many, attachments.singular) == (
        "attachmentPaths",
        True,
        "Attachment",
    )
    assert attachments.types == ("application/pdf",)
    assert attachments.max_bytes is None
    (status,) = declaration.enums
    assert status.values == ("DRAFT", "PUBLISHED")
    assert post.field("status").type.enum is status


def test_the_built_in_declaration_is_song_and_photo_album() -> None:
    assert load_declaration(None) is BUILTIN
    assert [m.name for m in BUILTIN.models] == ["Song", "PhotoAlbum"]
    song, album = BUILTIN.models
    assert (song.id_argument, album.id_argument) == ("songId", "albumId")
    assert (song.files[0].key_field, album.files[0].key_field) == ("coverArtPath", "imagePaths")
    assert album.files[0].singular == "Image"
    assert parse_declaration(BUILTIN_TEXT, "again") == BUILTIN


def test_a_declaration_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(POST_EXAMPLE)
    assert [m.name for m in load_declaration(path).models] == ["Post", "User"]


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DeclarationError, match=r"cannot read .*nope\.toml"):
        load_declaration(tmp_path / "nope.toml")


def test_the_declared_test_set_is_what_the_generic_tests_need() -> None:
    """At least one model with one file field, one with a many-file field that accepts a
    non-image type, one with several file fields, one with an enum and a list of strings."""
    models = DECLARED.models
    assert any(len(m.files) == 1 and not m.files[0].many for m in models)
    assert any(
        f.many and f.types and not any(t.startswith("image/") for t in f.types)
        for m in models
        for f in m.files
    )
    assert any(len(m.files) > 1 for m in models)
    assert any(
        any(f.type.enum for f in m.fields)
        and any(f.type == FieldType("String", is_list=True) for f in m.fields)
        for m in models
    )


@pytest.mark.parametrize(
    ("name", "plural"),
    [("Song", "Songs"), ("Category", "Categories"), ("Box", "Boxes"), ("Day", "Days")],
)
def test_plurals(name: str, plural: str) -> None:
    assert plural_of(name) == plural


def test_what_the_names_cannot_derive_is_declared() -> None:
    declaration = parse_declaration(
        """\
[models.Person]
plural = "People"
noun = "person"
id_argument = "who"
fields.name = "String!"
files.photos = { many = "photoPaths" }
files.cv = { one = "cvPath", description = "Their CV." }
""",
        "m.toml",
    )
    (person,) = declaration.models
    assert (person.plural, person.collection, person.id_argument) == ("People", "people", "who")
    assert person.files[0].singular == "Photo"  # photos -> Photo when not declared
    assert person.files[1].singular == "Cv"
    assert person.files[1].description == "Their CV."


# Comment (lines 1-5) belongs to Post (lines 6-8): the relation cases add to Post, at line 9.
RELATED = (
    "[models.Comment]\nfields.content = 'String'\nfields.postId = 'ID'\nfields.otherId = 'ID'\n"
    "relations.post = { belongs_to = 'Post', references = 'postId' }\n[models.Post]\n"
    "relations.comments = { has_many = 'Comment', references = 'postId' }\n"
    "fields.title = 'String'\n"
)
# M0 -> M1 -> ... -> M5, each deleting the next: one model too deep
CASCADE_CHAIN = "".join(
    f"[models.M{n}]\nfields.pId = 'ID'\n"
    + (f"relations.up = {{ belongs_to = 'M{n - 1}', references = 'pId' }}\n" if n else "")
    + (
        f"relations.down = {{ has_many = 'M{n + 1}', references = 'pId', on_delete = 'cascade' }}\n"
        if n < 5
        else ""
    )
    for n in range(6)
)

# Each malformed declaration, the line its error must name, and words the message must have.
MALFORMED = [
    ("[models.Post]\nfields.title = 'String!'\n[other]\nx = 1\n", 3, "unknown section [other]"),
    ("[enums.X]\nvalues = ['A']\n", 1, "declare at least one model"),
    ("[models.post]\nfields.a = 'String'\n", 1, "'post' is not a name for a model"),
    ("[models.Query]\nfields.a = 'String'\n", 1, "'Query' is a name the schema uses itself"),
    ("[models.Post]\nfields.title = 'Strin'\n", 2, "unknown type 'Strin'"),
    ("[models.Post]\nfields.title = '[String'\n", 2, "is not a type such as"),
    ("[models.Post]\nfields.title = 'String!!'\n", 2, "is not a type such as"),
    ("[models.Post]\nfields.Title = 'String'\n", 2, "must be camelCase"),
    ("[models.Post]\nfields.id = 'String'\n", 2, "'id' is kept by the server"),
    ("[models.Post]\nfields.version = 'Int'\n", 2, "'version' is kept by the server"),
    ("[models.Post]\nfields.a = 3\n", 2, 'a type such as "String!"'),
    # issue 20.5: names the generated classes use (createPost wrote, then failed on `model`)
    ("[models.Post]\nfields.model = 'String'\n", 2, "'model' is a name the generated API"),
    ("[models.Post]\nfields.enums = 'String'\n", 2, "'enums' is a name the generated API"),
    ("[models.Post]\nfields.expectedVersion = 'Int'\n", 2, "'expectedVersion' is a name"),
    ("[models.Post]\nfields.deleteFiles = 'Boolean'\n", 2, "'deleteFiles' is a name"),
    ("[models.Post]\nfields.and = 'String'\n", 2, "'and' is a name the generated API"),
    ("[models.Post]\nfields.class = 'String'\n", 2, "Python's keywords"),
    ("[models.Post]\nfiles.model = { one = 'imagePath' }\n", 2, "'model' is a name"),
    ("[models.Post]\nfiles.image = { one = 'enums' }\n", 2, "'enums' is a name"),
    # issue 20.9: attachPostImage(input: {file: $f}) attached to the record with id "None"
    ("[models.Post]\nid_argument = 'file'\n", 2, "id_argument 'file' is a field the workflows'"),
    ("[models.Post]\nid_argument = 'uploadedPath'\n", 2, "'uploadedPath' is a field"),
    ("[models.Post]\nid_argument = 'expectedVersion'\n", 2, "'expectedVersion' is a field"),
    ("[models.Post]\nid_argument = 'paths'\n", 2, "'paths' is a field"),
    ("[models.Post]\nid_argument = 'import'\n", 2, "'import' is a Python keyword"),
    ("[models.Post]\ncolour = 'red'\n", 2, "unknown key 'colour'"),
    ("[models.Post]\nfiles.image = { one = 'imagePath', many = 'x' }\n", 2, "exactly one of"),
    ("[models.Post]\nfiles.image = { path = 'imagePath' }\n", 2, "write { one ="),
    ("[models.Post]\nfiles.image = { one = 'image path' }\n", 2, "camelCase name"),
    (
        "[models.Post]\nfields.title = 'String'\n\nfiles.image = { one = 'title' }\n",
        4,
        "'title' is already a field",
    ),
    ("[models.Post]\nfiles.image = { one = 'imagePath', types = ['image'] }\n", 2, "media types"),
    ("[models.Post]\nfiles.image = { one = 'p', max_bytes = 0 }\n", 2, "max_bytes must be"),
    ("[models.Post]\nfiles.image = { one = 'p', max_bytes = true }\n", 2, "max_bytes must be"),
    ("[models.Post]\nfiles.images = { many = 'p', singular = 'x y' }\n", 2, "singular must be"),
    ("[models.Post]\nid_argument = 'Post-id'\n", 2, "id_argument 'Post-id' must be camelCase"),
    ("[models.Post]\nplural = 'Post'\n", 2, "plural 'Post' must be"),
    ("[enums.S]\nvalues = []\n[models.Post]\nfields.s = 'S'\n", 2, "S.values must be"),
    ("[enums.S]\nvalues = ['A', 'A']\n[models.Post]\nfields.s = 'S'\n", 2, "must be distinct"),
    ("[enums.S]\nvalues = ['true']\n[models.Post]\nfields.s = 'S'\n", 2, "must be distinct"),
    ("[enums.Post]\nvalues = ['A']\n[models.Post]\nfields.s = 'String'\n", 3, "an enum too"),
    ("[models.Claim]\nfields.s = 'String'\n", 1, "collection 'claims' is the server's own"),
    (
        "[models.Box]\nfields.s = 'String'\n[models.Boxes]\nplural = 'Boxess'\n",
        3,
        "Boxes and Box would both generate the name 'Boxes'",
    ),
    ("[models.Post]\nfields.title = 'String!'\ntitle = 'x'\nbroken = \n", 4, "models.toml: "),
    # relations (issue 17): one line each, at the relation at fault
    (RELATED + "relations.x = 3\n", 9, "x: write { has_many ="),
    (
        RELATED + "relations.x = { has_many = 'Remark', references = 'postId' }\n",
        9,
        "Post.x names 'Remark', which is not a declared model (declared: Comment, Post)",
    ),
    (
        RELATED + "relations.x = { has_many = 'Comment', belongs_to = 'Comment' }\n",
        9,
        "exactly one of has_many, has_one and belongs_to",
    ),
    (RELATED + "relations.x = { has_many = 'Comment' }\n", 9, "references must name"),
    (
        RELATED + "relations.x = { has_many = 'Comment', references = 'content' }\n",
        9,
        "Post.x references Comment.content, which must be an ID field of Comment",
    ),
    (
        RELATED + "relations.x = { has_many = 'Comment', references = 'missing' }\n",
        9,
        "Post.x references Comment.missing, which must be an ID field",
    ),
    (
        RELATED + "relations.x = { has_many = 'Comment', references = 'otherId' }\n",
        9,
        'Post.x has no counterpart: declare relations.<name> = { belongs_to = "Post", '
        'references = "otherId" } on Comment',
    ),
    (
        RELATED + "relations.x = { has_many = 'Comment', references = 'postId', "
        "on_delete = 'drop' }\n",
        9,
        "on_delete must be one of restrict, cascade, nullify",
    ),
    (
        RELATED + "relations.title = { has_many = 'Comment', references = 'postId' }\n",
        9,
        "'title' is already a field",
    ),
    (
        RELATED + "relations.y = { has_one = 'Comment', references = 'postId' }\n",
        9,
        "Post.y and Post.comments are the same relation (both through postId)",
    ),
    (
        RELATED.replace("fields.postId = 'ID'", "fields.postId = 'ID!'").replace(
            "references = 'postId' }\nfields.title",
            "references = 'postId', on_delete = 'nullify' }\nfields.title",
        ),
        7,
        "Post.comments cannot nullify Comment.postId: it is required",
    ),
    (
        RELATED.replace(
            "belongs_to = 'Post', references = 'postId' }",
            "belongs_to = 'Post', references = 'otherId' }",
        ),
        5,
        'Comment.post has no counterpart: declare a has_many or has_one = "Comment" with '
        'references = "otherId" on Post',
    ),
    (
        RELATED.replace(
            "belongs_to = 'Post', references = 'postId' }",
            "belongs_to = 'Post', references = 'postId', on_delete = 'cascade' }",
        ),
        5,
        "on_delete belongs on the parent's has_many or has_one",
    ),
    (
        RELATED.replace(
            "references = 'postId' }\nfields.title",
            "references = 'postId', on_delete = 'cascade' }\nfields.title",
        ).replace(
            "[models.Comment]\n",
            "[models.Comment]\nrelations.posts = { has_many = 'Post', "
            "references = 'commentId', on_delete = 'cascade' }\n",
        )
        + "fields.commentId = 'ID'\nrelations.up = { belongs_to = 'Comment', "
        "references = 'commentId' }\n",
        8,
        "deletes would cascade in a circle: Comment -> Post -> Comment",
    ),
    (CASCADE_CHAIN, 19, "deletes would cascade 5 models deep (M0 -> M1 -> M2 -> M3 -> M4 -> M5)"),
]


@pytest.mark.parametrize(("text", "line", "words"), MALFORMED)
def test_a_malformed_declaration_is_one_line_naming_file_line_and_fault(
    text: str, line: int, words: str
) -> None:
    with pytest.raises(DeclarationError) as caught:
        parse_declaration(text, "models.toml")
    message = str(caught.value)
    assert "\n" not in message, message
    assert message.startswith(f"models.toml, line {line}: ") or (
        message.startswith("models.toml: ") and f"line {line}" in message
    ), message
    assert words in message, message


def test_the_readmes_declarations_are_the_ones_tested() -> None:
    """The README's example is the one the CLI tests serve, and its built-in block is exactly
    the built-in declaration: a user who copies it keeps their data."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", readme, re.DOTALL)
    example = next(b for b in blocks if "[models.Post]" in b)
    builtin = next(b for b in blocks if "[models.Song]" in b)
    blog = next(b for b in blocks if "relations." in b)
    assert parse_declaration(example, "README") == parse_declaration(POST_EXAMPLE, "tests")
    assert blog == BLOG_TEXT
    assert parse_declaration(builtin, "README") == BUILTIN
