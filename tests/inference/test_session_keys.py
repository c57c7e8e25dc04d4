"""Sessions and cached answers are keyed by the registered model, not the file's bytes: the same
file registered twice (another name, another task) has its own decoder.  Before, the second
registration got the first one's session and task, and a running experiment's answers changed."""

from __future__ import annotations

from dataclasses import replace

from service.routing.catalog import ModelSpec


def test_the_same_file_under_two_registrations_keeps_each_task(regressor, settings):
    from service.routing.runtime import model_runner
    from service.runtime import Runtime

    rt = Runtime(settings)
    try:
        run = model_runner(rt)
        as_regression = ModelSpec(1, "diabetes:1", "d" * 64, regressor.path, "regression", None, regressor.signature)
        # the file's bytes are the same; a second registration decodes it as a binary classifier
        as_binary = replace(as_regression, id=2, ref="diabetes-as-binary:1", task="binary")
        rows = [list(map(float, x)) for x in regressor.X_test[:5]]
        for use_cache in (False, True):
            regression, _, _ = run(as_regression, rows, use_cache)
            binary, _, _ = run(as_binary, rows, use_cache)
            assert all(conf is None for _, conf in regression)
            assert all(conf is not None for _, conf in binary), binary
            again, _, _ = run(as_regression, rows, use_cache)
            assert again == regression
    finally:
        rt.close()
