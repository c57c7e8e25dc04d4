"""The paired CPU-time ratio that says whether a derived model is cheaper on this host: a model against
a copy of itself measures about 1, and the tenth of an ensemble's trees measures well below."""

from __future__ import annotations

from service.inference.paired_cost import paired_cost
from service.inference.prune import prune_trees


def test_a_model_against_itself_is_about_as_costly_and_a_tenth_of_its_trees_is_cheaper(demo_models, demo_signatures, fitted):
    rows = fitted[1].tolist()
    data, sig = demo_models["gbm"].path.read_bytes(), demo_signatures["gbm"]
    same = paired_cost(data, data, sig, sig, rows, budget_s=0.5)
    assert same.rounds >= 200 and same.low < same.ratio < same.high
    assert 0.85 < same.ratio < 1.15, same
    smaller = paired_cost(data, prune_trees(data, 30), sig, sig, rows, budget_s=0.5)
    assert smaller.cheaper and smaller.ratio < same.ratio - 0.1, (smaller, same)
    assert smaller.derived_ms < smaller.source_ms
