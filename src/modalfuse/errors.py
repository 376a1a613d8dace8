"""One exception root for the whole package, with a subtype per failure kind.

Callers catch `ModalfuseError` for "anything modalfuse refused or failed at"; ingest decides
retry versus dead-letter from the subtype (`TransientError` subclasses are the retryable ones).
"""

from __future__ import annotations


class ModalfuseError(Exception):
    """Root of every error modalfuse raises on purpose."""


class ConfigError(ModalfuseError):
    """A setting or an argument is invalid."""


class EncoderMismatch(ConfigError):
    """An index's vectors were made by one encoder and this process would use another."""


class SchemaError(ConfigError):
    """An index schema is invalid; `field` names the offending field."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}" if field else message)


class TransientError(ModalfuseError):
    """A failure that may succeed on retry (engine unreachable, 429, fetch timeout)."""


class EngineUnavailable(TransientError):
    """The search engine could not be reached or timed out."""


class InvalidInput(ModalfuseError):
    """Input that can never succeed; `field` names where it is wrong."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}" if field else message)


class RuleNotFound(InvalidInput):
    """A merchandising rule that the index does not have."""


class InvalidText(InvalidInput):
    """A text that cannot be encoded (not UTF-8, lone surrogates, wrong type)."""


class InvalidImage(InvalidInput):
    """Bytes that are not an accepted image (corrupt, wrong format, too large)."""


class ImageTooLarge(InvalidImage):
    """An image over the byte cap (the API answers 413)."""


class SearchTimeout(ModalfuseError):
    """A search ran past its time limit and was stopped (the API answers 504)."""


class InvalidDocument(InvalidInput):
    """A document that fails validation against its index schema."""


class ModelLoadError(ModalfuseError):
    """A model or encoder directory is missing parts or has an unsupported architecture."""


class ExportError(ModalfuseError):
    """Exporting a model to ONNX failed."""


class ExportValidationError(ExportError):
    """An exported graph does not match its PyTorch reference within tolerance."""


class ProviderUnavailable(ModalfuseError):
    """A forced onnxruntime execution provider is not available in this install."""


class UnsupportedModality(ModalfuseError):
    """An encoder was asked for a modality it has no graph for (images on a text model)."""


class IndexingError(ModalfuseError):
    """A write to a search engine failed; `doc_id` names the document when known.

    `transient` marks per-item failures worth retrying (429 left after the bulk retries, 5xx).
    """

    def __init__(self, message: str, *, doc_id: str | None = None, transient: bool = False) -> None:
        self.doc_id = doc_id
        self.transient = transient
        super().__init__(f"document {doc_id!r}: {message}" if doc_id else message)


class WorkerExited(ModalfuseError):
    """The worker an ingest was waiting on is gone: its log says why."""


class IndexNotFound(ModalfuseError):
    """The named index or alias does not exist."""


class RetrievalError(ModalfuseError):
    """A search against an engine failed."""
