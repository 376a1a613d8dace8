"""onnxruntime sessions: execution-provider choice, threading, and IO binding on CUDA."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from modalfuse.errors import ModelLoadError, ProviderUnavailable
from modalfuse.settings import Provider

log = logging.getLogger(__name__)

PROVIDER_NAMES: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
AUTO_ORDER = ("tensorrt", "cuda", "cpu")


def choose_providers(requested: Provider, available: Sequence[str]) -> list[str]:
    """Providers to hand to onnxruntime, best first. Pure, so the rule is testable without a GPU.

    `auto` keeps every available provider of TensorRT > CUDA > CPU, so onnxruntime can place the
    nodes a faster provider cannot run on the next one. A forced provider that is missing fails
    and names what is there.
    """
    if requested == "auto":
        return [PROVIDER_NAMES[p] for p in AUTO_ORDER if PROVIDER_NAMES[p] in available]
    name = PROVIDER_NAMES[requested]
    if name not in available:
        raise ProviderUnavailable(
            f"execution provider {requested!r} ({name}) is not available; "
            f"available: {', '.join(available) or 'none'}"
        )
    # CPU always stays as the fallback for nodes the forced provider does not implement.
    return [name] if name == PROVIDER_NAMES["cpu"] else [name, PROVIDER_NAMES["cpu"]]


class Session:
    """One ONNX graph loaded for inference."""

    def __init__(
        self,
        path: Path,
        *,
        provider: Provider = "auto",
        intra_op_threads: int = 0,
        io_binding: bool | None = None,
        spinning: bool = False,
    ) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        if not spinning:
            # Idle intra-op threads otherwise spin for a while after each run. A worker
            # alternates a text and an image session per batch, and a query hands over to the
            # engine's search threads: spinning threads steal those cores (measured: -25%
            # ingest throughput on 2 cores), for ~0.5 ms less latency per lone call.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = choose_providers(provider, ort.get_available_providers())
        try:
            self._session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # onnxruntime raises its own non-exported exception types
            if provider != "auto" or len(providers) == 1:
                raise ModelLoadError(f"{path}: onnxruntime could not load the graph: {e}") from e
            # A listed GPU provider can still fail to start (missing CUDA/TensorRT libraries).
            log.warning("providers %s failed (%s); falling back to CPU", providers, e)
            self._session = ort.InferenceSession(
                str(path), options, providers=[PROVIDER_NAMES["cpu"]]
            )
        self.providers: list[str] = list(self._session.get_providers())
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]
        # IO binding avoids a host round trip per output on CUDA; on CPU it buys nothing.
        self.io_binding = (
            self.providers[0] == PROVIDER_NAMES["cuda"] if io_binding is None else io_binding
        )

    @property
    def provider(self) -> str:
        return self.providers[0]

    def run(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        """Run the graph and return its first output."""
        feeds = {k: v for k, v in feeds.items() if k in self.input_names}
        if not self.io_binding:
            result: np.ndarray[Any, Any] = self._session.run(self.output_names[:1], feeds)[0]
            return result
        binding = self._session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        binding.bind_output(self.output_names[0], "cpu")
        self._session.run_with_iobinding(binding)
        out: np.ndarray[Any, Any] = binding.copy_outputs_to_cpu()[0]
        return out
