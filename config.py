"""Settings: every value the app reads, from environment variables (app settings in Azure,
local.settings.json "Values" under the local host).

Nothing is read at import time: call get_settings(). Every field is documented in
local.settings.json.example, and a test keeps the two lists the same.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal, Optional

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Queue names are part of the product's design; the trigger decorators need them at import,
# so they are constants rather than settings.
JOBS_QUEUE = "geospatial-jobs"
TASKS_QUEUE = "geospatial-tasks"
SERVICE_BUS_CONNECTION = "ServiceBusConnection"
# Schemas GEO_ALLOWED_SCHEMAS may not name.
RESERVED_SCHEMAS = frozenset({"app", "pgstac", "public", "information_schema", "topology",
                              "tiger", "tiger_data"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # PostgreSQL. Unset: the embedded PostgreSQL (pgserver, a development dependency) in
    # EMBEDDED_PG_DIR. Set: any PostgreSQL, as a libpq connection URI or key=value string.
    database_url: Optional[str] = Field(default=None, alias="DATABASE_URL")
    # "password": credentials in DATABASE_URL (or PGPASSWORD). "entra": a Microsoft Entra
    # token of the app's managed identity is the password (the user in DATABASE_URL is the
    # identity's PostgreSQL role), over TLS.
    database_auth: Literal["password", "entra"] = Field(default="password", alias="DATABASE_AUTH")
    embedded_pg_dir: str = Field(default=".local/pgdata", alias="EMBEDDED_PG_DIR")
    db_pool_min_size: int = Field(default=1, ge=0, alias="DB_POOL_MIN_SIZE")
    # Above the local host's default concurrency (2 + 8) so HTTP and lock renewal always
    # find a connection.
    db_pool_max_size: int = Field(default=20, ge=1, alias="DB_POOL_MAX_SIZE")

    # Queues: "servicebus" (Azure Service Bus) or "embedded" (a queue table in the same
    # PostgreSQL, for local runs and tests). Unset: servicebus when a connection is set.
    queue_backend: Optional[Literal["servicebus", "embedded"]] = Field(
        default=None, alias="QUEUE_BACKEND"
    )
    service_bus_connection: Optional[str] = Field(default=None, alias=SERVICE_BUS_CONNECTION)
    service_bus_namespace: Optional[str] = Field(
        default=None, alias="ServiceBusConnection__fullyQualifiedNamespace"
    )

    # Sending to Service Bus: the SDK retries what it classifies as transient (never
    # permanent errors), with exponential backoff; the engine adds no retries of its own
    # on top. A send, retries included, gives up after SERVICE_BUS_SEND_TIMEOUT_SECONDS:
    # submit then answers 503 and the message waits in the outbox for the sweeper.
    service_bus_retry_total: int = Field(default=3, ge=0, alias="SERVICE_BUS_RETRY_TOTAL")
    service_bus_retry_backoff_seconds: float = Field(
        default=0.5, gt=0, alias="SERVICE_BUS_RETRY_BACKOFF_SECONDS")
    service_bus_retry_backoff_max_seconds: float = Field(
        default=8.0, gt=0, alias="SERVICE_BUS_RETRY_BACKOFF_MAX_SECONDS")
    service_bus_send_timeout_seconds: float = Field(
        default=20.0, gt=0, alias="SERVICE_BUS_SEND_TIMEOUT_SECONDS")

    # Embedded queue: Service Bus's own defaults (lock 60 s, 10 deliveries).
    queue_lock_seconds: float = Field(default=60.0, gt=0, alias="QUEUE_LOCK_SECONDS")
    queue_max_delivery_count: int = Field(default=10, ge=1, alias="QUEUE_MAX_DELIVERY_COUNT")
    # Duplicate detection, as a Service Bus queue with requiresDuplicateDetection: a
    # message whose id was sent within this window is dropped. 0: off.
    queue_duplicate_detection_seconds: float = Field(
        default=600.0, ge=0, alias="QUEUE_DUPLICATE_DETECTION_SECONDS")

    # Blob storage for the jobs' data (infrastructure/blob_storage.py). In Azure:
    # STORAGE_ACCOUNT_URL (https://<account>.blob.core.windows.net), authenticated with
    # the app's managed identity. Else STORAGE_CONNECTION_STRING (locally: Azurite's
    # development account, which the local host and make set when unset).
    storage_account_url: Optional[str] = Field(default=None, alias="STORAGE_ACCOUNT_URL")
    storage_connection_string: Optional[str] = Field(
        default=None, alias="STORAGE_CONNECTION_STRING")
    # The zone containers (../shared/design/geo-jobs.md): inputs, outputs, intermediates.
    bronze_vectors_container: str = Field(default="bronze-vectors",
                                          alias="BRONZE_VECTORS_CONTAINER")
    bronze_rasters_container: str = Field(default="bronze-rasters",
                                          alias="BRONZE_RASTERS_CONTAINER")
    bronze_misc_container: str = Field(default="bronze-misc", alias="BRONZE_MISC_CONTAINER")
    silver_cogs_container: str = Field(default="silver-cogs", alias="SILVER_COGS_CONTAINER")
    silver_vectors_container: str = Field(default="silver-vectors",
                                          alias="SILVER_VECTORS_CONTAINER")
    silver_stac_assets_container: str = Field(default="silver-stac-assets",
                                              alias="SILVER_STAC_ASSETS_CONTAINER")
    silver_temp_container: str = Field(default="silver-temp", alias="SILVER_TEMP_CONTAINER")

    # ingest_vector's limits: the largest input blob (a Shapefile's siblings counted), and
    # the most an archive (zip, kmz) may expand to; a larger file fails at once, naming
    # the setting.
    vector_max_file_mb: float = Field(default=4096.0, gt=0, alias="VECTOR_MAX_FILE_MB")
    vector_max_extracted_mb: float = Field(default=8192.0, gt=0,
                                           alias="VECTOR_MAX_EXTRACTED_MB")
    # The raster jobs' limit: the largest input raster (downloaded to the temporary disk);
    # a larger one fails at once, naming the setting.
    raster_max_file_mb: float = Field(default=10240.0, gt=0, alias="RASTER_MAX_FILE_MB")
    # process_raster keeps the source it downloaded for validation on the instance's
    # temporary disk for its COG tasks (services/raster_source_cache.py): at most this
    # much (least recently used out first); 0 downloads it for every task.
    raster_source_cache_mb: float = Field(default=20480.0, ge=0,
                                          alias="RASTER_SOURCE_CACHE_MB")

    # The geospatial database (infrastructure/geo_db.py): vector tables in the allowed
    # schemas, the STAC catalogue in schema pgstac. GEO_DATABASE_URL when set, else
    # DATABASE_URL's database (its server must have PostGIS), else the local PostGIS server
    # (infrastructure/local_postgis.py) that make serve / make demo / make postgis start.
    # DATABASE_AUTH applies to it too.
    geo_database_url: Optional[str] = Field(default=None, alias="GEO_DATABASE_URL")
    # The schemas vector jobs may write to, comma-separated; created on first use where the
    # role may. Never app, pgstac, public or a system schema.
    geo_allowed_schemas: str = Field(default="geo", alias="GEO_ALLOWED_SCHEMAS")
    # On first use: create the extensions (postgis, btree_gist, unaccent) and the allowed
    # schemas, and install or upgrade pgstac with pypgstac's migrations, under an advisory
    # lock. false (Azure): only check; the deploy step (make migrate GEO=1 with an
    # administrator's URL) does it, since pgstac's migrations create roles.
    geo_auto_migrate: bool = Field(default=True, alias="GEO_AUTO_MIGRATE")
    # The administrator's URL make migrate GEO=1 uses for the geospatial database when it
    # is not DATABASE_URL's (else MIGRATIONS_DATABASE_URL, else the geospatial URL itself).
    geo_migrations_database_url: Optional[str] = Field(
        default=None, alias="GEO_MIGRATIONS_DATABASE_URL")
    # The local PostGIS server: its folder, its port on 127.0.0.1 (0: a free one) and the
    # PostgreSQL bin folder to run it from (unset: pg_config, Debian's and Homebrew's
    # places, the first whose PostgreSQL has PostGIS).
    local_postgis_dir: str = Field(default=".local/postgis", alias="LOCAL_POSTGIS_DIR")
    local_postgis_port: int = Field(default=0, ge=0, le=65535, alias="LOCAL_POSTGIS_PORT")
    local_postgis_bin_dir: Optional[str] = Field(default=None, alias="LOCAL_POSTGIS_BIN_DIR")

    # Local host: how many messages of each queue run at once.
    local_job_concurrency: int = Field(default=2, ge=1, alias="LOCAL_JOB_CONCURRENCY")
    local_task_concurrency: int = Field(default=8, ge=1, alias="LOCAL_TASK_CONCURRENCY")
    # Local host: check function keys as Azure does (LOCAL_CHECK_KEYS=true): a FUNCTION
    # level route needs LOCAL_FUNCTION_KEY or LOCAL_MASTER_KEY, an ADMIN level route the
    # master key, in the x-functions-key header or the code query parameter (else 401).
    # Off by default, like func start.
    local_check_keys: bool = Field(default=False, alias="LOCAL_CHECK_KEYS")
    local_function_key: Optional[str] = Field(default=None, alias="LOCAL_FUNCTION_KEY")
    local_master_key: Optional[str] = Field(default=None, alias="LOCAL_MASTER_KEY")

    # Application Insights: set in Azure to send logs with job_id, task_id and stage as
    # custom dimensions (infrastructure/telemetry.py). Unset locally: no telemetry.
    applicationinsights_connection_string: Optional[str] = Field(
        default=None, alias="APPLICATIONINSIGHTS_CONNECTION_STRING"
    )

    # Migrations use this URL when set (e.g. port 5432 when DATABASE_URL goes through a
    # transaction-mode pooler, which breaks session advisory locks); else DATABASE_URL.
    migrations_database_url: Optional[str] = Field(default=None, alias="MIGRATIONS_DATABASE_URL")

    # Task retries: a transient or unknown failure runs again after
    # min(base * 2**retry, cap) seconds, up to max retries; then the task and its job fail.
    task_retry_base_seconds: float = Field(default=5.0, ge=0, alias="TASK_RETRY_BASE_SECONDS")
    task_retry_cap_seconds: float = Field(default=300.0, ge=0, alias="TASK_RETRY_CAP_SECONDS")
    task_max_retries: int = Field(default=3, ge=0, alias="TASK_MAX_RETRIES")
    # A handler running longer fails as transient (a stage may set its own timeout_seconds).
    # Below host.json's functionTimeout (10 min), so the engine, not the host, ends it.
    task_timeout_seconds: float = Field(default=540.0, gt=0, alias="TASK_TIMEOUT_SECONDS")
    # Batch mode (process_task_batch): how many of a batch's handlers run at once, in
    # threads. Sized for I/O-bound work (blob reads, database calls); a stage caps its own
    # with "max_concurrency" (per process, in both trigger modes).
    task_batch_concurrency: int = Field(default=16, ge=1, alias="TASK_BATCH_CONCURRENCY")
    # host.json's functionTimeout, in seconds: the host kills an invocation then. Start-up
    # refuses a value that differs from host.json's, and any stage timeout that does not
    # fit in it less INVOCATION_RESERVE_SECONDS.
    function_timeout_seconds: float = Field(default=600.0, gt=0,
                                            alias="FUNCTION_TIMEOUT_SECONDS")
    # The end of an invocation kept for recording outcomes: a handler starts only while
    # its whole timeout fits before functionTimeout less this; a task that no longer fits
    # is handed back (queued again at once, under a new message id, no retry used).
    invocation_reserve_seconds: float = Field(default=30.0, ge=0,
                                              alias="INVOCATION_RESERVE_SECONDS")
    # A running task's lease, refreshed every third of it; longer than a queue lock (60 s).
    # A lease that lapses means the worker died: the sweeper runs the task again.
    task_lease_seconds: float = Field(default=180.0, gt=0, alias="TASK_LEASE_SECONDS")
    # The sweeper re-drives what has been stuck this long: unsent messages, finished
    # stages not moved on, queued tasks whose message was lost (x10).
    sweep_after_seconds: float = Field(default=60.0, gt=0, alias="SWEEP_AFTER_SECONDS")
    # A stage opens in chunks of this many tasks, each chunk's tasks and messages in a
    # transaction of its own (the whole list is stored first): a stage of 100,000 tasks
    # never holds one transaction's locks for long.
    stage_chunk_size: int = Field(default=2000, ge=1, alias="STAGE_CHUNK_SIZE")
    # Retention: the sweeper purges jobs that ended this many days ago (their records
    # only, never their outputs), RETENTION_BATCH_SIZE per status per sweep. 0: kept for
    # ever.
    retention_completed_days: float = Field(default=30.0, ge=0,
                                            alias="RETENTION_COMPLETED_DAYS")
    retention_completed_with_errors_days: float = Field(
        default=90.0, ge=0, alias="RETENTION_COMPLETED_WITH_ERRORS_DAYS")
    retention_failed_days: float = Field(default=90.0, ge=0, alias="RETENTION_FAILED_DAYS")
    retention_cancelled_days: float = Field(default=90.0, ge=0,
                                            alias="RETENTION_CANCELLED_DAYS")
    retention_batch_size: int = Field(default=200, ge=1, alias="RETENTION_BATCH_SIZE")

    # Diagnostics: when set, each process counts its SQL statements and transactions
    # (embedded queue vs engine) and writes them as JSON to <SQL_STATS_FILE>.<pid>.json at
    # exit (infrastructure/sql_stats.py; used by `make bench`). Unset: nothing is counted.
    sql_stats_file: Optional[str] = Field(default=None, alias="SQL_STATS_FILE")

    # HTTP: the largest request body accepted, in bytes.
    max_request_bytes: int = Field(default=1_048_576, ge=1024, alias="MAX_REQUEST_BYTES")

    @field_validator("database_url", "service_bus_connection", "service_bus_namespace",
                     "applicationinsights_connection_string", "migrations_database_url",
                     "sql_stats_file", "storage_account_url", "storage_connection_string",
                     "local_function_key", "local_master_key",
                     "geo_database_url", "geo_migrations_database_url",
                     "local_postgis_bin_dir")
    @classmethod
    def _blank_is_unset(cls, value: Optional[str]) -> Optional[str]:
        return value or None

    @field_validator("geo_allowed_schemas")
    @classmethod
    def _schema_names(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        if not names:
            raise ValueError("name at least one schema (default: geo)")
        for name in names:
            if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
                raise ValueError(f"{name!r} is not a schema name: lowercase letters, digits "
                                 "and underscores, not starting with a digit")
            if name in RESERVED_SCHEMAS or name.startswith("pg_"):
                raise ValueError(f"{name!r} is reserved (the engine's, the catalogue's or "
                                 "the system's); allowed schemas hold vector tables only")
        return ",".join(names)

    @property
    def geo_schemas(self) -> list[str]:
        return self.geo_allowed_schemas.split(",")

    @property
    def effective_queue_backend(self) -> str:
        if self.queue_backend:
            return self.queue_backend
        if self.service_bus_connection or self.service_bus_namespace:
            return "servicebus"
        return "embedded"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget cached settings (tests and the local host change the environment)."""
    get_settings.cache_clear()
