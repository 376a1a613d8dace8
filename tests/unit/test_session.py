import pytest

from modalfuse.errors import ProviderUnavailable
from modalfuse.onnx_models.runtime.session import choose_providers

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def test_auto_prefers_tensorrt_then_cuda_then_cpu() -> None:
    assert choose_providers("auto", [CPU, CUDA, TRT, "AzureExecutionProvider"]) == [TRT, CUDA, CPU]
    assert choose_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("auto", [CPU]) == [CPU]


def test_forced_provider_keeps_cpu_fallback() -> None:
    assert choose_providers("cuda", [TRT, CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("cpu", [CUDA, CPU]) == [CPU]


def test_forced_missing_provider_names_what_is_available() -> None:
    with pytest.raises(
        ProviderUnavailable,
        match=r"'tensorrt'.*available: CPUExecutionProvider, AzureExecutionProvider",
    ):
        choose_providers("tensorrt", [CPU, "AzureExecutionProvider"])
