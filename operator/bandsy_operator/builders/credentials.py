"""What a service's pods get to reach its databases: the keys of ``<svc>-postgres``/``-redis``."""

from __future__ import annotations

from urllib.parse import quote


def _q(value: str) -> str:
    return quote(value, safe="")


def postgres_env(
    host: str, port: int, sslmode: str, user: str, database: str, password: str
) -> dict[str, str]:
    url = (
        f"postgresql://{_q(user)}:{_q(password)}@{host}:{port}/{_q(database)}?sslmode={_q(sslmode)}"
    )
    return {
        "PGHOST": host,
        "PGPORT": str(port),
        "PGDATABASE": database,
        "PGUSER": user,
        "PGPASSWORD": password,
        "PGSSLMODE": sslmode,
        "DATABASE_URL": url,
    }


def redis_env(
    host: str, port: int, tls: bool, user: str, password: str, prefix: str
) -> dict[str, str]:
    scheme = "rediss" if tls else "redis"
    return {
        "REDIS_URL": f"{scheme}://{_q(user)}:{_q(password)}@{host}:{port}/0",
        "REDIS_USERNAME": user,
        "REDIS_PASSWORD": password,
        "REDIS_KEY_PREFIX": prefix,
    }


def mongo_env(
    host: str, port: int, tls: bool, user: str, database: str, password: str
) -> dict[str, str]:
    options = f"authSource={_q(database)}" + ("&tls=true" if tls else "")
    return {
        "MONGODB_URI": f"mongodb://{_q(user)}:{_q(password)}@{host}:{port}/{_q(database)}?{options}",
        "MONGODB_USERNAME": user,
        "MONGODB_PASSWORD": password,
        "MONGODB_DATABASE": database,
    }
