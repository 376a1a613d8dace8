from pathlib import Path

import pytest
from pydantic import ValidationError

from modalfuse import errors
from modalfuse.settings import Settings


def test_env_prefix_and_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODALFUSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MODALFUSE_EXECUTION_PROVIDER", "cpu")
    s = Settings()
    assert s.data_dir == tmp_path
    assert s.models_dir == tmp_path / "models"
    assert s.index == "products"
    assert s.execution_provider == "cpu"


def test_explicit_model_cache_wins(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path, model_cache_dir=tmp_path / "m").models_dir == tmp_path / "m"


def test_bad_provider_is_rejected_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODALFUSE_EXECUTION_PROVIDER", "tpu")
    with pytest.raises(ValidationError, match="execution_provider"):
        Settings()


def test_every_error_shares_one_root() -> None:
    for name in (
        "ExportError",
        "ExportValidationError",
        "InvalidImage",
        "InvalidText",
        "InvalidDocument",
        "IndexingError",
        "RetrievalError",
        "ModelLoadError",
        "ProviderUnavailable",
    ):
        assert issubclass(getattr(errors, name), errors.ModalfuseError), name


def test_input_errors_name_their_field() -> None:
    e = errors.InvalidImage("not an image", field="images[3]")
    assert e.field == "images[3]" and str(e) == "images[3]: not an image"
    assert str(errors.IndexingError("rejected", doc_id="42")) == "document '42': rejected"


def test_readme_documents_every_setting() -> None:
    from pathlib import Path

    from modalfuse.settings import Settings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    missing = [n for n in Settings.model_fields if f"`MODALFUSE_{n.upper()}`" not in readme]
    assert missing == []
