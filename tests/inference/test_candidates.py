"""Candidates of a champion, made, registered, benchmarked and checked on Postgres (``frugal models
candidates``): the demo's 300-tree champion gets pruned and distilled candidates, each with lineage
that outlives its source, a verdict its own figures justify, and the Pareto front of the table."""

from __future__ import annotations

import pytest


@pytest.fixture
def pg_env(fresh_pg, data_dir):
    return {"FRUGAL_DATA_DIR": str(data_dir), "FRUGAL_DATABASE_URL": fresh_pg, "FRUGAL_LOG_LEVEL": "WARNING"}


def _register(env, model, name):
    from click.testing import CliRunner

    from service.cli import main as cli

    done = CliRunner().invoke(cli, ["models", "register", str(model.path), "--name", name, "--version", "1",
                                    "--task", "binary", "--feature-names", ",".join(model.feature_names)], env=env)
    assert done.exit_code == 0, done.output


@pytest.mark.slow
def test_the_cli_makes_checked_candidates_and_marks_the_front(pg_env, demo_models, data_dir, tmp_path):
    from click.testing import CliRunner

    from service import registry
    from service.candidates import Verdict
    from service.cli import main as cli
    from service.runtime import Runtime
    from tests.conftest import make_settings

    _register(pg_env, demo_models["gbm"], "champ")
    plot = tmp_path / "front.svg"
    test_csv = demo_models["gbm"].path.parent / "test.csv"
    done = CliRunner().invoke(cli, ["models", "candidates", "champ:1", "--data-csv", str(test_csv),
                                    "--plot", str(plot)], env=pg_env)
    assert done.exit_code == 0, done.output
    print(done.output)
    lines = done.output.splitlines()
    assert lines[0].startswith("171 rows (120 to learn from, 51 held out")
    assert any(line.startswith("(int8)") and "skipped" in line for line in lines)   # a tree ensemble has no weights to quantize
    svg = plot.read_text()
    assert svg.startswith("<svg") and all(f"champ:1-{c}" in svg for c in ("prune150", "prune30", "distill-logistic"))

    rt = Runtime(make_settings(data_dir, database_url=pg_env["FRUGAL_DATABASE_URL"]))
    try:
        champion = registry.resolve(rt.db, "champ:1")
        made = {m.ref: m for m in registry.page(rt.db, limit=100, offset=0)[0] if m.derived_from_id == champion.id}
    finally:
        rt.close()
    expected = {"champ:1-prune150", "champ:1-prune75", "champ:1-prune30", "champ:1-distill-logistic",
                "champ:1-distill-shallow-trees", "champ:1-distill-small-mlp"}
    assert set(made) == expected
    for ref, record in made.items():
        lineage = record.lineage
        assert lineage["source"] == "champ:1" and lineage["source_sha256"] == champion.digest
        assert lineage["rows"] == 171 and lineage["checked_on"] == 51
        check = lineage["check"]
        ratio = check["cost_ratio"]
        # the verdict follows from its own figures
        cheaper = ratio["high"] < 1.0
        drop = check["agreement"]["source_quality"] - check["agreement"]["quality"]
        verdict = (Verdict.NOT_CHEAPER if not cheaper else Verdict.NOT_GOOD_ENOUGH if drop > 0.02
                   else Verdict.WORTH_AN_EXPERIMENT)
        assert check["verdict"] == verdict, (ref, check)
        row = next(line for line in lines if line.startswith(ref + " "))
        assert f"{ratio['ratio']:.2f}x" in row and str(verdict) in row
    assert made["champ:1-prune30"].lineage["params"] == {"trees": 30, "of": 300, "averaged": False}
    # a tenth of the trees costs measurably less than the whole ensemble
    assert made["champ:1-prune30"].lineage["check"]["cost_ratio"]["high"] < 1.0
    front = [line for line in lines if "  yes  " in line]
    assert front, done.output
    assert any(line.startswith("cheapest worth an experiment: champ:1-") and "per 1M predictions" in line
               for line in lines), done.output


def test_lineage_outlives_the_source_and_bad_input_is_refused_by_field(pg_env, demo_models, data_dir):
    from service import registry
    from service.candidates import make_candidates
    from service.errors import ValidationFailed
    from service.runtime import Runtime
    from tests.conftest import make_settings

    _register(pg_env, demo_models["gbm"], "gone")
    test_csv = (demo_models["gbm"].path.parent / "test.csv").read_text()
    rt = Runtime(make_settings(data_dir, database_url=pg_env["FRUGAL_DATABASE_URL"]))
    try:
        source = registry.resolve(rt.db, "gone:1")
        with pytest.raises(ValidationFailed) as caught:
            make_candidates(rt.db, rt.settings, source.id, "mean_radius,label\n1,0\n", students=[])
        assert caught.value.errors[0]["field"] == "data_csv" and "lacks feature columns" in caught.value.errors[0]["message"]
        with pytest.raises(ValidationFailed) as caught:
            make_candidates(rt.db, rt.settings, source.id, test_csv, students=["gpt"])
        assert caught.value.errors[0]["field"] == "students"
        report = make_candidates(rt.db, rt.settings, source.id, test_csv, students=[], prune_shares=(0.1,),
                                 quantize=(), budget_s=0.3)
        (candidate,) = report.made()
        again = make_candidates(rt.db, rt.settings, source.id, test_csv, students=[], prune_shares=(0.1,),
                                quantize=(), budget_s=0.3)   # a rerun reuses the same bytes' registration
        assert again.made()[0].record.id == candidate.record.id
        registry.delete(rt.db, source.id)
        kept = registry.get(rt.db, candidate.record.id)
    finally:
        rt.close()
    assert kept.derived_from_id is None   # the foreign key is gone with the source ...
    assert kept.lineage["source"] == "gone:1" and kept.lineage["source_sha256"] == source.digest   # ... its record is not
    assert kept.lineage["transform"] == "prune" and kept.lineage["params"]["trees"] == 30
