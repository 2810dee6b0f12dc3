"""ingest_vector's parameters: the schema, and the rules across parameters checked after
it (a CSV's coordinate columns, the CRSs, the table name, the allowed schemas)."""

from __future__ import annotations

from typing import Any, Callable

from config import get_settings
from exceptions import JobValidationError
from jobs.container_params import CONTAINER_NAME, CONTAINER_RULE
from jobs.geo_params import check_crs
from jobs.validation_errors import named_pattern_error

FORMATS = ("csv", "geojson", "json", "gpkg", "kml", "kmz", "shp", "zip", "parquet")
TABLE_NAME = r"[a-z][a-z0-9_]{0,62}"
TABLE_RULE = ("1 to 63 characters after lowercasing: letters, digits and underscores, "
              "starting with a letter")
IF_EXISTS = ("fail", "replace", "append")

_NAME = {"type": "str", "min_length": 1, "max_length": 255}

PARAMETERS: dict[str, dict[str, Any]] = {
    "blob_name": {"type": "str", "required": True, "min_length": 1, "max_length": 1024,
                  "description": "the vector file's blob (a .shp's .shx, .dbf and .prj "
                                 "beside it)"},
    "container_name": {"type": "str", "pattern": CONTAINER_NAME,
                       "description": "its container (default: BRONZE_VECTORS_CONTAINER, "
                                      "bronze-vectors)"},
    "file_extension": {"type": "str", "choices": list(FORMATS),
                       "description": "the file's format when its name does not say it"},
    "table_name": {"type": "str", "required": True, "pattern": TABLE_NAME,
                   "description": "the PostGIS table to write (lowercased)"},
    "schema": {"type": "str", "default": "geo", "min_length": 1, "max_length": 63,
               "description": "its schema, one of GEO_ALLOWED_SCHEMAS"},
    "if_exists": {"type": "str", "default": "fail", "choices": list(IF_EXISTS),
                  "description": "when the table exists: fail, replace it, or append"},
    "chunk_size": {"type": "int", "min": 100, "max": 500_000,
                   "description": "rows per chunk (default: about 50 MB of GeoParquet)"},
    "converter_params": {"type": "object", "default": {}, "fields": {
        "lat_name": {**_NAME, "description": "CSV: the latitude column"},
        "lon_name": {**_NAME, "description": "CSV: the longitude column"},
        "wkt_column": {**_NAME, "description": "CSV: the column of WKT geometries"},
        "layer_name": {**_NAME, "description": "GeoPackage or KML: the layer to load"},
        "shp_name": {**_NAME, "description": "zip: the Shapefile to load, when it holds "
                                             "several"},
    }},
    "source_crs": {"type": "str", "min_length": 1, "max_length": 2000,
                   "description": "the CRS of a file that has none (EPSG:xxxx or WKT)"},
    "target_crs": {"type": "str", "default": "EPSG:4326", "min_length": 1,
                   "max_length": 2000, "description": "the table's CRS (an EPSG code)"},
    "indexes": {"type": "object", "default": {}, "fields": {
        "spatial": {"type": "bool", "default": True,
                    "description": "a GiST index on geom"},
        "attributes": {"type": "list", "default": [], "max_length": 50,
                       "items": {"type": "str", "min_length": 1, "max_length": 63},
                       "description": "columns to index (as named in the table)"},
    }},
    "geometry_params": {"type": "object", "default": {}, "fields": {
        "simplify": {"type": "object", "fields": {
            "tolerance": {"type": "float", "required": True, "min": 0,
                          "description": "in target_crs units"},
            "preserve_topology": {"type": "bool", "default": True},
        }},
        "quantize": {"type": "object", "fields": {
            "snap_to_grid": {"type": "float", "required": True, "min": 0,
                             "description": "grid size in target_crs units"},
        }},
    }},
}

CSV_ONLY = ("lat_name", "lon_name", "wkt_column")


def _lowered(params: Any) -> Any:
    if not isinstance(params, dict):
        return params
    out = dict(params)
    for key in ("table_name", "file_extension"):
        if isinstance(out.get(key), str):
            out[key] = out[key].strip().lower().lstrip(".") if key == "file_extension" \
                else out[key].lower()
    return out


def _extension_of(blob_name: str) -> str:
    name = blob_name.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def _converter_rules(params: dict[str, Any], fmt: str) -> None:
    conv = params["converter_params"]
    if ("lat_name" in conv) != ("lon_name" in conv):
        given, missing = ("lat_name", "lon_name") if "lat_name" in conv else \
            ("lon_name", "lat_name")
        raise JobValidationError(
            f"Parameter 'converter_params.{missing}' is required with "
            f"converter_params.{given}: a point needs both coordinates",
            f"converter_params.{missing}")
    if "lat_name" in conv and "wkt_column" in conv:
        raise JobValidationError(
            "Parameters 'converter_params.wkt_column' and converter_params.lat_name/"
            "lon_name exclude each other: give the coordinate columns or the WKT column",
            "converter_params.wkt_column")
    for key in CSV_ONLY:
        if key in conv and fmt not in ("csv", "zip"):
            raise JobValidationError(
                f"Parameter 'converter_params.{key}' applies to CSV files only; this file "
                f"is {fmt}", f"converter_params.{key}")
    if "shp_name" in conv and fmt != "zip":
        raise JobValidationError(
            f"Parameter 'converter_params.shp_name' applies to zip files only; this file "
            f"is {fmt}", "converter_params.shp_name")


def validate_ingest_parameters(validate: Callable[[Any], dict[str, Any]],
                               params: Any) -> dict[str, Any]:
    """validate: the schema's validation; then the defaults from settings and the rules
    across parameters."""
    raw = _lowered(params)
    with named_pattern_error(raw, {"table_name": TABLE_RULE,
                                   "container_name": CONTAINER_RULE}):
        out = validate(raw)
    settings = get_settings()
    out["container_name"] = out.get("container_name") or settings.bronze_vectors_container
    if out["schema"] not in settings.geo_schemas:
        raise JobValidationError(
            f"Parameter 'schema' must be one of the allowed schemas "
            f"({', '.join(settings.geo_schemas)}; GEO_ALLOWED_SCHEMAS), got "
            f"{out['schema']!r}", "schema")
    fmt = out.get("file_extension") or _extension_of(out["blob_name"])
    if fmt not in FORMATS:
        raise JobValidationError(
            f"Parameter 'file_extension' is needed: the blob name "
            f"{out['blob_name']!r} does not end in a supported format; give one of "
            f"{', '.join(FORMATS)}", "file_extension")
    out["file_extension"] = fmt
    _converter_rules(out, fmt)
    if out.get("source_crs"):
        check_crs(out["source_crs"], "source_crs")
    target = check_crs(out["target_crs"], "target_crs")
    epsg = target.to_epsg()
    if not epsg:
        raise JobValidationError(
            f"Parameter 'target_crs' must have an EPSG code (the table's SRID), got "
            f"{out['target_crs']!r}", "target_crs")
    out["target_crs"] = f"EPSG:{epsg}"
    out["indexes"] = {"spatial": out["indexes"].get("spatial", True),
                      "attributes": sorted(set(out["indexes"].get("attributes", [])))}
    return out
