"""stac_catalog_vectors: a STAC item for an existing PostGIS table (seed 002's catalogue
job). One task reads the table's geometry column, SRID, extent (in EPSG:4326), row count
and geometry types, and upserts the item `postgis-{schema}-{table}` into the collection
(created when missing): cataloguing the same table again updates its item."""

from __future__ import annotations

from typing import Any

from config import get_settings
from exceptions import JobValidationError
from jobs.base import JobBase
from jobs.declarations import SubmitCheck
from jobs.geo_params import COLLECTION_RULE, collection_parameter
from jobs.mixins import JobBaseMixin, SingleTaskJobMixin
from jobs.validation_errors import named_pattern_error

TABLE_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,62}"
TABLE_RULE = ("1 to 63 characters: letters, digits and underscores, not starting with a "
              "digit")
RULES = {"table_name": TABLE_RULE, "collection_id": COLLECTION_RULE}


class StacCatalogVectorsJob(SingleTaskJobMixin, JobBaseMixin, JobBase):
    job_type = "stac_catalog_vectors"
    description = "Catalogue an existing PostGIS table as a STAC item"
    requires = ("postgis",)

    stages = [{"number": 1, "name": "catalog", "task_type": "stac_catalog_vectors",
               "parallelism": "single"}]

    parameters_schema = {
        "table_name": {"type": "str", "required": True, "pattern": TABLE_NAME,
                       "description": "the table to catalogue"},
        "schema": {"type": "str", "default": "geo", "min_length": 1, "max_length": 63,
                   "description": "its schema, one of GEO_ALLOWED_SCHEMAS"},
        "collection_id": collection_parameter("system-vectors"),
        "source_file": {"type": "str", "min_length": 1, "max_length": 1024,
                        "description": "the file the table was loaded from"},
        "source_datetime": {"type": "datetime",
                            "description": "the data's date; when left out, the time "
                                           "it is catalogued"},
        "snapshot": {"type": "str", "min_length": 1, "max_length": 200,
                     "description": "a label of your own: the same table catalogued "
                                    "again under another snapshot is a new job"},
    }

    submit_checks = (
        SubmitCheck("geo_vector_table", parameter="table_name",
                    arguments={"schema": "schema", "table": "table_name"}),
    )

    @classmethod
    def validate_job_parameters(cls, params: Any) -> dict[str, Any]:
        with named_pattern_error(params, RULES):
            validated = super().validate_job_parameters(params)
        allowed = get_settings().geo_schemas
        if validated["schema"] not in allowed:
            raise JobValidationError(
                f"Parameter 'schema' must be one of the allowed schemas "
                f"({', '.join(allowed)}; GEO_ALLOWED_SCHEMAS), got {validated['schema']!r}",
                "schema")
        return validated

