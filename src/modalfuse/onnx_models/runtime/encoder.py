"""The `Encoder` protocol and its onnxruntime implementation over an encoder directory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from modalfuse.errors import UnsupportedModality
from modalfuse.onnx_models.batching import encode_in_order
from modalfuse.onnx_models.manifest import Manifest, read_manifest
from modalfuse.onnx_models.runtime.image import ImageInput, load_image, preprocess
from modalfuse.onnx_models.runtime.session import Session
from modalfuse.onnx_models.runtime.text import TextPreprocessor
from modalfuse.settings import Settings

Vectors = NDArray[np.float32]


@runtime_checkable
class Encoder(Protocol):
    """Turns texts and/or images into L2-normalised float32 rows of width `dim`."""

    @property
    def dim(self) -> int: ...

    def encode_texts(self, texts: Sequence[str]) -> Vectors: ...

    def encode_images(self, images: Sequence[ImageInput]) -> Vectors: ...


def l2_normalize(x: NDArray[Any]) -> Vectors:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    # An all-zero row stays zero instead of turning into NaN.
    return np.asarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


class OnnxEncoder:
    """An exported encoder directory, run on onnxruntime. Sessions open on first use."""

    def __init__(
        self,
        directory: Path,
        *,
        settings: Settings | None = None,
        io_binding: bool | None = None,
    ) -> None:
        self.directory = directory
        self.manifest: Manifest = read_manifest(directory)
        self._settings = settings or Settings()
        self._io_binding = io_binding
        self._text: tuple[TextPreprocessor, Session] | None = None
        self._image: Session | None = None

    @property
    def dim(self) -> int:
        return self.manifest.dim

    @property
    def has_text(self) -> bool:
        return self.manifest.text is not None

    @property
    def has_images(self) -> bool:
        return self.manifest.image is not None

    def _session(self, graph: str) -> Session:
        return Session(
            self.directory / graph,
            provider=self._settings.execution_provider,
            intra_op_threads=self._settings.intra_op_threads,
            io_binding=self._io_binding,
            spinning=self._settings.onnx_thread_spinning,
        )

    def _text_parts(self) -> tuple[TextPreprocessor, Session]:
        config = self.manifest.text
        if config is None:
            raise UnsupportedModality(f"encoder {self.manifest.name!r} has no text graph")
        if self._text is None:
            self._text = (TextPreprocessor(self.directory, config), self._session(config.graph))
        return self._text

    def _image_session(self) -> Session:
        if self.manifest.image is None:
            raise UnsupportedModality(f"encoder {self.manifest.name!r} has no image graph")
        if self._image is None:
            self._image = self._session(self.manifest.image.graph)
        return self._image

    @property
    def provider(self) -> str:
        session = self._text_parts()[1] if self.has_text else self._image_session()
        return session.provider

    def encode_texts(self, texts: Sequence[str], *, batch_size: int | None = None) -> Vectors:
        pre, session = self._text_parts()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encodings = pre.tokenize(texts)

        def run(batch: list[Any]) -> Vectors:
            return l2_normalize(session.run(pre.pad(batch)))

        return encode_in_order(
            encodings,
            [len(e.ids) for e in encodings],
            batch_size or self._settings.encode_batch_size,
            run,
            self.dim,
        )

    def encode_images(
        self, images: Sequence[ImageInput], *, batch_size: int | None = None
    ) -> Vectors:
        session = self._image_session()
        config = self.manifest.image
        assert config is not None  # checked by _image_session
        loaded = [
            load_image(
                img,
                max_bytes=self._settings.max_image_bytes,
                max_pixels=self._settings.max_image_pixels,
                field=f"images[{i}]",
            )
            for i, img in enumerate(images)
        ]
        if not loaded:
            return np.zeros((0, self.dim), dtype=np.float32)
        size = batch_size or self._settings.encode_batch_size
        out = np.empty((len(loaded), self.dim), dtype=np.float32)
        for start in range(0, len(loaded), size):
            pixels = preprocess(loaded[start : start + size], config)
            out[start : start + size] = l2_normalize(session.run({"pixel_values": pixels}))
        return out
