"""modalfuse: multimodal hybrid search (BM25 + dense vectors, fused with RRF).

The stage folders at the top of the repository import as subpackages of this one:
`modalfuse.onnx_models`, `modalfuse.ingest`, `modalfuse.query`, `modalfuse.mappings`,
`modalfuse.engines`.
"""

from modalfuse.errors import ModalfuseError
from modalfuse.settings import Settings

__version__ = "0.1.0"
__all__ = ["ModalfuseError", "Settings", "__version__"]
