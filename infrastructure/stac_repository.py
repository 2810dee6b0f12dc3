"""The STAC catalogue (schema pgstac), written and read through pgstac's own functions only:
create_collection, get_collection, upsert_item, get_item and search. Never its tables.

    stac = StacRepository()          # over the geospatial database's pool
    stac.ensure_collection("system-vectors", "PostGIS tables")
    write = stac.upsert_item(item)   # ItemWrite: "inserted" or "updated", and the previous
    stac.get_item("system-vectors", item["id"])
    stac.search(collections=["system-vectors"], bbox=[-10, 40, 5, 55])

Writers of the same collection or item wait for each other on a transaction-scoped
advisory lock, so concurrent jobs create a collection once and each knows whether its item
was new. pypgstac is not imported here (infrastructure/pgstac_import.py says why it is
imported in one place only)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import psycopg
from psycopg.types.json import Jsonb

from .db import Database
from .geo_db import get_geo_database

STAC_VERSION = "1.0.0"
# Advisory-lock namespaces (the first key of pg_advisory_xact_lock(int, int)), apart from
# the engine's and the geospatial migrations' bigint locks.
_COLLECTION_LOCK = 734_002_103
_ITEM_LOCK = 734_002_104
WHOLE_WORLD = [-180.0, -90.0, 180.0, 90.0]


@dataclass(frozen=True)
class ItemWrite:
    outcome: str  # "inserted" or "updated"
    item: dict[str, Any]  # what was written
    previous: Optional[dict[str, Any]]  # the item it replaced


def collection_document(collection_id: str, description: str,
                        title: Optional[str] = None,
                        license: str = "proprietary") -> dict[str, Any]:
    """A minimal STAC 1.0 collection. Its extent starts as the whole world and open in
    time: pgstac's own collection_extent() can recompute it from the items."""
    return {
        "type": "Collection", "stac_version": STAC_VERSION, "id": collection_id,
        "title": title or collection_id, "description": description, "license": license,
        "extent": {"spatial": {"bbox": [WHOLE_WORLD]},
                   "temporal": {"interval": [[None, None]]}},
        "links": [],
    }


_PARTITION_RACE_TRIES = 5
_PARTITION_RACES = (psycopg.errors.UndefinedTable, psycopg.errors.DuplicateTable,
                    psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected)


class StacRepository:
    def __init__(self, database: Callable[[], Database] = get_geo_database):
        self._database = database

    def get_collection(self, collection_id: str) -> Optional[dict[str, Any]]:
        with self._database().connection() as conn:
            return conn.execute("SELECT pgstac.get_collection(%s) AS c",
                                (collection_id,)).fetchone()["c"]

    def ensure_collection(self, collection_id: str, description: str,
                          title: Optional[str] = None) -> bool:
        """Create the collection unless it exists; True when this call created it. Safe
        when several jobs do it at once: one creates, the others find it."""
        if self.get_collection(collection_id) is not None:
            return False
        with self._database().transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                         (_COLLECTION_LOCK, collection_id))
            found = conn.execute("SELECT pgstac.get_collection(%s) AS c",
                                 (collection_id,)).fetchone()["c"]
            if found is not None:
                return False
            conn.execute("SELECT pgstac.create_collection(%s)",
                         (Jsonb(collection_document(collection_id, description, title)),))
        return True

    def upsert_item(self, item: dict[str, Any],
                    merge: Optional[Callable[[dict[str, Any], dict[str, Any]],
                                             dict[str, Any]]] = None) -> ItemWrite:
        """Insert or replace the item (its collection must exist), reporting which. merge
        (previous, item) -> item, when given and the item existed, decides what is written
        (e.g. keep its `created`). Read and write are one transaction under a lock per
        item, so two writers of the same item cannot both report "inserted"."""
        for attempt in range(_PARTITION_RACE_TRIES):
            try:
                return self._upsert(item, merge)
            except _PARTITION_RACES:
                # pgstac makes a collection's partition with its first item: writers of
                # a new collection's first items at once race for it; the loser finds
                # it made when it tries again.
                if attempt == _PARTITION_RACE_TRIES - 1:
                    raise
                time.sleep(0.1 * (attempt + 1))
        raise AssertionError("unreachable")

    def _upsert(self, item: dict[str, Any], merge: Optional[Callable[..., Any]]
                ) -> ItemWrite:
        collection, item_id = item["collection"], item["id"]
        with self._database().transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                         (_ITEM_LOCK, f"{collection}/{item_id}"))
            previous = conn.execute("SELECT pgstac.get_item(%s, %s) AS i",
                                    (item_id, collection)).fetchone()["i"]
            if previous is not None and merge is not None:
                item = merge(previous, item)
            conn.execute("SELECT pgstac.upsert_item(%s)", (Jsonb(item),))
        return ItemWrite("inserted" if previous is None else "updated", item, previous)

    def delete_item(self, collection_id: str, item_id: str) -> bool:
        """Delete the item if it is there; whether it was."""
        with self._database().transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                         (_ITEM_LOCK, f"{collection_id}/{item_id}"))
            found = conn.execute("SELECT pgstac.get_item(%s, %s) AS i",
                                 (item_id, collection_id)).fetchone()["i"]
            if found is None:
                return False
            conn.execute("SELECT pgstac.delete_item(%s, %s)", (item_id, collection_id))
        return True

    def get_item(self, collection_id: str, item_id: str) -> Optional[dict[str, Any]]:
        with self._database().connection() as conn:
            return conn.execute("SELECT pgstac.get_item(%s, %s) AS i",
                                (item_id, collection_id)).fetchone()["i"]

    def search(self, collections: Sequence[str], bbox: Optional[Sequence[float]] = None,
               ids: Optional[Sequence[str]] = None, limit: int = 100) -> list[dict[str, Any]]:
        """The items of these collections intersecting bbox (EPSG:4326 [minx, miny, maxx,
        maxy]), through pgstac.search; at most `limit`."""
        query: dict[str, Any] = {"collections": list(collections), "limit": limit}
        if bbox is not None:
            query["bbox"] = [float(v) for v in bbox]
        if ids is not None:
            query["ids"] = list(ids)
        with self._database().connection() as conn:
            found = conn.execute("SELECT pgstac.search(%s) AS r",
                                 (Jsonb(query),)).fetchone()["r"]
        return list(found.get("features") or [])
