"""The connection every part of the OpenSearch engine shares: a lazy client (created after a
Celery worker forks) and one mapping of transport failures to typed errors."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from modalfuse.engines.base import Closable
from modalfuse.errors import ConfigError, EngineUnavailable, IndexNotFound, RetrievalError
from modalfuse.settings import Settings

T = TypeVar("T")


def serializer() -> Any:
    """opensearch-py's JSON serializer, with orjson both ways.

    Writing: a bulk request is mostly vectors. The stock serializer turns each float32 into a
    Python float and prints its 17-digit double repr; orjson prints a float32 array's shortest
    round-tripping repr (the same float32 on the node), in half the bytes and a small fraction
    of the time, and the node has half the text to parse, store and compress
    (docs/opensearch.md, "Ingest", measures it). Reading: a search that returns stored vectors
    (diversity over a vector) carries hundreds of KB of floats.
    """
    import orjson
    from opensearchpy.serializer import JSONSerializer

    class Orjson(JSONSerializer):
        def dumps(self, data: Any) -> Any:
            if isinstance(data, (str, bytes)):
                return data  # already a body (bytes: a Smile bulk body, smile.py)
            try:
                return orjson.dumps(
                    data, option=orjson.OPT_SERIALIZE_NUMPY, default=self.default
                ).decode()
            except orjson.JSONEncodeError:
                return str(super().dumps(data))  # the stock error (SerializationError)

        def loads(self, s: str) -> Any:
            try:
                return orjson.loads(s)
            except orjson.JSONDecodeError:
                return super().loads(s)  # the stock error (SerializationError)

    return Orjson()


CONNECTIONS_PER_HOST = 32


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `opensearchpy.OpenSearch` from settings (auth and TLS included)."""
    hosts = [h.strip() for h in settings.opensearch_url.split(",") if h.strip()]
    if not hosts:
        raise ConfigError("opensearch_url is empty")
    options: dict[str, Any] = {
        "hosts": hosts,
        "timeout": settings.opensearch_timeout_s,
        "verify_certs": settings.opensearch_verify_certs,
        "ssl_show_warn": settings.opensearch_verify_certs,
        "serializer": serializer(),
        # Connections kept per host: the API serves searches from a thread pool, and a pool of
        # one (urllib3's default) opens and drops a connection per concurrent search.
        "maxsize": CONNECTIONS_PER_HOST,
    }
    if any(urlsplit(h).scheme == "https" for h in hosts):
        options["use_ssl"] = True
    if settings.opensearch_ca_certs is not None:
        options["ca_certs"] = str(settings.opensearch_ca_certs)
    if settings.opensearch_user is not None:
        password = settings.opensearch_password
        options["http_auth"] = (
            settings.opensearch_user,
            password.get_secret_value() if password is not None else "",
        )
    return options


class Connection(Closable):
    """Settings, the lazy client and `_call`; the engine's parts build on it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Any = None
        self._pid: int | None = None
        self._facts: dict[str, tuple[list[str], dict[str, int], list[str]]] = {}
        self._pipelines: set[str] = set()
        self._bulk_formats: dict[str, Literal["smile", "json"]] = {}
        self._version: tuple[int, int] | None = None
        self._fusion_problem: str | None = None  # "" once the cluster was found able to fuse
        self.commit_retries = 0  # OpenSearch orders concurrent writes itself
        self.read_retries = 0  # searches retried after a transient failure (a node lost)

    @property
    def client(self) -> Any:
        # One client per process: a client (and its connection pool) inherited across fork()
        # shares sockets with the parent.
        if self._client is None or self._pid != os.getpid():
            from opensearchpy import OpenSearch

            self._client = OpenSearch(**client_options(self._settings))
            self._pid = os.getpid()
        return self._client

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        from opensearchpy.exceptions import (
            ConnectionError,
            NotFoundError,
            TransportError,
        )

        try:
            return fn()
        except ConnectionError as e:  # includes ConnectionTimeout and SSL errors
            raise EngineUnavailable(f"{what}: cannot reach OpenSearch: {e}") from e
        except NotFoundError as e:
            raise IndexNotFound(f"{what}: {e.error}") from e
        except TransportError as e:
            if e.status_code in (429, 502, 503, 504):
                raise EngineUnavailable(f"{what}: OpenSearch answered {e.status_code}") from e
            raise RetrievalError(f"{what}: OpenSearch answered {e.status_code}: {e.info}") from e

    def refresh(self, index: str) -> None:
        self._call("refresh", lambda: self.client.indices.refresh(index=index))

    def server_version(self) -> tuple[int, int]:
        if self._version is None:
            number = self._call("info", lambda: self.client.info())["version"]["number"]
            major, minor = (int(x) for x in str(number).split(".")[:2])
            self._version = (major, minor)
        return self._version

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
