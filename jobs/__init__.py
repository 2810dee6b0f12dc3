"""ALL_JOBS: every job, by job type. No decorators, no discovery: if it is not in this dict,
it does not exist. Checked at import against ALL_HANDLERS (core/registry.py)."""

from __future__ import annotations

from .hello_world import HelloWorldJob
from .ingest_vector import IngestVectorJob
from .process_raster import ProcessRasterJob
from .stac_catalog_container import StacCatalogContainerJob
from .stac_catalog_raster import StacCatalogRasterJob
from .list_container_contents import ListContainerContentsJob
from .list_container_contents_diamond import ListContainerContentsDiamondJob
from .stac_catalog_vectors import StacCatalogVectorsJob
from .summarize_container import SummarizeContainerJob
from .validate_raster_job import ValidateRasterJob

ALL_JOBS = {
    "hello_world": HelloWorldJob,
    "summarize_container": SummarizeContainerJob,
    "list_container_contents": ListContainerContentsJob,
    "list_container_contents_diamond": ListContainerContentsDiamondJob,
    "stac_catalog_vectors": StacCatalogVectorsJob,
    "validate_raster_job": ValidateRasterJob,
    "ingest_vector": IngestVectorJob,
    "process_raster": ProcessRasterJob,
    "stac_catalog_raster": StacCatalogRasterJob,
    "stac_catalog_container": StacCatalogContainerJob,
}


def validate_job_registry(jobs: dict = ALL_JOBS, handlers: dict | None = None) -> None:
    from core.registry import validate_registries
    from services import ALL_HANDLERS

    validate_registries(jobs, ALL_HANDLERS if handlers is None else handlers)


validate_job_registry()
