"""ALL_HANDLERS: every task handler, by task type. No decorators, no discovery: if it is
not in this dict, it does not exist. A handler is handler(task_params, context) -> dict."""

from __future__ import annotations

from typing import Any, Callable

from .service_hello_world import handle_greeting, handle_reply
from . import service_ingest_vector as ingest_vector
from . import service_raster as raster
from .service_list_container import aggregate_blobs, analyze_blob, list_container_blobs
from .service_stac_catalog_vectors import stac_catalog_vectors
from .service_summarize_container import summarize_container
from .service_validate_raster import validate_raster_task

ALL_HANDLERS: dict[str, Callable[..., dict[str, Any]]] = {
    "hello_world_greeting": handle_greeting,
    "hello_world_reply": handle_reply,
    "summarize_container": summarize_container,
    "list_container_blobs": list_container_blobs,
    "analyze_blob": analyze_blob,
    "aggregate_blobs": aggregate_blobs,
    "stac_catalog_vectors": stac_catalog_vectors,
    "validate_raster": validate_raster_task,
    "ingest_vector_prepare": ingest_vector.prepare,
    "ingest_vector_load": ingest_vector.load_chunk,
    "ingest_vector_publish": ingest_vector.publish,
    "ingest_vector_cleanup": ingest_vector.cleanup,
    "process_raster_validate": raster.process_raster_validate,
    "process_raster_cog": raster.process_raster_cog,
    "process_raster_stac": raster.process_raster_stac,
    "process_raster_cleanup": raster.process_raster_cleanup,
    "stac_catalog_raster": raster.catalog_rasters,
}


def validate_handler_registry(handlers: dict[str, Any] = ALL_HANDLERS) -> None:
    from exceptions import RegistryError

    for task_type, handler in handlers.items():
        if not isinstance(task_type, str) or not task_type:
            raise RegistryError(f"ALL_HANDLERS key {task_type!r} must be a non-empty string")
        if not callable(handler):
            raise RegistryError(f"ALL_HANDLERS['{task_type}'] is not callable")


validate_handler_registry()
