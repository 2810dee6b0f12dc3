"""ingest_vector: a vector file from blob storage into a PostGIS table, then a STAC item
for it (seed 002's "Vector ETL Jobs"; ../shared/design/geo-jobs.md).

    stage 1 prepare  one task reads the file in chunks, cleans the geometries, maps the
                     columns, writes each chunk to the temp container as GeoParquet and
                     creates the job's staging table
    stage 2 load     one task per chunk COPYs it into the staging table, exactly once (a
                     file of one chunk is loaded by prepare itself, streamed as it is
                     read: no task here)
    stage 3 publish  one task makes the table appear complete in one transaction (fail,
                     replace or append), indexes it, catalogues it and deletes the chunks

A failed job's cleanup task drops its staging table and deletes its chunks. The source
blob's etag is part of the job id: a corrected file is a new job, the same file the same
job."""

from __future__ import annotations

from typing import Any, Optional

from jobs.base import JobBase, JobExecutionContext
from jobs.declarations import SubmitCheck
from jobs.ingest_vector_params import PARAMETERS, validate_ingest_parameters
from jobs.mixins import JobBaseMixin


class IngestVectorJob(JobBaseMixin, JobBase):
    job_type = "ingest_vector"
    description = ("Load a vector file (CSV, GeoJSON, GeoPackage, KML/KMZ, Shapefile, "
                   "GeoParquet) into a PostGIS table and catalogue it in STAC")
    requires = ("postgis",)

    stages = [
        {"number": 1, "name": "prepare", "task_type": "ingest_vector_prepare",
         "parallelism": "single", "timeout_seconds": 540},
        # two loads at once per host: COPYs into one table contend past that, and each
        # holds its chunk in memory (docs/performance.md, "Vector ingest")
        {"number": 2, "name": "load", "task_type": "ingest_vector_load",
         "parallelism": "fan_out", "timeout_seconds": 540, "max_concurrency": 2},
        {"number": 3, "name": "publish", "task_type": "ingest_vector_publish",
         "parallelism": "single", "timeout_seconds": 540},
    ]
    parameters_schema = PARAMETERS
    cleanup_task_type = "ingest_vector_cleanup"

    submit_checks = (
        SubmitCheck("blob_etag", parameter="blob_name", identity="source_etag",
                    arguments={"container": "container_name", "blob": "blob_name"}),
        SubmitCheck("geo_table_absent", parameter="table_name",
                    arguments={"schema": "schema", "table": "table_name"},
                    when=lambda p: p["if_exists"] == "fail"),
    )

    @classmethod
    def validate_job_parameters(cls, params: Any) -> dict[str, Any]:
        return validate_ingest_parameters(super().validate_job_parameters, params)

    @staticmethod
    def create_tasks_for_stage(stage: int, job_params: dict[str, Any], job_id: str,
                               previous_results: Optional[list] = None) -> list[dict]:
        if stage == 1:
            return [{"parameters": job_params}]
        if stage == 2:
            prepared = previous_results[0]["result"]
            return [{"parameters": {"chunk": chunk["index"], "blob": chunk["blob"],
                                    "rows": chunk["rows"],
                                    "multi": prepared["promote_to_multi"]}}
                    for chunk in prepared["chunks"] if not chunk.get("loaded")]
        return [{"parameters": job_params}]

    @classmethod
    def finalize_job(cls, context: JobExecutionContext) -> dict[str, Any]:
        prepared = context.results_for_stage(1)[0].result_data or {}
        published = context.results_for_stage(3)[0].result_data or {}
        loads = [t.result_data or {} for t in context.results_for_stage(2)]
        return {
            "job_type": cls.job_type,
            "source": f"{context.parameters['container_name']}/"
                      f"{context.parameters['blob_name']}",
            "rows_read": prepared.get("rows_read", 0),
            "rows_dropped": prepared.get("rows_dropped", {}),
            "rows_repaired": prepared.get("rows_repaired", 0),
            "rows_loaded": published.get("rows_loaded",
                                         sum(load.get("rows", 0) for load in loads)),
            "chunks": len(prepared.get("chunks", [])),
            "table": published.get("table"),
            "if_exists": context.parameters["if_exists"],
            "outcome": published.get("outcome"),
            "geometry_type": prepared.get("geometry_type"),
            "srid": prepared.get("srid"),
            "bbox": published.get("bbox"),
            "columns": prepared.get("columns", []),
            "columns_renamed": prepared.get("columns_renamed", {}),
            "indexes": published.get("indexes", []),
            "stac_item_id": published.get("stac_item_id"),
            "collection_id": published.get("collection_id"),
        }
