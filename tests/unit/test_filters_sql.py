"""Typed filters compiled to LanceDB SQL: exact strings, and values that try to escape."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest
from pydantic import ValidationError

from modalfuse.engines.filters import Exists, Filter, Range, Term, Terms, check_filters
from modalfuse.engines.lancedb.filters import literal, predicate, where
from modalfuse.errors import InvalidInput
from modalfuse.mappings.schema import load_schema

COLUMNS = {
    "brand": pa.string(),
    "tags": pa.list_(pa.string()),
    "price": pa.float32(),
    "added": pa.timestamp("us", tz="UTC"),
}


@pytest.mark.parametrize(
    ("flt", "sql"),
    [
        (Term(field="brand", value="Puma"), "(`brand` = 'Puma')"),
        (Term(field="brand", value="x' OR '1'='1"), "(`brand` = 'x'' OR ''1''=''1')"),
        (Term(field="tags", value="summer"), "(array_has(`tags`, 'summer'))"),
        (Terms(field="brand", values=["a", "b"]), "(`brand` IN ('a', 'b'))"),
        (
            Terms(field="tags", values=["a", "b"]),
            "(array_has_any(`tags`, make_array('a', 'b')))",
        ),
        (Range(field="price", gte=10, lt=20.5), "(`price` >= 10 AND `price` < 20.5)"),
        (Exists(field="brand"), "(`brand` IS NOT NULL)"),
        (Exists(field="tags"), "((`tags` IS NOT NULL AND array_length(`tags`) > 0))"),
        (
            Term(field="brand", value="Puma", negate=True),
            "(`brand` IS NULL OR NOT (`brand` = 'Puma'))",
        ),
        (
            Range(field="added", gt=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
            "(`added` > arrow_cast('2024-01-02T03:04:05.000000', "
            "'Timestamp(Microsecond, Some(\"UTC\"))'))",
        ),
    ],
)
def test_predicates(flt: Term | Terms | Range | Exists, sql: str) -> None:
    assert predicate(flt, COLUMNS) == sql


def test_where_joins_with_base() -> None:
    filters: list[Filter] = [Term(field="brand", value="a"), Range(field="price", lte=3)]
    assert (
        where(filters, COLUMNS, base="`_deleted` = FALSE")
        == "`_deleted` = FALSE AND (`brand` = 'a') AND (`price` <= 3)"
    )


def test_bad_values_and_columns_are_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown column 'brand; DROP'"):
        predicate(Term(field="brand; DROP", value="x"), COLUMNS)
    with pytest.raises(InvalidInput, match="finite"):
        literal(float("inf"))
    with pytest.raises(InvalidInput, match="NUL"):
        literal("a\x00b")
    assert literal(True) == "TRUE"
    assert literal("back\\slash") == "'back\\slash'"


def test_filter_models_validate() -> None:
    with pytest.raises(ValidationError, match="at least one of gt"):
        Range(field="price")
    with pytest.raises(ValidationError, match="gt or gte"):
        Range(field="price", gt=1, gte=2)
    with pytest.raises(ValidationError):
        Terms(field="brand", values=[])


def test_check_filters_against_schema() -> None:
    schema = load_schema()
    check_filters(schema, [Term(field="brand", value="Puma"), Range(field="price", lt=5)])
    with pytest.raises(InvalidInput, match=r"filters\.0\.field: 'title' is not a filterable"):
        check_filters(schema, [Term(field="title", value="x")])
    with pytest.raises(InvalidInput, match="range filter on keyword field 'brand'"):
        check_filters(schema, [Range(field="brand", gt=1)])
    with pytest.raises(InvalidInput, match="'price' takes numbers"):
        check_filters(schema, [Term(field="price", value="cheap")])
    with pytest.raises(InvalidInput, match="'brand' takes strings"):
        check_filters(schema, [Terms(field="brand", values=[1])])
