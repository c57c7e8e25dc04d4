"""Build an onnxruntime feed from JSON rows, or say exactly which feature is wrong.

A row is a JSON object keyed by feature name or an array in the signature's order.  Numbers only:
a bool, a string, null, NaN or an infinity is refused (422) with the row and feature named.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from service.errors import ValidationFailed, field_error

MAX_ERRORS = 20
_NUMBER_TYPES = frozenset((int, float))  # exact types: bool (an int subclass) is refused


def _all_finite_numbers(values: list[Any]) -> bool:
    return all(map(_NUMBER_TYPES.__contains__, map(type, values))) and all(map(math.isfinite, values))


def _where(i: int, n_rows: int, name: str | int) -> str:
    prefix = "features" if n_rows == 1 else f"features[{i}]"
    return f"{prefix}.{name}" if isinstance(name, str) else f"{prefix}[{name}]"


def _bad_value(value: Any) -> str | None:
    if type(value) is int or type(value) is float:  # noqa: E721 - bool is an int subclass and must be refused
        return None if math.isfinite(value) else "must be a finite number (NaN and infinity are refused)"
    if isinstance(value, bool):
        return "must be a number, not true/false"
    if value is None:
        return "must be a number, not null"
    return f"must be a number, not {type(value).__name__} {str(value)[:40]!r}"


def matrix(signature: dict[str, Any], rows: list[Any]) -> np.ndarray:
    """Rows as a float64 matrix in the signature's feature order (raises ValidationFailed)."""
    names: list[str] = signature["feature_names"]
    n = len(names)
    known = set(names)
    errors: list[dict[str, str]] = []
    out = np.empty((len(rows), n), dtype=np.float64)
    for i, row in enumerate(rows):
        # fast path: a well-formed row, checked by C-level map/all; anything else gets the diagnosis below
        if type(row) is list and len(row) == n and _all_finite_numbers(row):
            out[i] = row
            continue
        if type(row) is dict and len(row) == n:
            values = [row.get(name) for name in names]
            if _all_finite_numbers(values):
                out[i] = values
                continue
        if isinstance(row, dict):
            missing = [name for name in names if name not in row]
            unknown = [key for key in row if key not in known]
            for name in missing[:5]:
                errors.append(field_error(_where(i, len(rows), name), "is missing"))
            for key in unknown[:5]:
                errors.append(field_error(_where(i, len(rows), str(key)), f"is not a feature of this model (it takes: {', '.join(names[:8])}{', ...' if n > 8 else ''})"))
            if missing or unknown:
                continue
            values = [row[name] for name in names]
            labels: list[str | int] = names
        elif isinstance(row, (list, tuple)):
            if len(row) != n:
                errors.append(field_error("features" if len(rows) == 1 else f"features[{i}]",
                                          f"has {len(row)} values; the model takes {n} features ({', '.join(names[:8])}{', ...' if n > 8 else ''})"))
                continue
            values, labels = list(row), names
        else:
            errors.append(field_error("features" if len(rows) == 1 else f"features[{i}]",
                                      "must be an object keyed by feature name or an array of numbers"))
            continue
        for value, label in zip(values, labels):
            problem = _bad_value(value)
            if problem:
                errors.append(field_error(_where(i, len(rows), label), problem))
        if not errors:
            out[i] = values
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise ValidationFailed(f"{len(errors)} invalid feature value(s)" if len(errors) < MAX_ERRORS
                               else f"at least {MAX_ERRORS} invalid feature values", errors=errors[:MAX_ERRORS])
    return out


def build_feed(signature: dict[str, Any], rows: list[Any]) -> dict[str, np.ndarray]:
    """The feed for ``session.run``: values cast to each input's dtype (float64 -> float32 where the model takes float)."""
    values = matrix(signature, rows)
    inputs = signature["inputs"]
    if signature.get("layout", "matrix") == "matrix":
        spec = inputs[0]
        return {spec["name"]: values.astype(spec["dtype"], copy=False)}
    feed = {}
    for j, spec in enumerate(inputs):
        column = values[:, j].astype(spec["dtype"], copy=False)
        feed[spec["name"]] = column.reshape(-1, 1) if len(spec["shape"]) == 2 else column
    return feed
