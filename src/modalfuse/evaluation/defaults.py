"""The modes `modalfuse eval` runs when none are named (kept apart so the CLI reads them without
importing the query layer)."""

DEFAULT_MODES = (
    "lexical",
    "text_vector",
    "text_to_image",
    "hybrid",
    "hybrid-rrf",
    "hybrid-minmax",
    "hybrid-zscore",
)
