"""STAC items for rasters, made with rio-stac: the projection and raster extensions (CRS,
shape, transform, per band data type, nodata and statistics), bbox and geometry in
EPSG:4326, the COG as the asset `data` with its media type and its blob's plain URL
(never a link that expires). The item's datetime is the TIFF's DateTime tag when it has
one, else the time given (the source blob's last-modified).

catalog_rasters is the one handler that writes raster items: process_raster's STAC stage
(items its COG tasks made while their files were at hand) and stac_catalog_raster and
stac_catalog_container (one blob each, downloaded and read here)."""

from __future__ import annotations

import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from exceptions import PermanentError
from infrastructure.blob_storage import get_blob_storage
from infrastructure.stac_repository import StacRepository
from services.raster_footprint import antimeridian_footprint
from services.stac_vector_item import iso, keep_creation

COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
COLLECTION_DESCRIPTIONS = {"system-rasters": "Cloud Optimized GeoTIFFs of the platform"}


class RasterItemError(PermanentError):
    """The raster cannot be catalogued (not readable, or not a valid COG when one is
    required)."""


def tiff_datetime(tags: dict[str, str]) -> Optional[datetime]:
    """The TIFF DateTime tag, when present and readable: TIFF's "YYYY:MM:DD HH:MM:SS" (no
    zone: UTC), or as many tools write it, ISO 8601 with a "T", fractions of a second,
    "Z" or an offset (converted to UTC). An unset "0000:00:00 00:00:00" is None."""
    value = (tags or {}).get("TIFFTAG_DATETIME", "").strip().rstrip("\x00").strip()
    if len(value) >= 10 and value[4] == ":" and value[7] == ":":
        value = f"{value[:4]}-{value[5:7]}-{value[8:10]}{value[10:]}"  # TIFF's date
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def raster_item(path: Path, item_id: str, collection_id: str, href: str,
                fallback_datetime: datetime, properties: Optional[dict] = None
                ) -> dict[str, Any]:
    """The item for the raster at path (a local file), its asset pointing at href."""
    import rasterio
    from rasterio.errors import RasterioError
    from rio_stac import create_stac_item

    try:
        with rasterio.open(path) as dataset:
            moment = tiff_datetime(dataset.tags())
            source = "tiff_datetime" if moment else "source_last_modified"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                item = create_stac_item(
                    dataset, input_datetime=moment or fallback_datetime, id=item_id,
                    collection=collection_id, asset_name="data", asset_href=href,
                    asset_media_type=COG_MEDIA_TYPE, asset_roles=["data"],
                    with_proj=True, with_raster=True, geom_densify_pts=21,
                    properties={**(properties or {}),
                                "geojobs:datetime_source": source})
    except RasterioError as exc:
        raise RasterItemError(f"{href}: cannot be read as a raster ({exc})") from None
    document = item.to_dict(include_self_link=False)
    document["bbox"], document["geometry"] = antimeridian_footprint(
        list(document["bbox"]), document["geometry"])
    document["links"] = [link for link in document.get("links", [])
                         if link.get("rel") not in ("collection", "parent", "root")]
    document["collection"] = collection_id
    return document


def validate_cog(path: Path, label: str) -> None:
    from rio_cogeo.cogeo import cog_validate

    valid, errors, _ = cog_validate(str(path), quiet=True)
    if not valid:
        raise RasterItemError(f"{label} is not a valid Cloud Optimized GeoTIFF: "
                              f"{'; '.join(errors)}")


def item_for_blob(container: str, blob: str, item_id: str, collection_id: str, job_id: str,
                  require_cog: bool) -> dict[str, Any]:
    """Download the blob and make its item (a readable raster; a valid COG if required)."""
    from rasterio.errors import RasterioError

    storage = get_blob_storage()
    label = f"{container}/{blob}"
    info = storage.get_properties(container, blob)
    with tempfile.TemporaryDirectory(prefix="raster-item-") as folder:
        path = Path(folder) / Path(blob).name
        storage.download_file(container, blob, path)
        try:
            if require_cog:
                validate_cog(path, label)
            return raster_item(path, item_id, collection_id, storage.url(container, blob),
                               info.last_modified, provenance(label, job_id))
        except RasterioError as exc:
            raise RasterItemError(f"{label} cannot be read as a raster: {exc}") from None


def provenance(source: str, job_id: str) -> dict[str, Any]:
    """The engine's properties of an item: its source, the job that wrote it (and, kept
    on updates, the one that created it), created and updated."""
    now = iso(datetime.now(timezone.utc))
    return {"geojobs:source_file": source, "geojobs:job_id": job_id,
            "geojobs:created_by_job": job_id, "created": now, "updated": now}


def upsert_items(items: list[dict[str, Any]], collection_id: str, job_id: str
                 ) -> list[dict[str, Any]]:
    """Upsert each item (the collection created when missing); [{item_id, outcome}], an
    item this job's earlier delivery wrote still counting as inserted."""
    stac = StacRepository()
    stac.ensure_collection(collection_id, COLLECTION_DESCRIPTIONS.get(
        collection_id, f"STAC items of collection {collection_id}"))
    out = []
    for item in items:
        write = stac.upsert_item(item, merge=keep_creation)
        outcome = write.outcome
        if write.previous is not None and (write.previous.get("properties") or {}).get(
                "geojobs:created_by_job") == job_id:
            outcome = "inserted"
        out.append({"item_id": item["id"], "outcome": outcome,
                    "datetime": write.item["properties"].get("datetime")})
    return out
