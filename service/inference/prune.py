"""Make a smaller tree ensemble from an ONNX one: keep its first ``k`` trees.

A tree ensemble's cost grows with its trees, and a boosted ensemble's first trees carry most of its
signal (each later tree corrects what is left), so its first ``k`` trees are a cheaper model of the
same kind.  This works on the ONNX file alone (``ai.onnx.ml`` TreeEnsembleClassifier and
TreeEnsembleRegressor), whatever trained it:

- **summed** ensembles (gradient boosting: ``post_transform`` LOGISTIC, SOFTMAX or PROBIT, or a
  regressor summing its trees) keep their kept trees' leaf values and base values as they are;
- **averaged** ensembles (a random forest: a classifier with ``post_transform`` NONE, whose leaf
  weights skl2onnx divides by the number of trees; a regressor with ``aggregate_function`` AVERAGE)
  have their kept leaves scaled by ``trees / k`` so the outputs stay on the same scale.

Which of the two an ensemble is, is read from those attributes; a candidate's agreement with its
source (``service.candidates``) is what shows the result is right.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.errors import ValidationFailed, field_error

TREE_OPS = ("TreeEnsembleClassifier", "TreeEnsembleRegressor")
ADDITIVE_TRANSFORMS = (b"LOGISTIC", b"SOFTMAX", b"SOFTMAX_ZERO", b"PROBIT")


@dataclass(frozen=True)
class Ensemble:
    """What pruning needs to know about a model's tree ensemble."""

    op_type: str
    trees: int
    averaged: bool      # leaf weights were divided by the number of trees (a forest)


def _ensemble_node(model):
    nodes = [n for n in model.graph.node if n.op_type in TREE_OPS and n.domain == "ai.onnx.ml"]
    return nodes[0] if len(nodes) == 1 else None


def _attribute(node, name: str):
    return next((a for a in node.attribute if a.name == name), None)


def _leaf_prefix(node) -> str:
    return "class_" if node.op_type == "TreeEnsembleClassifier" else "target_"


def describe(data: bytes) -> Ensemble | None:
    """The model's one tree ensemble, or None when it has none (or several: not pruned)."""
    import onnx

    node = _ensemble_node(onnx.load_model_from_string(data))
    if node is None or _attribute(node, "nodes_treeids") is None:
        return None
    trees = len(set(_attribute(node, "nodes_treeids").ints))
    transform = getattr(_attribute(node, "post_transform"), "s", b"NONE") or b"NONE"
    if node.op_type == "TreeEnsembleClassifier":
        averaged = transform not in ADDITIVE_TRANSFORMS
    else:
        averaged = (getattr(_attribute(node, "aggregate_function"), "s", b"SUM") or b"SUM") == b"AVERAGE"
    return Ensemble(node.op_type, trees, averaged)


def prune_trees(data: bytes, keep: int) -> bytes:
    """The model with only the first ``keep`` trees of its ensemble (by tree id, the training order).

    Raises ValidationFailed (field ``keep``) when the model has no single tree ensemble, or ``keep`` is
    not between 1 and one less than its number of trees.
    """
    import onnx

    model = onnx.load_model_from_string(data)
    node, ensemble = _ensemble_node(model), describe(data)
    if node is None or ensemble is None:
        raise ValidationFailed("only a tree ensemble can be pruned", errors=[field_error(
            "model", "the model has no single ai.onnx.ml TreeEnsembleClassifier/Regressor")])
    if not 1 <= keep < ensemble.trees:
        raise ValidationFailed("nothing to prune", errors=[field_error(
            "keep", f"must be between 1 and {ensemble.trees - 1} (the model has {ensemble.trees} trees)")])
    kept_ids = sorted(set(_attribute(node, "nodes_treeids").ints))[:keep]
    kept = set(kept_ids)
    prefix = _leaf_prefix(node)
    node_mask = [t in kept for t in _attribute(node, "nodes_treeids").ints]
    leaf_mask = [t in kept for t in _attribute(node, f"{prefix}treeids").ints]
    scale = ensemble.trees / keep if ensemble.averaged and node.op_type == "TreeEnsembleClassifier" else 1.0
    for attribute in node.attribute:
        if attribute.name.startswith("nodes_"):
            _filter(attribute, node_mask)
        elif attribute.name.startswith(prefix):
            _filter(attribute, leaf_mask)
            if attribute.name == f"{prefix}weights" and scale != 1.0:
                attribute.floats[:] = [w * scale for w in attribute.floats]
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _filter(attribute, mask: list[bool]) -> None:
    for field in ("ints", "floats", "strings"):
        values = getattr(attribute, field)
        if len(values) == len(mask):
            values[:] = [v for v, keep in zip(values, mask) if keep]
            return
    if attribute.HasField("t"):   # *_as_tensor (opset 3): a 1-D tensor per node or leaf
        from onnx import numpy_helper

        array = numpy_helper.to_array(attribute.t)
        if array.shape[0] == len(mask):
            attribute.t.CopyFrom(numpy_helper.from_array(array[[i for i, k in enumerate(mask) if k]], attribute.t.name))
            return
        raise ValidationFailed("the tree ensemble's attributes do not line up", errors=[field_error(
            "model", f"{attribute.name} has {array.shape[0]} entries, expected {len(mask)}")])
