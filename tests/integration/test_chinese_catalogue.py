"""A hand-written Chinese catalogue (mixed scripts: brands, model numbers, full-width forms)
through the real queue into the bundled products-zh schema, on LanceDB and on the OpenSearch
node, encoded by bge-small-zh-v1.5: the same queries find the same listings on both engines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from modalfuse import Searcher, SearchRequest, open_engine
from modalfuse.errors import EncoderMismatch
from modalfuse.query.request import RetrieverName
from modalfuse.service.indexes import create_index
from modalfuse.service.ingest import WorkerSpec, ingest_and_wait
from modalfuse.settings import Settings
from tests.conftest import dropped_after, opensearch_settings, unique_name

LISTINGS = [
    ("1", "韩国AHC黄金面霜 24K 紧致抗皱", "AHC", "面霜"),
    ("2", "AHC B5玻尿酸爽肤水 补水保湿", "AHC", "爽肤水"),
    ("3", "AHC B5玻尿酸乳液 清爽型", "AHC", "乳液"),
    ("4", "兰蔻小黑瓶精华液 Lancome Genifique 50ml", "兰蔻", "精华"),
    ("5", "雅诗兰黛小棕瓶眼霜 15ml 抗蓝光", "雅诗兰黛", "眼霜"),
    ("6", "SK-II神仙水 230ml 护肤精华露", "SK-II", "精华"),
    ("7", "\uff33\uff2b\uff0d\uff29\uff29 大红瓶面霜 80g", "SK-II", "面霜"),  # full width
    ("8", "欧莱雅男士控油洗面奶 100ml", "欧莱雅", "洁面"),
    ("9", "佳能 EF 24-70mm f/2.8L II USM 镜头", "佳能", "镜头"),
    ("10", "小米 Redmi Note 12 手机壳 磨砂", "小米", "配件"),
    ("11", "华为 Mate 60 Pro 钢化膜 防窥", "华为", "配件"),
    ("12", "耐克 Air Force 1 男子运动鞋 白色", "耐克", "运动鞋"),
    ("13", "阿迪达斯 Ultraboost 跑步鞋 女款", "阿迪达斯", "运动鞋"),
    ("14", "李宁 韦德之道 篮球鞋 Z62 配色", "李宁", "运动鞋"),
    ("15", "优衣库 UT 印花T恤 纯棉 男女同款", "优衣库", "T恤"),
    ("16", "红色连衣裙 夏季 雪纺 显瘦", "无品牌", "连衣裙"),
    ("17", "黑色真皮手提包 女士 通勤", "无品牌", "手提包"),
    ("18", "飞利浦 电动牙刷 HX6730 声波", "飞利浦", "牙刷"),
    ("19", "戴森 V12 Detect Slim 无线吸尘器", "戴森", "吸尘器"),
    ("20", "美的 空气炸锅 MF-KZ30E 3L", "美的", "厨电"),
    ("21", "三只松鼠 每日坚果 750g 礼盒", "三只松鼠", "零食"),
    ("22", "农夫山泉 天然水 550ml\u00d724瓶 整箱", "农夫山泉", "饮料"),
    ("23", "蘭蔻 粉水 400ml 保濕", "兰蔻", "爽肤水"),  # traditional forms
    ("24", "Apple iPhone 15 硅胶保护壳 MagSafe", "Apple", "配件"),
]
# Query -> the listing it must find first on both engines (lexically, fused and by vector).
QUERIES = {
    "AHC 面霜": "1",
    "ahc b5 乳液": "3",
    "兰蔻 小黑瓶": "4",
    "神仙水": "6",
    "24-70mm 镜头": "9",
    "Z62": "14",
    "红色连衣裙": "16",
    "HX6730": "18",
}


@pytest.fixture(scope="module")
def catalogue_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("zh") / "listings.jsonl"
    rows = [{"id": i, "title": t, "brand": b, "category": c} for i, t, b, c in LISTINGS]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", "utf-8")
    return path


def _zh(s: Settings) -> Settings:
    return s.model_copy(update={"text_encoder": "bge-small-zh-v1.5", "image_encoder": None})


def _ingest_and_search(s: Settings, index: str, path: Path, tmp: Path) -> dict[str, list[str]]:
    with open_engine(s) as engine:
        made = create_index(engine, s, schema="products-zh", name=index)
    assert made.resolved.vectors["text_vector"].field.model == "bge-small-zh-v1.5"
    report = ingest_and_wait(path, s, index=index, worker=WorkerSpec(log=tmp / "worker.log"))
    assert (report.indexed, report.dead_lettered) == (len(LISTINGS), 0), report
    found: dict[str, list[str]] = {}
    with Searcher(s) as searcher:
        for query in QUERIES:
            modes: list[tuple[str, list[RetrieverName] | None]] = [
                ("lexical", ["lexical"]),
                ("hybrid", None),
            ]
            for mode, retrievers in modes:
                req = SearchRequest(index=index, text=query, size=5, retrievers=retrievers)
                found[f"{mode}:{query}"] = [h.id for h in searcher.search(req).hits]
        # The index names its encoder: queries encoded by another are refused, naming both.
        other = Searcher(s.model_copy(update={"text_encoder": "default"}))
        with other, pytest.raises(EncoderMismatch, match=r"bge-small-zh-v1\.5"):
            other.search(SearchRequest(index=index, text="面霜", retrievers=["text_vector"]))
    return found


@pytest.fixture(scope="module")
def on_lancedb(
    catalogue_file: Path, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[str]]:
    tmp = tmp_path_factory.mktemp("zh-lance")
    s = _zh(settings.model_copy(update={"data_dir": tmp, "model_cache_dir": settings.models_dir}))
    return _ingest_and_search(s, "zh-shop", catalogue_file, tmp)


@pytest.fixture(scope="module")
def on_opensearch(
    catalogue_file: Path,
    settings: Settings,
    opensearch_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, list[str]]]:
    tmp = tmp_path_factory.mktemp("zh-os")
    s = _zh(opensearch_settings(opensearch_url, tmp, model_cache_dir=settings.models_dir))
    index = unique_name("zh-shop")
    with open_engine(s) as engine, dropped_after(engine, index):
        yield _ingest_and_search(s, index, catalogue_file, tmp)


def test_queries_find_their_listing_on_lancedb(on_lancedb: dict[str, list[str]]) -> None:
    for query, expected in QUERIES.items():
        assert on_lancedb[f"lexical:{query}"][0] == expected, (query, on_lancedb)
        assert on_lancedb[f"hybrid:{query}"][0] == expected, (query, on_lancedb)


@pytest.mark.opensearch
def test_both_engines_find_the_same_listings(
    on_lancedb: dict[str, list[str]], on_opensearch: dict[str, list[str]]
) -> None:
    for query in QUERIES:
        # The same tokens and BM25 on both: the same lexical lists, the same fused first hit.
        assert on_opensearch[f"lexical:{query}"] == on_lancedb[f"lexical:{query}"], query
        assert on_opensearch[f"hybrid:{query}"][0] == on_lancedb[f"hybrid:{query}"][0], query


def test_text_to_image_is_refused_with_the_reason_and_image_search_works(
    settings: Settings, tmp_path: Path
) -> None:
    from modalfuse import Indexer
    from modalfuse.errors import InvalidInput
    from modalfuse.sample import SAMPLE_DIR

    s = settings.model_copy(
        update={"data_dir": tmp_path, "model_cache_dir": settings.models_dir}
    ).model_copy(update={"text_encoder": "bge-small-zh-v1.5", "index": "zh-photos"})
    photo = sorted((SAMPLE_DIR / "images").glob("*.jpg"))[0]
    with open_engine(s) as engine:
        create_index(engine, s, schema="products-zh", name="zh-photos")
    with Indexer(settings=s, image_roots=[SAMPLE_DIR]) as indexer:
        assert indexer.add([{"id": "1", "title": "红色连衣裙", "image": str(photo)}]).indexed == 1
    with Searcher(s) as searcher:
        with pytest.raises(InvalidInput, match="aligned to 'all-MiniLM-L6-v2', not to the conf"):
            searcher.search(SearchRequest(text="红色", retrievers=["text_to_image"]))
        by_photo = searcher.search(SearchRequest(image=photo.read_bytes()))
        assert by_photo.retrievers == ["image"] and by_photo.hits[0].id == "1"
        assert searcher.search(SearchRequest(text="连衣裙")).retrievers == [
            "lexical",
            "text_vector",
        ]
