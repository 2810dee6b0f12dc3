"""The local PostGIS server for the local host's commands (infrastructure/local_postgis.py):
serve and demo start it in LOCAL_POSTGIS_DIR (.local/postgis) on 127.0.0.1:LOCAL_POSTGIS_PORT
(0: a free port) when the geospatial database is not configured (neither GEO_DATABASE_URL
nor DATABASE_URL is set) and the machine has PostgreSQL and PostGIS, and stop it on exit;
one already running there is reused and left running. Without PostGIS they say what to
install and go on: hello_world and the container jobs still run.

    python -m local_host.postgis run    # the server alone, in the foreground (make postgis)
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence, TextIO

from config import get_settings
from infrastructure.local_postgis import LocalPostgis, LocalPostgisError


def geo_configured() -> bool:
    settings = get_settings()
    return bool(settings.geo_database_url or settings.database_url)


def server_from_settings() -> LocalPostgis:
    settings = get_settings()
    return LocalPostgis(settings.local_postgis_dir, port=settings.local_postgis_port,
                        bin_dir=settings.local_postgis_bin_dir)


@contextmanager
def local_postgis(out: Optional[TextIO] = None) -> Iterator[Optional[LocalPostgis]]:
    """Yields the local PostGIS server in use, or None (configured elsewhere, or no
    PostGIS on this machine: said on out)."""
    from infrastructure.geo_db import reset_geo_database

    if geo_configured():
        yield None
        return
    server = server_from_settings()
    try:
        server.start()
    except LocalPostgisError as exc:
        if out is not None:
            print(f"Geospatial database: unavailable ({exc.reason}); the geospatial jobs "
                  f"answer 503 until then: {exc.hint}", file=out, flush=True)
        yield None
        return
    try:
        if out is not None:
            how = "already running" if server.reused else f"started, data in {server.data_dir}"
            print(f"Geospatial database: local PostGIS server on {server.url()} ({how})",
                  file=out, flush=True)
        yield server
    finally:
        reset_geo_database()  # its connections go before the server does
        server.stop()


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    from .settings import load_local_settings

    parser = argparse.ArgumentParser(prog="python -m local_host.postgis",
                                     description="the local PostGIS server")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run it until Ctrl-C (LOCAL_POSTGIS_DIR, "
                                    "LOCAL_POSTGIS_PORT)")
    parser.parse_args(argv)
    load_local_settings()
    try:
        with server_from_settings() as server:
            if server.reused:
                print(f"a local PostGIS server is already running on {server.url()}")
                return 0
            print(f"local PostGIS server on {server.url()}, data in {server.data_dir}. "
                  "Ctrl+C to stop.", flush=True)
            try:
                while True:
                    time.sleep(1.0)
            except KeyboardInterrupt:
                return 0
    except LocalPostgisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
