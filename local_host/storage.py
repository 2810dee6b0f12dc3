"""Blob storage for the local host's commands: the storage the settings name, or else an
Azurite (reused if one answers on AZURITE_PORT, else started, and stopped on the way out)
whose connection string is put in this process's environment as STORAGE_CONNECTION_STRING,
with the zone containers created."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Optional, TextIO

from config import Settings, get_settings, reset_settings

from .azurite import Azurite, _shown

CONNECTION_SETTING = "STORAGE_CONNECTION_STRING"


def zone_containers(settings: Optional[Settings] = None) -> list[str]:
    """The zone containers config.py names, bronze then silver."""
    settings = settings or get_settings()
    return [settings.bronze_vectors_container, settings.bronze_rasters_container,
            settings.bronze_misc_container, settings.silver_cogs_container,
            settings.silver_vectors_container, settings.silver_stac_assets_container,
            settings.silver_temp_container]


def create_zone_containers() -> list[str]:
    """Create the missing zone containers; returns those created now."""
    from infrastructure.blob_storage import get_blob_storage

    storage = get_blob_storage()
    return [name for name in zone_containers() if storage.create_container(name)]


def storage_configured(settings: Optional[Settings] = None) -> bool:
    settings = settings or get_settings()
    return bool(settings.storage_account_url or settings.storage_connection_string)


@contextmanager
def local_storage(out: Optional[TextIO] = None, create_containers: bool = True
                  ) -> Iterator[Optional[Azurite]]:
    """Yields None when STORAGE_ACCOUNT_URL or STORAGE_CONNECTION_STRING is set (the user
    points at storage of their own: nothing is started or created), else the Azurite in use.
    Call from the main thread (a started Azurite dies with the thread that started it)."""
    from infrastructure.blob_storage import set_blob_storage

    if storage_configured():
        yield None
        return
    with Azurite() as azurite:
        previous = os.environ.get(CONNECTION_SETTING)
        os.environ[CONNECTION_SETTING] = azurite.connection_string
        reset_settings()
        set_blob_storage(None)
        try:
            if out is not None:
                how = ("already running" if azurite.reused else
                       f"started, data in {_shown(azurite.location)}")
                print(f"Blob storage: Azurite on {azurite.url} ({how})", file=out,
                      flush=True)
            if create_containers:
                create_zone_containers()
            yield azurite
        finally:
            if previous is None:
                os.environ.pop(CONNECTION_SETTING, None)
            else:
                os.environ[CONNECTION_SETTING] = previous
            reset_settings()
            set_blob_storage(None)
