"""`modalfuse eval` never reports figures from an index that lost documents: a dataset whose
`images/` folder is a symlink to a shared store evaluates fully, a broken image stops the run
with its reason (or, with --allow-partial, marks the table partial), and an index that lost
documents is never reused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from modalfuse.sample import SAMPLE_DIR, load_catalogue
from modalfuse.settings import Settings
from tests.integration.test_cli import _run

pytestmark = [pytest.mark.needs_export, pytest.mark.slow]
COUNT = 40


def linked_dataset(root: Path) -> Path:
    """A BEIR-layout set of COUNT products whose images/ is a link to a store outside it."""
    store = root / "store"
    store.mkdir(parents=True)
    dataset = root / "linked-set"
    (dataset / "qrels").mkdir(parents=True)
    (dataset / "images").symlink_to(store, target_is_directory=True)
    rows = [(i, f) for i, f in load_catalogue() if f.get("image")][:COUNT]
    corpus, queries, qrels = [], [], ["query-id\tcorpus-id\tscore"]
    for n, (doc_id, fields) in enumerate(rows):
        shutil.copyfile(SAMPLE_DIR / fields["image"], store / f"{doc_id}.jpg")
        corpus.append({"_id": doc_id, "title": fields["title"], "image": f"images/{doc_id}.jpg"})
        if n % 4 == 0:
            queries.append({"_id": f"q{n}", "text": " ".join(fields["title"].split()[:3])})
            qrels.append(f"q{n}\t{doc_id}\t1")
    (dataset / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (dataset / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (dataset / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    return dataset


def test_symlinked_images_evaluate_and_a_broken_one_stops_the_run(
    tmp_path: Path, settings: Settings, minilm_fp32: Path
) -> None:
    dataset = linked_dataset(tmp_path / "data")
    env = {
        "MODALFUSE_DATA_DIR": str(tmp_path / "modalfuse"),
        "MODALFUSE_MODEL_CACHE_DIR": str(settings.models_dir),
    }

    def args(folder: Path) -> list[str]:
        return ["eval", str(folder), "--modes", "lexical,image,hybrid", "--json"]

    first = _run(args(dataset), settings, **env)
    assert first.returncode == 0, first.stderr
    built = json.loads(first.stdout)["index"]
    assert built["in_index"] == built["documents"] == COUNT and built["dead_lettered"] == 0

    # A second copy of the set with one unreadable image: a new index, one document lost.
    broken = tmp_path / "broken" / "linked-set"
    shutil.copytree(dataset, broken, symlinks=False)
    victim = sorted((broken / "images").iterdir())[0]
    victim.write_bytes(b"not an image at all")
    second = env | {"MODALFUSE_DATA_DIR": str(tmp_path / "second")}
    refused = _run(args(broken), settings, **second)
    assert refused.returncode == 1
    assert f"1 of {COUNT} document(s) dead-lettered" in refused.stderr
    assert "InvalidImage" in refused.stderr and "--allow-partial" in refused.stderr
    assert json.loads(refused.stdout)["error"] == "partial index"

    partial = _run([*args(broken), "--allow-partial"], settings, **second)
    assert partial.returncode == 0, partial.stderr
    result = json.loads(partial.stdout)
    assert result["partial"] == {"in_index": COUNT - 1, "documents": COUNT}
    assert result["index"]["reused"] is False  # an index that lost documents is never reused
    [reason] = result["index"]["dead_letter_reasons"]
    assert (reason["error_type"], reason["count"]) == ("InvalidImage", 1)

    # Fixed (the file changed, so the dataset's fingerprint did: a new, complete index).
    shutil.copyfile(sorted((dataset / "images").iterdir())[0], victim)
    fixed = _run(args(broken), settings, **second)
    assert fixed.returncode == 0, fixed.stderr
    done = json.loads(fixed.stdout)
    assert done["index"]["in_index"] == COUNT and done["index"]["dead_lettered"] == 0
    assert "partial" not in done
