"""Power, average sample number and type I error of each design on the same simulated experiments.

A binary quality metric (champion accuracy 90%), a non-inferiority margin of 2 points, a look after
every 100 units per arm up to 20,000 per arm.  "Power" is the share of runs that show
non-inferiority when the challenger is truly as good; "type I" the share that (wrongly) show it when
the challenger is exactly 2 points worse; ASN the average units per arm at the stop (first
rejection, else the horizon).  Paired rows: shadow mode, both models score the same requests and
agree on 90% of them (ASN counts requests).

GrowthBook's gbstats (0.8.0, its SequentialTwoSidedTTest, the asymptotic CS) runs on exactly the
same simulated counts in its own virtualenv (gbstats pins numpy<2 and pandas<2), created on first
use under benchmarks/.gbstats-venv; it is never a dependency of Frugal.  gbstats has no one-sided or
non-inferiority sequential test, so a GrowthBook user reads the lower end of the two-sided CI against
the margin; we show it at alpha 0.05 (what a user gets) and 0.10 (a one-sided 5% bound).

  python benchmarks/statistics.py [--sims 1000] [--gbstats-sims 300] [--no-gbstats]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.simulation import Scenario, monitor, simulate_looks  # noqa: E402

HERE = Path(__file__).resolve().parent
GB_VENV = HERE / ".gbstats-venv"
METHODS = ("fixed", "gsd_obf", "asymptotic_cs", "msprt")

GB_SCRIPT = r"""
import json, sys
import numpy as np
from gbstats.frequentist.tests import SequentialTwoSidedTTest, SequentialConfig
from gbstats.models.statistics import ProportionStatistic
data = np.load(sys.argv[1])
xc, xt, n_arm = data["xc"], data["xt"], data["n_arm"]
margin, tuning = float(sys.argv[2]), float(sys.argv[3])
out = {}
for alpha in (0.05, 0.10):
    config = SequentialConfig(alpha=alpha, difference_type="absolute", sequential_tuning_parameter=tuning)
    hits, samples = 0, []
    for i in range(xc.shape[0]):
        stop = int(n_arm[-1])
        for j in range(xc.shape[1]):
            n = int(n_arm[j])
            test = SequentialTwoSidedTTest(ProportionStatistic(n=n, sum=int(xc[i, j])),
                                           ProportionStatistic(n=n, sum=int(xt[i, j])), config)
            if test.confidence_interval[0] > -margin:
                hits, stop = hits + 1, n
                break
        samples.append(stop)
    out[str(alpha)] = {"rate": hits / xc.shape[0], "asn": float(np.mean(samples)), "sims": int(xc.shape[0])}
print(json.dumps(out))
"""


def gbstats_python() -> Path | None:
    python = GB_VENV / "bin" / "python"
    if python.exists():
        return python
    print(f"creating {GB_VENV} with gbstats==0.8.0 (once) ...", file=sys.stderr)
    try:
        venv.create(GB_VENV, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "gbstats==0.8.0"], check=True)
    except Exception as exc:  # a benchmark without network still prints Frugal's own rows
        print(f"gbstats unavailable: {exc}", file=sys.stderr)
        return None
    return python


def run_gbstats(python: Path, counts: dict, margin: float, tuning: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "counts.npz"
        np.savez(path, **counts)
        script = Path(tmp) / "gb.py"
        script.write_text(GB_SCRIPT)
        out = subprocess.run([str(python), str(script), str(path), str(margin), str(tuning)], check=True,
                             capture_output=True, text=True)
    return json.loads(out.stdout)


def binary_counts(s: Scenario, sims: int) -> dict:
    """The same counts simulate_looks draws for an unpaired binary scenario (same seed, same order)."""
    rng = np.random.default_rng(s.seed)
    k = s.n_max // s.batch
    xc = rng.binomial(s.batch, s.baseline, size=(s.sims, k)).cumsum(axis=1)
    xt = rng.binomial(s.batch, s.baseline + s.true_diff, size=(s.sims, k)).cumsum(axis=1)
    return {"xc": xc[:sims], "xt": xt[:sims], "n_arm": np.arange(1, k + 1) * s.batch}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sims", type=int, default=1000)
    parser.add_argument("--gbstats-sims", type=int, default=300)
    parser.add_argument("--no-gbstats", action="store_true")
    args = parser.parse_args()

    rows = []
    started = time.perf_counter()
    base = dict(kind="binary", baseline=0.9, margin=0.02, n_max=20_000, batch=100, sims=args.sims)
    for paired in (False, True):
        extra = {"paired": True, "agreement": 0.9} if paired else {}
        power_looks = simulate_looks(Scenario(**base, **extra, true_diff=0.0, seed=1))
        null_looks = simulate_looks(Scenario(**base, **extra, true_diff=-0.02, seed=2))
        for method in METHODS:
            p = monitor(power_looks, method, 0.02, 0.05)
            t1 = monitor(null_looks, method, 0.02, 0.05)
            rows.append((("paired " if paired else "A/B ") + method, p.rate, p.asn, t1.rate, t1.mc_se, args.sims))
    elapsed = time.perf_counter() - started

    if not args.no_gbstats and (python := gbstats_python()) is not None:
        tuning = 2 * base["n_max"]
        gb_power = run_gbstats(python, binary_counts(Scenario(**base, true_diff=0.0, seed=1), args.gbstats_sims), 0.02, tuning)
        gb_null = run_gbstats(python, binary_counts(Scenario(**base, true_diff=-0.02, seed=2), args.gbstats_sims), 0.02, tuning)
        for alpha in ("0.05", "0.1"):
            n = gb_power[alpha]["sims"]
            rate = gb_null[alpha]["rate"]
            rows.append((f"A/B gbstats seq CI alpha={alpha}", gb_power[alpha]["rate"], gb_power[alpha]["asn"], rate,
                         (max(rate * (1 - rate), 1e-12) / n) ** 0.5, n))

    print("binary metric, champion 90%, margin 2 points, alpha 0.05, look every 100/arm up to 20,000/arm")
    print(f"{'design':<34} {'power':>6} {'ASN/arm':>8} {'type I at margin':>17} {'sims':>5}")
    print("-" * 75)
    for name, power, asn, t1, se, sims in rows:
        print(f"{name:<34} {power:>6.3f} {asn:>8.0f} {t1:>10.3f} ± {se:.3f} {sims:>5}")
    print(f"\n(Frugal's {2 * len(METHODS)} designs x 2 scenarios x {args.sims} runs simulated and monitored in {elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
