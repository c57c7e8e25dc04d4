"""The demo models: bundled data, fixed recipe, cached after the first build."""

from __future__ import annotations

import csv
import json
import re

from service.demo.models import build_demo_models


def test_the_demo_set_has_a_champion_a_challenger_and_an_mlp(demo_models):
    assert {k: m.role for k, m in demo_models.items()} == {"gbm": "champion", "logistic": "challenger", "mlp": None}
    for model in demo_models.values():
        assert model.path.exists() and model.task == "binary" and model.version
        assert len(model.feature_names) == 30
        assert all(re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", n) for n in model.feature_names)
    assert demo_models["gbm"].path.stat().st_size > 20 * demo_models["logistic"].path.stat().st_size


def test_test_csv_has_the_feature_columns_and_a_label(demo_models):
    with open(demo_models["gbm"].path.parent / "test.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == [*demo_models["gbm"].feature_names, "label"]
    assert len(rows) - 1 == 171 and {r[-1] for r in rows[1:]} == {"0", "1"}


def test_a_second_build_reuses_the_files_and_a_changed_file_is_rebuilt(demo_models, tmp_path):
    import shutil

    source = demo_models["gbm"].path.parent
    for f in source.iterdir():
        shutil.copy2(f, tmp_path / f.name)
    before = {f.name: f.stat().st_mtime_ns for f in tmp_path.iterdir()}
    again = build_demo_models(tmp_path)
    assert {f.name: f.stat().st_mtime_ns for f in tmp_path.iterdir()} == before
    assert {k: m.feature_names for k, m in again.items()} == {k: m.feature_names for k, m in demo_models.items()}

    (tmp_path / "logistic.onnx").write_bytes(b"tampered")
    build_demo_models(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert (tmp_path / "logistic.onnx").read_bytes() == (source / "logistic.onnx").read_bytes()
    assert set(manifest["files"]) == {"gbm.onnx", "logistic.onnx", "mlp.onnx", "test.csv"}
