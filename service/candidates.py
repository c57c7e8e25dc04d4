"""Make cheaper candidates of a champion and screen them before any experiment.

``make_candidates`` derives, from one registered champion and a CSV of inputs (a ``label`` column
optional):

- **quantized** copies (int8 where the model has weights to quantize, fp16);
- **pruned** tree ensembles (the first half, quarter and tenth of its trees: service.inference.prune);
- **distilled** students trained on the champion's answers (service.inference.distill).

Each is registered under the champion's name with lineage (``models.lineage``: source ref and
sha256, transform, parameters, data sha256, and the check below), benchmarked on this host in a
fresh process (``frugal models bench``: CPU cost per 1M predictions, p95 latency, accuracy on the
labelled rows) and checked against the champion on held-out rows: agreement, quality drop, cost.
The verdict is screening, not proof: ``worth an experiment`` when it is cheaper here and no more
than ``margin`` worse (or, without labels, agrees on at least ``min_agreement`` of the rows); the
experiment's sequential test then decides.  The rows a student learns from (70%) are never the
rows it is checked on (30%).
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from service import registry
from service.errors import Conflict, ValidationFailed, field_error
from service.inference.agreement import Agreement, compare, outputs_of
from service.inference.paired_cost import CostRatio, paired_cost
from service.settings import Settings
from service.store import models as model_store
from service.store.database import Database
from service.store.models import ModelRecord

HOLDOUT_SHARE = 0.3
PRUNE_SHARES = (0.5, 0.25, 0.1)   # of the champion's trees
PROFILE_BUDGET_S = 1.0


class Transform(StrEnum):
    INT8 = "int8"
    FP16 = "fp16"
    PRUNE = "prune"
    DISTILL = "distill"


class Verdict(StrEnum):
    WORTH_AN_EXPERIMENT = "worth an experiment"
    NOT_CHEAPER = "not cheaper"
    NOT_GOOD_ENOUGH = "not good enough"


@dataclass(frozen=True)
class Check:
    """A candidate beside its source on the held-out rows and on this host's benchmark."""

    agreement: Agreement
    cost_ratio: CostRatio                # CPU time per row over the source's, timed turn about in one process
    source_cost_per_1m: float | None     # USD: the source's benchmark at FRUGAL_PRICE_PER_CORE_HOUR
    cost_per_1m: float | None            # USD: the source's x cost_ratio
    p95_ms: float | None                 # single-row latency from the candidate's own benchmark
    verdict: Verdict
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": str(self.verdict), "reasons": list(self.reasons)}


@dataclass(frozen=True)
class Candidate:
    transform: Transform
    params: dict[str, Any]
    record: ModelRecord | None           # None when the transform does not apply (see ``skipped``)
    check: Check | None = None
    skipped: str | None = None


@dataclass(frozen=True)
class CandidateReport:
    source: ModelRecord
    data_sha256: str
    rows: int
    holdout_rows: int
    candidates: list[Candidate] = field(default_factory=list)

    def made(self) -> list[Candidate]:
        return [c for c in self.candidates if c.record is not None and c.check is not None]

    def points(self) -> list[Any]:
        """The champion and every made candidate on the quality / cost plane (quality on the held-out
        rows: accuracy or RMSE with labels, agreement with the champion without)."""
        from service.reports.plots import ParetoPoint

        made = self.made()
        if not made:
            return []
        first = made[0].check
        champion_quality = first.agreement.source_quality if first.agreement.quality_name else 1.0
        champion = ParetoPoint(self.source.ref, champion_quality, first.source_cost_per_1m or 0.0,
                               ((self.source.profile or {}).get("single_row_latency_ms") or {}).get("p95"))
        return [champion, *(ParetoPoint(c.record.ref, c.check.agreement.quality if c.check.agreement.quality_name
                                        else c.check.agreement.agreement, c.check.cost_per_1m or 0.0, c.check.p95_ms)
                            for c in made)]

    def quality_name(self) -> str:
        made = self.made()
        return (made[0].check.agreement.quality_name or "agreement with the champion") if made else "quality"

    def frontier(self) -> set[str]:
        from service.reports.plots import frontier

        return frontier([p for p in self.points() if p.cost_per_1m > 0], self.quality_name() != "rmse")

    def best(self) -> Candidate | None:
        """The cheapest candidate worth an experiment."""
        worth = [c for c in self.made() if c.check.verdict is Verdict.WORTH_AN_EXPERIMENT]
        return min(worth, key=lambda c: c.check.cost_ratio.ratio) if worth else None


def _split(n: int) -> tuple[list[int], list[int]]:
    """(training, holdout) row indices: a seeded shuffle, so one CSV always splits the same way."""
    order = np.random.default_rng(20_261_204).permutation(n)
    cut = max(1, int(round(n * HOLDOUT_SHARE)))
    return sorted(order[cut:].tolist()), sorted(order[:cut].tolist())


def _labelled_csv(feature_names: list[str], rows: list[list[float]], labels: np.ndarray) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*feature_names, "label"])
    for row, label in zip(rows, labels.tolist()):
        writer.writerow([*row, label])
    return out.getvalue()


def check(task: str, source: ModelRecord, derived: ModelRecord, source_data: bytes, derived_data: bytes,
          rows: list[list[float]], labels: np.ndarray | None, *, margin: float, min_agreement: float,
          budget_s: float = PROFILE_BUDGET_S) -> Check:
    """``derived`` against ``source`` on ``rows``: agreement, quality, and CPU cost timed turn about."""
    agreement = compare(task, outputs_of(source_data, task, source.signature, rows),
                        outputs_of(derived_data, task, derived.signature, rows), labels)
    ratio = paired_cost(source_data, derived_data, source.signature, derived.signature, rows, budget_s=budget_s)
    before = (source.profile or {}).get("cost_per_1k")
    reasons = []
    if not ratio.cheaper:
        reasons.append(f"not shown cheaper on this host: {ratio.ratio:.2f}x its source's CPU time "
                       f"[{ratio.low:.2f}, {ratio.high:.2f}]")
    drop = agreement.quality_drop
    if drop is not None and drop > margin:
        reasons.append(f"{agreement.quality_name} {drop:+.4f} worse than its source (margin {margin:g})")
    if drop is None and task != "regression" and agreement.agreement < min_agreement:
        reasons.append(f"agrees with its source on {100 * agreement.agreement:.1f}% of rows (< {100 * min_agreement:g}%)")
    verdict = (Verdict.NOT_CHEAPER if not ratio.cheaper else
               Verdict.NOT_GOOD_ENOUGH if reasons else Verdict.WORTH_AN_EXPERIMENT)
    p95 = ((derived.profile or {}).get("single_row_latency_ms") or {}).get("p95")
    source_per_1m = before * 1000.0 if before is not None else None
    return Check(agreement, ratio, source_per_1m, source_per_1m * ratio.ratio if source_per_1m is not None else None,
                 p95, verdict, tuple(reasons))


def _derive(source: ModelRecord, data: bytes, train_rows, train_answers,
            students: list[str], prune_shares, quantize: tuple[str, ...]) -> list[tuple[Transform, dict, bytes | str, str]]:
    """(transform, params, ONNX bytes or the reason it does not apply, version suffix) per candidate."""
    from service.inference.distill import Student, distill
    from service.inference.prune import describe, prune_trees
    from service.inference.quantize import quantize_model

    made: list[tuple[Transform, dict, bytes | str, str]] = []
    for to in quantize:
        try:
            made.append((Transform(to), {}, quantize_model(data, to), to))
        except ValidationFailed as exc:
            made.append((Transform(to), {}, exc.errors[0]["message"] if exc.errors else str(exc), to))
    ensemble = describe(data)
    if ensemble is None:
        made.append((Transform.PRUNE, {}, "not a tree ensemble", "prune"))
    else:
        keeps = sorted({max(1, int(ensemble.trees * share)) for share in prune_shares} - {ensemble.trees}, reverse=True)
        for keep in keeps:
            made.append((Transform.PRUNE, {"trees": keep, "of": ensemble.trees, "averaged": ensemble.averaged},
                         prune_trees(data, keep), f"prune{keep}"))
    if students:
        for student in distill(source.task, source.signature, train_rows, train_answers, [Student(s) for s in students]):
            made.append((Transform.DISTILL, {"student": str(student.student), "trained_on": student.trained_on},
                         student.data, f"distill-{student.student}"))
    return made


def make_candidates(db: Database, settings: Settings, source_id: int, data_csv: str, *, margin: float = 0.02,
                    min_agreement: float = 0.95, students: list[str] | None = None,
                    prune_shares: tuple[float, ...] = PRUNE_SHARES, quantize: tuple[str, ...] = ("int8", "fp16"),
                    budget_s: float = PROFILE_BUDGET_S) -> CandidateReport:
    """Derive, register, benchmark and check the candidates of model ``source_id`` (module docstring)."""
    from service.inference.distill import Student
    from service.inference.profile import parse_data_csv

    if not 0 <= margin < 1:
        raise ValidationFailed("invalid margin", errors=[field_error("margin", "must be at least 0 and below 1")])
    source = registry.get(db, source_id)
    students = [s.value for s in Student] if students is None else students
    unknown = [s for s in students if s not in {x.value for x in Student}]
    if unknown:
        raise ValidationFailed("unknown student", errors=[field_error(
            "students", f"{unknown[0]!r}: must be one of {', '.join(s.value for s in Student)}")])
    rows, labels = parse_data_csv(data_csv, source.signature["feature_names"])
    if len(rows) < 20:
        raise ValidationFailed("too few rows", errors=[field_error("data_csv", f"{len(rows)} rows; at least 20 are needed "
                                                                   "(70% to learn from, 30% to check on)")])
    data = registry.local_model_file(db, settings, source.digest).read_bytes()
    train, hold = _split(len(rows))
    train_rows, hold_rows = [rows[i] for i in train], [rows[i] for i in hold]
    hold_labels = labels[hold] if labels is not None else None
    teacher = outputs_of(data, source.task, source.signature, train_rows)
    holdout_csv = _labelled_csv(source.signature["feature_names"], hold_rows, hold_labels) if hold_labels is not None else None
    data_sha = hashlib.sha256(data_csv.encode()).hexdigest()

    registry.profile_model(db, settings, source.id, labelled_csv=holdout_csv, budget_s=budget_s)
    source = registry.get(db, source.id)
    report = CandidateReport(source, data_sha, len(rows), len(hold_rows))
    for transform, params, made, suffix in _derive(source, data, train_rows, [o.prediction for o in teacher],
                                                   students, prune_shares, quantize):
        if isinstance(made, str):
            report.candidates.append(Candidate(transform, params, None, skipped=made))
            continue
        lineage = {"source": source.ref, "source_sha256": source.digest, "transform": str(transform), "params": params,
                   "data_sha256": data_sha, "rows": len(rows), "checked_on": len(hold_rows)}
        record = _register(db, settings, source, made, f"{source.version}-{suffix}"[:50], transform, params, lineage)
        registry.profile_model(db, settings, record.id, labelled_csv=holdout_csv, budget_s=budget_s)
        record = registry.get(db, record.id)
        result = check(source.task, source, record, data, made, hold_rows, hold_labels, margin=margin,
                       min_agreement=min_agreement, budget_s=budget_s)
        lineage["check"] = result.to_dict()
        with db.unit_of_work() as session:
            model_store.set_lineage(session, record.id, lineage)
        report.candidates.append(Candidate(transform, params, registry.get(db, record.id), result))
    return report


def checked_quantize(db: Database, settings: Settings, source_id: int, to: str, check_csv: str | None, *,
                     version: str | None = None, margin: float = 0.02, min_agreement: float = 0.95,
                     budget_s: float = PROFILE_BUDGET_S) -> tuple[ModelRecord, Check | None]:
    """``registry.quantize``, then, with ``check_csv`` (inputs, a 'label' column optional), the same check
    as every candidate: agreement and quality against its source on those rows, CPU time turn about,
    stored in its lineage.  The rows are checked before anything is made."""
    from service.inference.profile import parse_data_csv

    source = registry.get(db, source_id)
    parsed = parse_data_csv(check_csv, source.signature["feature_names"], field="check_csv") if check_csv else None
    record = registry.quantize(db, settings, source_id, to, version=version)
    if parsed is None:
        return record, None
    rows, labels = parsed
    data = registry.local_model_file(db, settings, source.digest).read_bytes()
    made = registry.local_model_file(db, settings, record.digest).read_bytes()
    result = check(source.task, registry.get(db, source_id), record, data, made, rows, labels, margin=margin,
                   min_agreement=min_agreement, budget_s=budget_s)
    lineage = {**(record.lineage or {}), "data_sha256": hashlib.sha256(check_csv.encode()).hexdigest(),
               "rows": len(rows), "checked_on": len(rows), "check": result.to_dict()}
    with db.unit_of_work() as session:
        model_store.set_lineage(session, record.id, lineage)
    return registry.get(db, record.id), result


def _register(db: Database, settings: Settings, source: ModelRecord, data: bytes, version: str, transform: Transform,
              params: dict[str, Any], lineage: dict[str, Any]) -> ModelRecord:
    """Register a candidate; the same bytes already registered under that version (a rerun) are reused."""
    what = {Transform.PRUNE: f"first {params.get('trees')} of {params.get('of')} trees of",
            Transform.DISTILL: f"{params.get('student')} student distilled from"}.get(transform, f"{transform} quantization of")
    try:
        return registry.register(db, settings, data, name=source.name, version=version, task=source.task,
                                 description=f"{what} {source.ref}", derived_from_id=source.id,
                                 transform=f"{transform}"[:20], feature_names=source.signature.get("feature_names"),
                                 lineage=lineage)
    except Conflict:
        existing = registry.resolve(db, f"{source.name}:{version}")
        if existing.digest != hashlib.sha256(data).hexdigest():
            raise Conflict(f"model {existing.ref} is already registered with other bytes; delete it or rename the "
                           "champion's candidates") from None
        return existing
