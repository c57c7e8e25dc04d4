"""POST /v1/models/{id}/quantize with ``check_csv``: the new version is checked against its source and
the check is kept in its lineage; rows that do not fit the model are a 422 naming the field, before
anything is registered.  On Postgres and SQLite."""

from __future__ import annotations

import csv
import io


def _csv(feature_names, rows, labels=None) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*feature_names, *(["label"] if labels is not None else [])])
    for i, row in enumerate(rows):
        writer.writerow([*row, *([labels[i]] if labels is not None else [])])
    return out.getvalue()


def test_a_checked_int8_copy_carries_its_check_in_its_lineage(client, admin, registered):
    from service.demo.models import split

    _, X_test, _, y_test = split()
    mlp = registered["mlp"]
    body = {"to": "int8", "check_csv": _csv(mlp.signature["feature_names"], X_test.tolist(), y_test.tolist())}
    response = client.post(f"/v1/models/{mlp.id}/quantize", headers=admin, json=body)
    assert response.status_code == 201, response.get_data(as_text=True)[:500]
    lineage = response.json["lineage"]
    assert lineage["source"] == mlp.ref and lineage["source_sha256"] == mlp.digest and lineage["transform"] == "int8"
    check = lineage["check"]
    assert check["agreement"]["rows"] == len(X_test) and check["agreement"]["agreement"] >= 0.95, check
    assert check["agreement"]["quality_name"] == "accuracy" and check["agreement"]["quality"] >= 0.9
    assert check["cost_ratio"]["rounds"] >= 200 and check["cost_ratio"]["low"] <= check["cost_ratio"]["ratio"]
    assert check["verdict"] in ("worth an experiment", "not cheaper", "not good enough")
    assert (check["verdict"] == "not cheaper") == (check["cost_ratio"]["high"] >= 1.0)
    shown = client.get(f"/v1/models/{response.json['id']}", headers=admin)
    assert shown.json["lineage"] == lineage


def test_check_rows_that_do_not_fit_are_refused_before_anything_is_registered(client, admin, registered):
    mlp = registered["mlp"]
    before = client.get("/v1/models", headers=admin).json["total"]
    response = client.post(f"/v1/models/{mlp.id}/quantize", headers=admin,
                           json={"to": "int8", "check_csv": "a,b,label\n1,2,0\n"})
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert response.json["errors"][0]["field"] == "check_csv"
    assert "lacks feature columns" in response.json["errors"][0]["message"]
    assert client.get("/v1/models", headers=admin).json["total"] == before
