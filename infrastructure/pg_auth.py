"""Microsoft Entra authentication for Azure Database for PostgreSQL: an access token from
azure-identity is the password. PostgreSQL checks it only when a connection opens, so the
pool asks for the password per new connection, and the token is fetched again shortly
before it expires."""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

ENTRA_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"


class EntraTokenProvider:
    """Callable returning a valid token; thread-safe; refetches refresh_margin seconds
    before expiry. credential: any azure-identity TokenCredential (get_token(scope))."""

    def __init__(self, credential: Optional[Any] = None, refresh_margin: float = 300.0):
        self._credential = credential
        self._margin = refresh_margin
        self._lock = threading.Lock()
        self._token: Optional[str] = None
        self._expires_on = 0.0

    def _get_credential(self) -> Any:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return self._credential

    def __call__(self) -> str:
        with self._lock:
            if self._token is None or time.time() >= self._expires_on - self._margin:
                access = self._get_credential().get_token(ENTRA_SCOPE)
                self._token, self._expires_on = access.token, float(access.expires_on)
            return self._token
