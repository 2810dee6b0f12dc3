"""python -m local_host serve [--port N] | demo | migrate [--geo [--grant-app-role ROLE]]
| upload CONTAINER PATH...

serve, demo and upload use blob storage: STORAGE_ACCOUNT_URL or STORAGE_CONNECTION_STRING
when set, else Azurite (started on 127.0.0.1:AZURITE_PORT, 10000, with its data in
.local/azurite, and stopped on exit; or the one already running there). serve and demo
also start the local PostGIS server when the geospatial database is not configured and
the machine has PostGIS (local_host/postgis.py)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Optional, Sequence

# The engine logs these as `extra`; show them so a line says which job and task it is about.
_CONTEXT_FIELDS = ("job_id", "job_type", "task_id", "stage", "queue", "message_id")


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(f"{k}={getattr(record, k)}" for k in _CONTEXT_FIELDS
                           if getattr(record, k, None) is not None)
        return f"{text} [{context}]" if context else text


def configure_logging(level: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # The pool logs every connection at INFO; the azure SDK is chatty too.
    for name in ("psycopg.pool", "azure"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def serve(port: Optional[int]) -> int:
    from .host import LocalHost
    from .settings import default_port
    from .postgis import local_postgis
    from .storage import local_storage

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        logging.getLogger("local_host").info("%s received: stopping",
                                             signal.Signals(signum).name)
        # A second signal ends the process at once.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with local_storage(out=sys.stdout), local_postgis(out=sys.stdout):
        host = LocalHost(port=default_port() if port is None else port).start()
        while not stop.wait(1.0):
            pass
        host.stop()
    return 0


def _where(conninfo: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    where = conninfo_to_dict(conninfo)
    return (f"database {where.get('dbname', '?')} on {where.get('host', 'localhost')}"
            f":{where.get('port', 5432)}")


def migrate(geo: bool = False, grant_role: Optional[str] = None) -> int:
    """The engine's migrations (MIGRATIONS_DATABASE_URL, else DATABASE_URL, else the
    embedded PostgreSQL); with geo, the geospatial database's instead (migrate_geo)."""
    from config import get_settings
    from infrastructure.db import password_provider, resolve_database_url
    from infrastructure.migrations import apply_migrations, available_migrations

    if geo:
        return migrate_geo(grant_role)
    settings = get_settings()
    conninfo = resolve_database_url(settings)
    if settings.migrations_database_url:
        conninfo = settings.migrations_database_url
    password = password_provider(settings)
    kwargs = {"password": password()} if password else {}
    print(_where(conninfo))
    applied = apply_migrations(conninfo, **kwargs)
    for name in applied:
        print(f"applied {name}")
    if not applied:
        print(f"up to date ({len(available_migrations())} migration(s) already applied)")
    return 0


def migrate_geo(grant_role: Optional[str]) -> int:
    """The geospatial database's migrations (extensions, allowed schemas, pgstac's own),
    through its administrator's URL (geo_db.resolve_geo_database); then, given the app's
    role, GRANT it pgstac_ingest and USAGE, CREATE on the allowed schemas. The deploy step
    in Azure, run as the database administrator (pgstac's migrations create roles)."""
    from config import get_settings
    from infrastructure.geo_db import resolve_geo_database
    from infrastructure.geo_migrations import apply_geo_migrations, grant_app_role

    settings = get_settings()
    target = resolve_geo_database(settings)
    print(f"geospatial {_where(target.migrations_conninfo)} ({target.source})")
    setup = apply_geo_migrations(target.migrations_conninfo, settings.geo_schemas,
                                 **target.connect_kwargs())
    for action in setup.applied:
        print(action)
    if not setup.applied:
        print(f"up to date (PostGIS {setup.postgis_version}, pgstac {setup.pgstac_version}, "
              f"schemas {', '.join(settings.geo_schemas)})")
    if grant_role:
        grant_app_role(target.migrations_conninfo, grant_role, settings.geo_schemas,
                       **target.connect_kwargs())
        print(f"granted pgstac_ingest, and USAGE, CREATE on schema(s) "
              f"{', '.join(settings.geo_schemas)}, to {grant_role}")
        print(f"granted SELECT on the tables of schema(s) {', '.join(settings.geo_schemas)}"
              f" (and on those this administrator creates there later), to {grant_role}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_host", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the app's functions, like func start")
    serve_cmd.add_argument("--port", type=int, default=None,
                           help="HTTP port (default: Host.LocalHttpPort or 7071; 0: any free)")
    demo_cmd = commands.add_parser("demo", help="run hello_world with live progress")
    demo_cmd.add_argument("-n", type=int, default=5, help="greetings (default 5)")
    demo_cmd.add_argument("--verbose", "-v", action="store_true", help="show the host's log")
    migrate_cmd = commands.add_parser("migrate", help="apply pending database migrations")
    migrate_cmd.add_argument("--geo", action="store_true",
                             help="the geospatial database's instead: extensions, schemas, "
                                  "pgstac's own migrations")
    migrate_cmd.add_argument("--grant-app-role", metavar="ROLE", default=None,
                             help="with --geo: then GRANT pgstac_ingest, and USAGE, CREATE on "
                                  "the allowed schemas, TO ROLE (the app's role)")
    upload_cmd = commands.add_parser(
        "upload", help="upload files and folders into a blob container",
        description="Upload files and folders (recursively; blob names are paths relative "
                    "to the folder given, a file given directly keeps its name) into "
                    "CONTAINER, creating it if missing.")
    upload_cmd.add_argument("container", metavar="CONTAINER", help="e.g. bronze-rasters")
    upload_cmd.add_argument("paths", metavar="PATH", nargs="+", help="files and folders")
    args = parser.parse_args(argv)

    # The demo draws progress on the terminal; the host's INFO log would break it up.
    quiet = args.command in ("demo", "upload") and not getattr(args, "verbose", False)
    configure_logging(logging.WARNING if quiet else logging.INFO)

    from exceptions import EngineError
    from infrastructure.local_postgis import LocalPostgisError
    from psycopg import Error as PsycopgError

    from azure.core.exceptions import AzureError

    from .azurite import AzuriteError
    from .host import LocalHostError
    from .settings import SettingsFileError, load_local_settings
    from .upload import UploadError

    try:
        load_local_settings()
        if args.command == "serve":
            return serve(args.port)
        if args.command == "demo":
            from .demo import run_demo
            from .storage import local_storage

            from .postgis import local_postgis

            with local_storage(out=sys.stdout), local_postgis(out=sys.stdout):
                return run_demo(n=args.n)
        if args.command == "upload":
            from .storage import local_storage
            from .upload import check_container_name, plan_uploads, upload_paths

            check_container_name(args.container)  # refused before starting anything
            plan_uploads(args.paths)
            with local_storage(create_containers=False):
                upload_paths(args.container, args.paths, out=sys.stdout)
            return 0
        if args.grant_app_role and not args.geo:
            parser.error("--grant-app-role goes with --geo")
        return migrate(args.geo, args.grant_app_role)
    except (LocalHostError, SettingsFileError, EngineError, PsycopgError, AzuriteError,
            UploadError, AzureError, LocalPostgisError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl+C in the demo; the host has been stopped on the way out
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
