"""The ``graphql-files`` command: ``serve``, ``schema``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import sys
from datetime import timedelta
from pathlib import Path

from pydantic import ValidationError

from . import __version__, logs
from .adapters.embedded import data_dir_in_use, open_stores
from .adapters.mongo import open_database
from .domain.declaration import Declaration, DeclarationError, load_declaration
from .domain.policy import PolicyError, load_policy
from .errors import DomainError, StartupError
from .services.apikeys import ApiKeys
from .settings import Settings, describe_invalid

DEFAULT_SCHEMA_FILE = Path("schema.graphql")


def _settings(**overrides: object) -> Settings:
    """Settings from the environment (and flags); a bad value exits with one line."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        sys.exit(f"graphql-files: {describe_invalid(exc)}")


def _configure_logging(level: str) -> None:
    """Log lines to stderr, with credentials redacted from every record of every logger (at
    debug level, uvicorn logs each websocket handshake's headers)."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    logs.install()


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app

    settings = _settings(host=args.host, port=args.port, log_level=args.log_level)
    declaration = _declaration(settings.models_file)  # a bad file stops us in one line
    try:
        load_policy(settings.access_file, [m.name for m in declaration.models])
    except PolicyError as exc:
        sys.exit(f"graphql-files: {exc}")
    _refuse_a_held_data_dir(settings)
    # The port is held from now on, before the embedded stores start (they take free ports of
    # their own: uvicorn binds only after the app has started, too late to keep one of them
    # from taking it); with --port 0, the one the system gave is the one the log shows.
    listener = _listen(settings.host, settings.port)
    settings = settings.model_copy(update={"port": listener.getsockname()[1]})
    _configure_logging(settings.log_level)
    config = uvicorn.Config(
        create_app(settings, declaration),
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level,
        access_log=not args.no_access_log,
        ws_max_size=settings.max_request_bytes,
        ssl_certfile=settings.tls_cert_file,
        ssl_keyfile=settings.tls_key_file,
    )
    uvicorn.Server(config).run(sockets=[listener])
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (as uvicorn binds one), or exit with one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family=family, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        sys.exit(f"graphql-files: cannot listen on {host}:{port}: {exc.strerror or exc}")
    listener.set_inheritable(True)
    return listener


def _uses_data_dir(settings: Settings) -> bool:
    """Whether the embedded stores on disk will serve (some store is not configured)."""
    return settings.embedded == "disk" and (settings.embedded_mongodb or settings.embedded_s3)


def _refuse_a_held_data_dir(settings: Settings, command: str = "graphql-files") -> None:
    """One line, before anything starts, when another server holds the data directory."""
    if _uses_data_dir(settings):
        held = data_dir_in_use(settings.data_dir.resolve())
        if held is not None:
            sys.exit(f"{command}: {held}")


def _declaration(path: Path | None) -> Declaration:
    """The declared models (the built-in ones without a path), checked whole: the file parses
    and the schema it gives builds. A bad one exits with one line naming the file and the
    fault (and the line, for a fault the parser sees)."""
    from .api.schema.build import build_schema

    try:
        declaration = load_declaration(path)
    except DeclarationError as exc:
        sys.exit(f"graphql-files: {exc}")
    try:
        build_schema(Settings.model_construct(), declaration)
    except Exception as exc:  # strawberry's and graphql-core's own refusals, whatever their type
        sys.exit(f"graphql-files: {path}: the schema it gives does not build: {exc}")
    return declaration


def check_models(args: argparse.Namespace) -> int:
    """``check-models``: the declaration parses, and the schema it gives builds."""
    declaration = _declaration(args.file)
    names = ", ".join(
        f"{m.name} ({len(m.fields)} fields, {len(m.files)} file fields)" for m in declaration.models
    )
    print(f"{args.file}: {len(declaration.models)} models: {names}")
    return 0


def schema(args: argparse.Namespace) -> int:
    from .api.schema.build import build_schema, sdl

    declaration = _declaration(args.models or _settings().models_file)
    text = sdl(build_schema(Settings.model_construct(), declaration))
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run 'make schema'", file=sys.stderr)
            return 1
        return 0
    if args.write:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def sweep(args: argparse.Namespace) -> int:
    from .services.wiring import open_services
    from .settings import parse_duration

    settings = _settings(log_level=args.log_level)
    # Its report is its output: the services' log lines only when a level is asked for, so
    # that a failure reads as the one line below.
    _configure_logging(settings.log_level if "log_level" in settings.model_fields_set else "error")
    if (settings.embedded_mongodb or settings.embedded_s3) and not _uses_data_dir(settings):
        print(
            "graphql-files sweep: the in-memory MongoDB and S3 live only inside a running server; "
            "point GRAPHQL_FILES_MONGODB_URI and GRAPHQL_FILES_S3_BUCKET at the real ones, or set "
            "GRAPHQL_FILES_SWEEP_INTERVAL on the server to sweep from inside it",
            file=sys.stderr,
        )
        return 2
    _refuse_a_held_data_dir(settings, "graphql-files sweep")
    try:
        grace = parse_duration(args.grace) if args.grace else None
    except ValueError as exc:
        sys.exit(f"graphql-files sweep: --grace: {exc}")
    declaration = _declaration(settings.models_file)  # the sweeper must know every file field

    async def run() -> list[str]:
        if not settings.embedded_mongodb:
            async with open_database(settings) as database:
                await database.ping()  # fail fast: opening the services waits on every index
        async with open_services(settings, declaration) as services:
            report = await services.sweeper.run(
                grace=grace or timedelta(seconds=settings.sweep_grace), dry_run=args.dry_run
            )
            return report.lines(dry_run=args.dry_run)

    try:
        lines = asyncio.run(run())
    except (DomainError, PolicyError, StartupError) as exc:
        sys.exit(f"graphql-files sweep: {exc}")
    for line in lines:
        print(line)
    return 0


async def api_key_command(args: argparse.Namespace, keys: ApiKeys) -> list[str]:
    """``api-key create|list|revoke`` over a key store; the lines to print."""
    if args.action == "create":
        key, secret = await keys.create(
            expires_in_days=args.expires_in_days, description=args.description
        )
        return [
            secret,
            f"id {key.id}, expires {key.expires_at.isoformat()}: pass it as the x-api-key header;"
            " it is shown only now",
        ]
    if args.action == "revoke":
        key = await keys.revoke(args.id)
        return [f"revoked {key.id} ({key.description or 'no description'})"]
    rows = [f"{'id':<14}{'status':<9}{'expires':<27}description"]
    for key in await keys.list_keys():
        rows.append(f"{key.id:<14}{key.status:<9}{key.expires_at.isoformat():<27}{key.description}")
    return rows


def api_key(args: argparse.Namespace) -> int:
    settings = _settings()
    if settings.embedded_mongodb and not _uses_data_dir(settings):
        print(
            "graphql-files api-key: the in-memory MongoDB lives inside a running server; set "
            "GRAPHQL_FILES_MONGODB_URI (and GRAPHQL_FILES_MONGODB_DATABASE) to the server's",
            file=sys.stderr,
        )
        return 2
    _refuse_a_held_data_dir(settings, "graphql-files api-key")

    async def run() -> list[str]:
        async with (
            open_stores(settings) as stores,
            open_database(settings, stores.mongodb) as database,
        ):
            keys = ApiKeys(database=database)
            await keys.ensure_indexes()
            return await api_key_command(args, keys)

    try:
        lines = asyncio.run(run())
    except DomainError as exc:
        sys.exit(f"graphql-files api-key: {exc.message}")
    except StartupError as exc:
        sys.exit(f"graphql-files api-key: {exc}")
    for line in lines:
        print(line)
    return 0


def amplify_outputs_command(args: argparse.Namespace) -> int:
    """``amplify-outputs``: the amplify_outputs.json an unmodified aws-amplify v6 accepts."""
    from .services.amplify_outputs import amplify_outputs

    settings = _settings()
    declaration = _declaration(settings.models_file)
    try:
        policy = load_policy(settings.access_file, [m.name for m in declaration.models])
    except PolicyError as exc:
        sys.exit(f"graphql-files: {exc}")
    url = args.url.rstrip("/")
    if not url.endswith("/graphql"):
        url += "/graphql"
    outputs = amplify_outputs(
        url=url,
        api_key=args.api_key,
        region=settings.s3_region,
        policy=policy,
        declaration=declaration,
    )
    text = json.dumps(outputs, indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="graphql-files",
        description="A GraphQL server for records that carry files.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("serve", help="run the server (settings: GRAPHQL_FILES_* variables)")
    p.add_argument("--host", help="interface to listen on (GRAPHQL_FILES_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (GRAPHQL_FILES_PORT, 8000)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--no-access-log", action="store_true", help="do not log every request")
    p.set_defaults(run=serve)

    p = commands.add_parser("schema", help="print the GraphQL schema (SDL)")
    p.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when the schema file differs from the code's schema",
    )
    p.add_argument("--write", action="store_true", help="write the schema file")
    p.add_argument(
        "--models",
        type=Path,
        help="the SDL a model declaration gives (default GRAPHQL_FILES_MODELS_FILE, else the "
        "built-in Song and PhotoAlbum)",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_SCHEMA_FILE,
        help="schema file for --check/--write (default: schema.graphql)",
    )
    p.set_defaults(run=schema)

    p = commands.add_parser(
        "sweep",
        help="remove orphaned objects under the attachment prefix; report records naming "
        "missing objects",
    )
    p.add_argument("--dry-run", action="store_true", help="report only; delete nothing")
    p.add_argument(
        "--grace",
        help="leave orphans younger than this (default "
        "GRAPHQL_FILES_SWEEP_GRACE, 1h); e.g. 30m, 1h, 2d",
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.set_defaults(run=sweep)

    p = commands.add_parser(
        "check-models", help="validate a model declaration (TOML) without starting a server"
    )
    p.add_argument("file", type=Path, help="the declaration, e.g. models.toml")
    p.set_defaults(run=check_models)

    p = commands.add_parser(
        "amplify-outputs",
        help="write the amplify_outputs.json that aws-amplify v6 configures itself from",
    )
    p.add_argument(
        "--url",
        required=True,
        help="the server's public URL, e.g. https://api.example.com (/graphql is added)",
    )
    p.add_argument("--api-key", help="the API key clients send (x-api-key); omit for users only")
    p.add_argument("--output", type=Path, help="the file to write (default: standard output)")
    p.set_defaults(run=amplify_outputs_command)

    p = commands.add_parser(
        "api-key",
        help="manage API keys (in GRAPHQL_FILES_MONGODB_URI, else in the embedded data directory "
        "while no server uses it)",
    )
    key_commands = p.add_subparsers(dest="action", required=True)
    create = key_commands.add_parser("create", help="make a key; it is printed once")
    create.add_argument(
        "--expires-in-days",
        type=float,
        default=30,
        help="lifetime in days (default 30, as Amplify's API keys)",
    )
    create.add_argument("--description", default="", help="what the key is for")
    key_commands.add_parser("list", help="every key with its status; never the secrets")
    revoke = key_commands.add_parser("revoke", help="refuse a key from now on")
    revoke.add_argument("id", help="the key's id, as `list` shows it")
    p.set_defaults(run=api_key)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
