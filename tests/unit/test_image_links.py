"""The symlink policy for local images: a link is followed only when its target lies inside an
allowed root; the folders a dataset links to are what `ingest FILE` and `eval` add as roots."""

from __future__ import annotations

from pathlib import Path

import pytest

from modalfuse.errors import InvalidImage
from modalfuse.images.sources import confined_path, linked_image_folders


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    store = tmp_path / "store"
    store.mkdir()
    (store / "a.jpg").write_bytes(b"x")
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "images").symlink_to(store, target_is_directory=True)
    (dataset / "own.jpg").write_bytes(b"y")
    return dataset, store


def test_a_link_out_of_the_roots_is_refused_naming_both_paths(layout: tuple[Path, Path]) -> None:
    dataset, store = layout
    given = str(dataset / "images" / "a.jpg")
    with pytest.raises(InvalidImage) as err:
        confined_path(given, [dataset], field="image")
    message = str(err.value)
    assert given in message and str((store / "a.jpg").resolve()) in message
    assert err.value.field == "image"
    assert confined_path(given, [dataset, store], field="image") == (store / "a.jpg").resolve()
    assert confined_path(str(dataset / "own.jpg"), [dataset], field="image").name == "own.jpg"


def test_linked_folders_are_those_inside_the_dataset_that_lead_out(
    layout: tuple[Path, Path], tmp_path: Path
) -> None:
    dataset, store = layout
    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes(b"z")
    paths = [
        "images/a.jpg",  # relative, through the link: its real folder is added
        str(dataset / "images" / "a.jpg"),
        str(dataset / "own.jpg"),  # inside, no link: nothing to add
        str(outside),  # not inside the dataset as written: never widens the roots
        "images/missing.jpg",
        "https://example.com/x.jpg",
    ]
    assert linked_image_folders(paths, dataset) == {store.resolve()}


def test_the_api_answers_image_urls_not_server_paths() -> None:
    from modalfuse.query.links import with_image_urls
    from modalfuse.query.request import SearchHit, SearchResponse, Variant

    hit = SearchHit(
        id="a/1",
        score=1.0,
        fields={"title": "Dress", "image": "/srv/photos/1.jpg", "alt": "https://cdn.x/1.jpg"},
        variants=[Variant(id="2", score=0.5, fields={"image": "/srv/photos/2.jpg"})],
    )
    response = SearchResponse(
        index="shop", hits=[hit], total=1, retrievers=["lexical"], fusion="auto", timings_ms={}
    )
    linked = with_image_urls(response, ["image", "alt"], index="shop")
    assert linked.hits[0].fields == {
        "title": "Dress",
        "image": "/images/a%2F1?index=shop",
        "alt": "https://cdn.x/1.jpg",  # already a URL the client can fetch
    }
    assert linked.hits[0].variants is not None
    assert linked.hits[0].variants[0].fields == {"image": "/images/2?index=shop"}
    assert with_image_urls(response, ["image"], index=None).hits[0].fields["image"] == (
        "/images/a%2F1"
    )
    assert response.hits[0].fields["image"] == "/srv/photos/1.jpg"  # the input is not changed
