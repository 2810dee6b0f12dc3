"""pypgstac, imported in one place. Importing pypgstac.db replaces psycopg's process-wide
JSON adapters with orjson's (set_json_dumps / set_json_loads), which would change how the
engine's own JSON columns are written and read; they are put back at once. pypgstac's
Loader serializes with orjson itself; a dict given to PgstacDB.func becomes Jsonb through
json.dumps (so dates go in as ISO strings)."""

from __future__ import annotations

import json

from psycopg.types.json import set_json_dumps, set_json_loads
from pypgstac.db import PgstacDB
from pypgstac.migrate import Migrate

set_json_dumps(json.dumps)
set_json_loads(json.loads)

__all__ = ["Migrate", "PgstacDB"]
