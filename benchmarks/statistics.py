"""Type I error and power of every design, measured through the production decision.

Each run is analysed after every batch by ``analysis.decision.decide`` (analysis/simulation.py: the
same function, config and recorded looks the analysis task uses), and stops at its first terminal
decision.  A binary quality metric (champion accuracy 90%), a non-inferiority margin of 2 points,
alpha 0.05.  Each method is planned for 80% power by ``analysis.planning.plan`` (50 analyses up to
the horizon; group sequential: 5 planned looks), and simulated at that horizon with a look after
every batch of horizon/50 units: "power" is the share of runs PROMOTEd when the challenger is truly
as good (planned: 0.800); "type I" the share PROMOTEd when it is exactly 2 points worse (at most
alpha).  ASN: the average units per arm at the stop.  Paired rows: shadow mode, both models score
the same requests and agree on 90% of them (ASN counts requests).

GrowthBook's gbstats (0.8.0, its SequentialTwoSidedTTest, the asymptotic CS) runs on exactly the
same simulated counts as the A/B asymptotic_cs rows in its own virtualenv (gbstats pins numpy<2 and
pandas<2), created on first use under benchmarks/.gbstats-venv; it is never a dependency of Frugal.
gbstats has no one-sided or non-inferiority sequential test, so a GrowthBook user reads the lower
end of the two-sided CI against the margin; we show it at alpha 0.05 (what a user gets) and 0.10 (a
one-sided 5% bound).

  python benchmarks/statistics.py [--sims 2000] [--gbstats-sims 300] [--no-gbstats] [--only ab|paired]
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

from analysis.planning import plan, unit_variance  # noqa: E402
from analysis.simulation import PRODUCTION_METHODS, Scenario, monitor, simulate_looks  # noqa: E402

HERE = Path(__file__).resolve().parent
GB_VENV = HERE / ".gbstats-venv"
METHODS = PRODUCTION_METHODS
ANALYSES = 50

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
    parser.add_argument("--sims", type=int, default=2000)
    parser.add_argument("--gbstats-sims", type=int, default=300)
    parser.add_argument("--no-gbstats", action="store_true")
    parser.add_argument("--only", choices=("ab", "paired"), default=None, help="one half of the table")
    args = parser.parse_args()

    rows = []
    started = time.perf_counter()
    gb_scenarios = None
    for paired in {"ab": (False,), "paired": (True,)}.get(args.only, (False, True)):
        variance = unit_variance("binary", baseline=0.9, paired=paired, agreement=0.9 if paired else None)
        for method in METHODS:
            p = plan(method, margin=0.02, variance=variance, alpha=0.05, power=0.8, paired=paired, analyses=ANALYSES)
            batch = -(-p.n_per_arm // ANALYSES)  # the horizon at or just above the plan
            base = dict(kind="binary", paired=paired, agreement=0.9, baseline=0.9, margin=0.02, n_max=batch * ANALYSES,
                        batch=batch, sims=args.sims)
            power = monitor(simulate_looks(Scenario(**base, true_diff=0.0, seed=1)), method, 0.02, 0.05, 0.8)
            null = monitor(simulate_looks(Scenario(**base, true_diff=-0.02, seed=2)), method, 0.02, 0.05, 0.8)
            rows.append((("paired " if paired else "A/B ") + method, batch * ANALYSES, power.rate, power.mc_se,
                         power.asn, null.rate, null.mc_se, args.sims))
            if method == "asymptotic_cs" and not paired:
                gb_scenarios = base
            print(f"  {rows[-1][0]}: done ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started

    if not args.no_gbstats and gb_scenarios and (python := gbstats_python()) is not None:
        base = {**gb_scenarios, "paired": False}
        tuning = 2 * base["n_max"]
        gb_power = run_gbstats(python, binary_counts(Scenario(**base, true_diff=0.0, seed=1), args.gbstats_sims), 0.02, tuning)
        gb_null = run_gbstats(python, binary_counts(Scenario(**base, true_diff=-0.02, seed=2), args.gbstats_sims), 0.02, tuning)
        for alpha in ("0.05", "0.1"):
            n = gb_power[alpha]["sims"]
            rate, prate = gb_null[alpha]["rate"], gb_power[alpha]["rate"]
            rows.append((f"A/B gbstats seq CI alpha={alpha}", base["n_max"], prate,
                         (max(prate * (1 - prate), 1e-12) / n) ** 0.5, gb_power[alpha]["asn"], rate,
                         (max(rate * (1 - rate), 1e-12) / n) ** 0.5, n))

    print("binary metric, champion 90%, margin 2 points, alpha 0.05, each method planned for 80% power,")
    print(f"decided by analysis.decision.decide after every batch of horizon/{ANALYSES}")
    print(f"{'design':<32} {'horizon':>8} {'power (plan 0.800)':>19} {'ASN':>7} {'type I at margin':>17} "
          f"{'<= a+3se':>8} {'sims':>5}")
    print("-" * 104)
    for name, horizon, power, pse, asn, t1, se, sims in rows:
        ok = "yes" if t1 <= 0.05 + 3 * (0.05 * 0.95 / sims) ** 0.5 else "NO"
        print(f"{name:<32} {horizon:>8,} {power:>10.3f} ± {pse:.3f} {asn:>7.0f} {t1:>10.3f} ± {se:.3f} {ok:>8} {sims:>5}")
    print(f"\n({len(rows)} rows; Frugal's designs simulated through decide() in {elapsed:.0f} s on this host)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
