"""Microsoft Entra authentication: the token is the password of each new connection,
fetched again before it expires; a credential stand-in counts the fetches."""

import time
from dataclasses import dataclass

from psycopg.conninfo import conninfo_to_dict

from config import Settings
from infrastructure.db import Database, resolve_database_url
from infrastructure.pg_auth import ENTRA_SCOPE, EntraTokenProvider


@dataclass
class AccessToken:
    token: str
    expires_on: int


class CountingCredential:
    """Stands in for DefaultAzureCredential: hands out numbered tokens."""

    def __init__(self, lifetime: float):
        self.lifetime = lifetime
        self.scopes = []

    def get_token(self, *scopes):
        self.scopes.append(scopes)
        return AccessToken(f"token-{len(self.scopes)}", int(time.time() + self.lifetime))


def test_token_is_cached_until_close_to_expiry():
    credential = CountingCredential(lifetime=3600)
    provider = EntraTokenProvider(credential, refresh_margin=300)
    assert provider() == "token-1"
    assert provider() == "token-1"
    assert credential.scopes == [(ENTRA_SCOPE,)]


def test_token_is_fetched_again_when_it_nears_expiry():
    credential = CountingCredential(lifetime=100)  # already inside the 300 s margin
    provider = EntraTokenProvider(credential, refresh_margin=300)
    assert [provider(), provider(), provider()] == ["token-1", "token-2", "token-3"]


def test_each_new_pool_connection_asks_for_the_password(database_url):
    # Given a pool whose password comes from a provider (the test server ignores it)
    asked = []

    def password():
        asked.append(1)
        return "secret"

    db = Database(database_url, min_size=2, max_size=4, password=password).open()
    try:
        # When the pool opens its connections, then each one asked once
        with db.connection() as conn:
            assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
        assert len(asked) >= 2
        assert db.connect_kwargs() == {"password": "secret"}
    finally:
        db.close()


def test_entra_auth_requires_tls(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://app-identity@server.postgres.database.azure.com/jobs")
    monkeypatch.setenv("DATABASE_AUTH", "entra")
    params = conninfo_to_dict(resolve_database_url(Settings()))
    assert params["sslmode"] == "require"
    assert params["user"] == "app-identity"
