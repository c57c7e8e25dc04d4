"""Feeds from JSON rows: by name or by position, cast to the model's dtype, and every bad feature
refused with the row and the feature named (HTTP 422)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.errors import ValidationFailed
from service.inference.features import build_feed


@pytest.fixture
def sig(demo_signatures):
    return demo_signatures["logistic"]


def _row(sig, offset: float = 0.0) -> dict:
    return {name: i + 0.25 + offset for i, name in enumerate(sig["feature_names"])}


def _fields(exc: ValidationFailed) -> dict[str, str]:
    return {e["field"]: e["message"] for e in exc.errors}


def test_rows_by_name_and_by_position_give_the_same_float32_feed(sig):
    by_name = _row(sig)
    reordered = dict(reversed(list(by_name.items())))
    by_position = list(by_name.values())
    feed = build_feed(sig, [by_name, reordered, by_position])
    matrix = feed["input"]
    assert list(feed) == ["input"] and matrix.dtype == np.float32 and matrix.shape == (3, 30)
    assert (matrix[0] == matrix[1]).all() and (matrix[0] == matrix[2]).all()
    assert matrix[0, 0] == np.float32(0.25) and matrix[0, 29] == np.float32(29.25)


def test_float64_values_are_cast_to_float32(sig):
    value = 0.1  # not exact in float32
    feed = build_feed(sig, [[value] * 30])
    assert feed["input"].dtype == np.float32 and feed["input"][0, 0] == np.float32(value)


def test_a_double_input_model_keeps_float64():
    sig = {"inputs": [{"name": "x", "shape": [None, 2], "dtype": "float64"}], "feature_names": ["a", "b"]}
    assert build_feed(sig, [[0.1, 2]])["x"].dtype == np.float64


@pytest.mark.parametrize("mutate, field, says", [
    (lambda r: r.pop("mean_radius"), "features.mean_radius", "is missing"),
    (lambda r: r.update(colour=1.0), "features.colour", "not a feature of this model"),
    (lambda r: r.update(mean_radius="12.5"), "features.mean_radius", "must be a number"),
    (lambda r: r.update(mean_texture=True), "features.mean_texture", "not true/false"),
    (lambda r: r.update(mean_area=None), "features.mean_area", "not null"),
    (lambda r: r.update(worst_symmetry=math.nan), "features.worst_symmetry", "finite"),
    (lambda r: r.update(worst_area=math.inf), "features.worst_area", "finite"),
    (lambda r: r.update(worst_area=-math.inf), "features.worst_area", "finite"),
    (lambda r: r.update(mean_smoothness=[1.0]), "features.mean_smoothness", "must be a number"),
])
def test_a_bad_feature_by_name_is_refused_naming_it(sig, mutate, field, says):
    row = _row(sig)
    mutate(row)
    with pytest.raises(ValidationFailed) as info:
        build_feed(sig, [row])
    assert info.value.status == 422
    assert says in _fields(info.value)[field]


@pytest.mark.parametrize("bad", ["x", True, False, None, math.nan, math.inf, {"v": 1}])
def test_a_bad_value_by_position_is_refused_naming_the_feature(sig, bad):
    row = list(_row(sig).values())
    row[3] = bad
    with pytest.raises(ValidationFailed) as info:
        build_feed(sig, [row])
    assert list(_fields(info.value)) == ["features.mean_area"]


@pytest.mark.parametrize("n", [0, 29, 31])
def test_the_wrong_number_of_values_is_refused(sig, n):
    with pytest.raises(ValidationFailed) as info:
        build_feed(sig, [[1.0] * n])
    assert f"has {n} values; the model takes 30 features" in _fields(info.value)["features"]


@pytest.mark.parametrize("row", ["1,2,3", 5, None])
def test_a_row_that_is_neither_object_nor_array_is_refused(sig, row):
    with pytest.raises(ValidationFailed) as info:
        build_feed(sig, [row])
    assert "object keyed by feature name or an array" in _fields(info.value)["features"]


def test_errors_in_a_batch_name_the_row_and_every_bad_feature(sig):
    rows = [_row(sig, k) for k in range(4)]
    rows[2]["mean_radius"] = "big"
    rows[3].pop("worst_texture")
    with pytest.raises(ValidationFailed) as info:
        build_feed(sig, rows)
    fields = _fields(info.value)
    assert set(fields) == {"features[2].mean_radius", "features[3].worst_texture"}


def test_the_error_list_is_bounded(sig):
    with pytest.raises(ValidationFailed) as info:
        build_feed(sig, [["x"] * 30] * 10)
    assert len(info.value.errors) == 20 and "at least 20" in info.value.detail


def test_a_nan_in_a_well_typed_row_is_found_beside_other_rows_errors(sig):
    """Well-typed rows take a fast path whose finiteness is checked once for the batch: a NaN there
    is still named, together with the errors of rows that took the slow path."""
    rows = [list(_row(sig, k).values()) for k in range(3)]
    rows[0][1] = math.nan
    rows[2][4] = "x"
    with pytest.raises(ValidationFailed) as info:
        build_feed(sig, rows)
    assert set(_fields(info.value)) == {"features[0].mean_texture", "features[2].mean_smoothness"}


def test_well_typed_rows_by_name_and_position_give_the_same_matrix(sig):
    by_name = [_row(sig, k) for k in range(5)]
    by_position = [list(r.values()) for r in by_name]
    a, b = build_feed(sig, by_name), build_feed(sig, by_position)
    assert all((a[k] == b[k]).all() for k in a)
