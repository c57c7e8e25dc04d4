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


def _bad_value(value: Any) -> str | None:
    if type(value) is int or type(value) is float:  # noqa: E721 - bool is an int subclass and must be refused
        return None if math.isfinite(value) else "must be a finite number (NaN and infinity are refused)"
    if isinstance(value, bool):
        return "must be a number, not true/false"
    if value is None:
        return "must be a number, not null"
    return f"must be a number, not {type(value).__name__} {str(value)[:40]!r}"


def _row_problems(names: list[str], known: set[str], row: Any) -> list[tuple[str | int | None, str]]:
    """What is wrong with one row: (feature name, or None for the row as a whole; problem)."""
    n = len(names)
    if isinstance(row, dict):
        missing = [name for name in names if name not in row]
        unknown = [key for key in row if key not in known]
        problems: list[tuple[str | int | None, str]] = [(name, "is missing") for name in missing[:5]]
        problems += [(str(key), f"is not a feature of this model (it takes: {', '.join(names[:8])}"
                                f"{', ...' if n > 8 else ''})") for key in unknown[:5]]
        if problems:
            return problems
        values = [row[name] for name in names]
    elif isinstance(row, (list, tuple)):
        if len(row) != n:
            return [(None, f"has {len(row)} values; the model takes {n} features "
                           f"({', '.join(names[:8])}{', ...' if n > 8 else ''})")]
        values = list(row)
    else:
        return [(None, "must be an object keyed by feature name or an array of numbers")]
    return [(label, problem) for value, label in zip(values, names) if (problem := _bad_value(value))]


def _good_values(names: list[str], row: Any) -> list[Any] | None:
    """A well-formed row's values in signature order, checked by C-level map/all; None otherwise."""
    if type(row) is list and len(row) == len(names) and _all_finite_numbers(row):
        return row
    if type(row) is dict and len(row) == len(names):
        values = [row.get(name) for name in names]
        if _all_finite_numbers(values):
            return values
    return None


def matrix(signature: dict[str, Any], rows: list[Any], positions: list[int] | None = None,
           batch: bool | None = None) -> np.ndarray:
    """Rows as a float64 matrix in the signature's feature order (raises ValidationFailed naming every
    bad row: ``features.x`` for a one-row request, ``features[k].x`` for row k of a batch, where k is
    ``positions[i]``, the row's place in the caller's request, when the rows are part of one)."""
    names: list[str] = signature["feature_names"]
    known = set(names)
    batch = len(rows) > 1 if batch is None else batch
    errors: list[dict[str, str]] = []
    out = np.empty((len(rows), len(names)), dtype=np.float64)
    for i, row in enumerate(rows):
        values = _good_values(names, row)
        if values is not None:
            out[i] = values
            continue
        problems = _row_problems(names, known, row)
        if not problems:   # e.g. a tuple of numbers
            out[i] = [row[name] for name in names] if isinstance(row, dict) else list(row)
            continue
        prefix = f"features[{positions[i] if positions is not None else i}]" if batch else "features"
        for label, problem in problems:
            where = prefix if label is None else (f"{prefix}.{label}" if isinstance(label, str) else f"{prefix}[{label}]")
            errors.append(field_error(where, problem))
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
