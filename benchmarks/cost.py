"""Side-by-side cost of the demo's champion and challenger, charged as serving charges them.

    python benchmarks/cost.py [--batch 1 25 50] [--rounds 400] [--repeats 5]

Scores the same held-out rows with both demo models in this one process, interleaved (champion,
challenger, champion, ...), through the functions a web worker calls: ``service.routing.runtime.model_runner``
(onnxruntime sessions timed by ``service.inference.sessions.inference_clock``) and
``service.routing.policy.run_policy``, which charges every row ``service.registry.prediction_cost``.
Per request size (``--batch`` rows: the demo sends requests of 50 rows; in its A/B test each arm
gets about 25 of them) it prints each model's mean cost per 1M predictions and the savings share
1 - challenger / champion, with the spread of the share over ``--repeats`` repetitions (min-max):
the figure the demo's experiments should agree with in sign (see docs/models.md#cost).
Figures depend on the host and on what else it runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _median(values: list[float]) -> float:  # (benchmarks/statistics.py shadows the standard library's module here)
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 25, 50])
    parser.add_argument("--rounds", type=int, default=400, help="requests per model per repetition")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import csv

    from service.demo.models import build_demo_models
    from service.inference.signature import inspect_model
    from service.routing.catalog import ModelSpec, PolicySpec
    from service.routing.policy import run_policy
    from service.routing.runtime import model_runner
    from service.runtime import Runtime
    from service.settings import load_settings

    models = build_demo_models(ROOT / ".frugal" / "demo-models")
    pair = {role: next(m for m in models.values() if m.role == role) for role in ("champion", "challenger")}
    rt = Runtime(load_settings({"FRUGAL_DATA_DIR": tempfile.mkdtemp(prefix="frugal-cost-"), "FRUGAL_LOG_LEVEL": "WARNING"}))
    run = model_runner(rt)
    policies = {}
    for i, (role, m) in enumerate(pair.items()):
        signature = inspect_model(m.path.read_bytes(), feature_names=m.feature_names).to_dict()
        policies[role] = PolicySpec("model", ModelSpec(i + 1, f"{m.name}:{m.version}", m.name, m.path, m.task, None, signature))
    with open(pair["challenger"].path.parent / "test.csv") as handle:
        reader = csv.DictReader(handle)
        rows = [[float(r[n]) for n in pair["challenger"].feature_names] for r in reader]

    s = rt.settings
    print(f"price ${s.price_per_core_hour:g} per core-hour; {len(rows)} held-out rows; {args.rounds} requests per model "
          f"per repetition, {args.repeats} repetitions, interleaved; shared host: figures vary run to run")
    print(f"{'rows/request':>12}  {'champion $/1M':>14}  {'challenger $/1M':>15}  {'savings':>8}  {'spread (min-max)':>18}")
    for batch in args.batch:
        requests = [[rows[(k * batch + j) % len(rows)] for j in range(batch)] for k in range(args.rounds)]
        for role in policies:  # warm-up
            run_policy(run, s, policies[role], requests[0], False)
        shares, means = [], {"champion": [], "challenger": []}
        for _ in range(args.repeats):
            total = {"champion": 0.0, "challenger": 0.0}
            for request in requests:
                for role in ("champion", "challenger"):
                    total[role] += sum(x.cost for x in run_policy(run, s, policies[role], request, False))
            n = args.rounds * batch
            for role in total:
                means[role].append(total[role] / n * 1e6)
            shares.append(1 - total["challenger"] / total["champion"])
        champion, challenger = _median(means["champion"]), _median(means["challenger"])
        print(f"{batch:>12}  {champion:>14.3g}  {challenger:>15.3g}  {100 * _median(shares):>7.1f}%  "
              f"{100 * min(shares):>8.1f}% to {100 * max(shares):.1f}%")
    rt.close()


if __name__ == "__main__":
    main()
