"""The encoders one process uses, loaded once on first use and shared by its threads: what both
an ingest worker and the query layer hold.

Roles: `text` (the text encoder), `image` (the image encoder) and `text_to_image` (the image
model's text side: a CLIP export's text tower, or, for an image encoder aligned to the text
encoder, the text encoder itself).
"""

from __future__ import annotations

import threading

from modalfuse.errors import ModelLoadError
from modalfuse.onnx_models.manifest import read_manifest
from modalfuse.onnx_models.runtime.encoder import OnnxEncoder
from modalfuse.settings import Settings


class EncoderPool:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loaded: dict[str, OnnxEncoder | None] = {}
        # Re-entrant: loading the text side of an aligned encoder loads the text encoder.
        self._lock = threading.RLock()

    def get(self, role: str) -> OnnxEncoder | None:
        """The encoder for `role`, or None when none is configured for it."""
        with self._lock:
            if role not in self._loaded:
                self._loaded[role] = self._load(role)
            return self._loaded[role]

    def require(self, role: str, *, why: str | None = None) -> OnnxEncoder:
        encoder = self.get(role)
        if encoder is None:
            raise ModelLoadError(why or f"no {role} encoder is configured")
        return encoder

    def shares_text_embedding(self) -> bool:
        """Whether `text_to_image` is driven by the text encoder's own query vector."""
        side = self.get("text_to_image")
        return side is not None and side is self.get("text")

    def text_side_problem(self) -> str:
        """Why there is no `text_to_image` encoder, in words."""
        from modalfuse.onnx_models import registry

        image_dir = registry.image_encoder_dir(self.settings)
        manifest = read_manifest(image_dir) if image_dir is not None else None
        if manifest is not None and manifest.aligned_to is not None:
            return (
                f"the image encoder is aligned to {manifest.aligned_to!r}, not to the configured "
                f"text encoder {self.require('text').manifest.name!r}"
            )
        return "the image encoder has no text side"

    def _load(self, role: str) -> OnnxEncoder | None:
        from modalfuse.onnx_models import registry

        if role == "text":
            return OnnxEncoder(registry.text_encoder_dir(self.settings), settings=self.settings)
        image_dir = registry.image_encoder_dir(self.settings)
        if image_dir is None:
            return None
        if role == "image":
            return OnnxEncoder(image_dir, settings=self.settings)
        manifest = read_manifest(image_dir)
        if manifest.text is not None:
            return OnnxEncoder(image_dir, settings=self.settings)
        if manifest.aligned_to is not None:
            text = self.get("text")
            # Only the text encoder it was trained against shares its space.
            if text is not None and text.manifest.name == manifest.aligned_to:
                return text
        return None
