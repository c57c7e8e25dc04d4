"""The ``frugal`` command line: serve, worker, scorer, beat, db, keys, models, events, report, demo."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from service.errors import ConfigurationError, FrugalError

GUNICORN_CONF = "python:service.gunicorn_conf"   # a module of the installed package (gunicorn's python: form)


def _settings():
    from service.settings import load_settings

    try:
        return load_settings()
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


def _db(*, migrated: bool = True):
    """The database; unless ``migrated=False`` (db upgrade), it must exist and be at head."""
    from service.store.database import Database

    url = _settings().resolved_database_url
    if migrated and url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        # Connecting would create an empty file and then fail on its missing tables.
        raise click.ClickException(f"no database at {url[len('sqlite:///'):]}: run 'frugal db upgrade' (or 'frugal demo') "
                                   "first, or set FRUGAL_DATA_DIR / FRUGAL_DATABASE_URL to the one you mean")
    database = Database(url)
    if migrated:
        from service.migrate import schema_is_current

        ok, current, head = schema_is_current(database.engine)
        if not ok:
            raise click.ClickException(f"the database is at revision {current or 'none (empty)'}, this release needs "
                                       f"{head}: run 'frugal db upgrade'")
    return database


class _OneLineErrors(click.Group):
    """Operator mistakes (database down, not migrated, a bad setting) end every command with one line
    naming the problem and what to do, not a traceback."""

    def invoke(self, ctx: click.Context):
        from alembic.util import CommandError as AlembicError
        from sqlalchemy.exc import DBAPIError, OperationalError

        try:
            return super().invoke(ctx)
        except ConfigurationError as exc:
            raise click.ClickException(str(exc)) from None
        except FrugalError as exc:
            raise click.ClickException(_one_line(exc)) from None
        except AlembicError as exc:   # e.g. the database is at a revision this release does not know
            raise click.ClickException(f"migration failed: {exc}") from None
        except DBAPIError as exc:
            from service.store.database import NOT_MIGRATED, schema_missing

            if schema_missing(exc):
                raise click.ClickException(NOT_MIGRATED) from None
            first = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
            if isinstance(exc, OperationalError):
                raise click.ClickException(f"cannot use the database at {_where()}: {first}") from None
            raise click.ClickException(f"database error at {_where()}: {first}") from None


def _where() -> str:
    """The database URL without its password (for messages)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(_settings().resolved_database_url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a message helper never raises
        return "FRUGAL_DATABASE_URL"


def _one_line(exc: FrugalError) -> str:
    fields = "".join(f"\n  {e['field']}: {e['message']}" for e in exc.errors)
    if exc.status == 503 and "unreachable" in exc.detail:
        return f"the database at {_where()} is unreachable: start it, or check FRUGAL_DATABASE_URL"
    return f"{exc.detail} ({exc.status} {exc.title}){fields}"


@click.group(cls=_OneLineErrors)
@click.version_option(package_name="frugal")
def main() -> None:
    """Frugal: prove a cheaper ML model is good enough, then ship it."""


@main.command()
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn.")
@click.option("--bind", envvar="FRUGAL_BIND", default="127.0.0.1:8000", show_default=True,
              help="host:port to listen on (env FRUGAL_BIND)")
@click.option("--workers", type=int, default=None,
              help="gunicorn worker processes (default FRUGAL_WEB_WORKERS, else the core count, at least 2)")
def serve(dev: bool, bind: str, workers: int | None) -> None:
    """Run the web service."""
    settings = _settings()
    if dev:
        from service.app import create_app

        host, _, port = bind.rpartition(":")
        create_app(settings).run(host=host or "127.0.0.1", port=int(port), threaded=True)
        return
    argv = [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONF, "--bind", bind]
    if workers:
        argv += ["--workers", str(workers)]
    argv.append("service.app:create_app()")
    os.execv(sys.executable, argv)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--concurrency", type=int, default=2, show_default=True)
@click.option("--beat", "with_beat", is_flag=True, help="Also run beat in this process (single-node setups only).")
@click.option("--scorer/--no-scorer", "with_scorer", default=None,
              help="Also run a shadow scorer beside the worker (default: on the embedded SQLite default only).")
@click.option("--metrics-port", type=int, envvar="FRUGAL_WORKER_METRICS_PORT", default=None,
              help="serve the worker's Prometheus metrics on this port (env FRUGAL_WORKER_METRICS_PORT)")
@click.pass_context
def worker(ctx: click.Context, concurrency: int, with_beat: bool, with_scorer: bool | None, metrics_port: int | None) -> None:
    """Run a Celery worker (roll-ups, analyses, actions, reports)."""
    import subprocess

    settings = _settings()
    from service.prometheus import prepare_multiprocess_dir

    prepare_multiprocess_dir(settings.data_dir, "worker")   # before prometheus-client is imported
    from service.worker import signals
    from service.worker.celery_app import create_worker_app

    signals.connect(settings)
    celery = create_worker_app(settings)
    if metrics_port:
        signals.serve_metrics(metrics_port)
    # --quiet: no plain-text banner; the process logs JSON lines only (service.logs)
    argv = ["--quiet", "worker", f"--concurrency={concurrency}", f"--loglevel={settings.log_level}", *ctx.args]
    if with_beat:
        argv.append("--beat")
    scorer_proc = None
    if settings.is_embedded if with_scorer is None else with_scorer:
        # its own process (its own onnxruntime sessions, no thread across Celery's forks); it exits with this one
        scorer_proc = subprocess.Popen([sys.executable, "-m", "service.cli", "scorer", "--parent-pid", str(os.getpid())])
    try:
        celery.worker_main(argv)
    finally:
        if scorer_proc is not None:
            scorer_proc.terminate()
            try:
                scorer_proc.wait(30)
            except subprocess.TimeoutExpired:
                scorer_proc.kill()


@main.command()
@click.option("--once", is_flag=True, help="Score what is queued now, then exit.")
@click.option("--parent-pid", type=int, default=None, hidden=True, help="Exit when this process is gone.")
def scorer(once: bool, parent_pid: int | None) -> None:
    """Run a shadow scorer: claim shadow jobs, score the challenger, write its rows (run as many as you like)."""
    import signal
    import threading

    from service.runtime import Runtime
    from service.scorer import scorer as make_scorer

    from service.logs import configure_logging

    rt = Runtime(_settings())
    configure_logging(rt.settings)   # its log records as JSON lines, like every other process
    work = make_scorer(rt)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())   # the batch in hand commits (milliseconds); nothing to drain
    if parent_pid is not None:
        def watch() -> None:
            while not stop.wait(1.0):
                if os.getppid() != parent_pid:
                    stop.set()

        threading.Thread(target=watch, name="frugal-scorer-parent", daemon=True).start()
    try:
        if once:
            while (result := work.score_batch()).claimed or result.expired:
                pass
        else:
            click.echo(f"shadow scorer {os.getpid()} started (batches of {rt.settings.shadow_batch_size})", err=True)
            work.run(stop)
    finally:
        s = work.stats
        click.echo(f"shadow scorer {os.getpid()} stopped: {s.scored} scored, {s.failed} failed, {s.expired} expired "
                   f"in {s.batches} batches", err=True)
        rt.close()


@main.command()
def beat() -> None:
    """Run the one beat scheduler (exactly one per deployment)."""
    from service.worker import signals
    from service.worker.celery_app import create_worker_app

    settings = _settings()
    signals.connect(settings)
    celery = create_worker_app(settings)
    celery.start(["--quiet", "beat", f"--loglevel={settings.log_level}",
                  f"--schedule={settings.data_dir / 'celerybeat-schedule'}"])


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations."""
    from service.migrate import schema_is_current, upgrade

    database = _db(migrated=False)
    upgrade(database.engine, revision)
    ok, current, head = schema_is_current(database.engine)
    click.echo(f"database at revision {current} (head {head})")


@db.command("current")
def db_current() -> None:
    """Show the schema revision."""
    from service.migrate import schema_is_current

    ok, current, head = schema_is_current(_db(migrated=False).engine)
    click.echo(f"current {current or 'none'}, head {head}: {'up to date' if ok else 'run frugal db upgrade'}")
    sys.exit(0 if ok else 1)


@main.group()
def keys() -> None:
    """API keys."""


@keys.command("create")
@click.option("--scope", type=click.Choice(["admin", "sdk", "read"]), required=True)
@click.option("--name", required=True)
def keys_create(scope: str, name: str) -> None:
    """Create a key and print it once."""
    from service.auth import create_key

    new = _run(lambda: create_key(_db(), name=name, scope=scope))
    click.echo(new.secret)
    click.echo(f"# key id {new.record.id} ({new.record.prefix}), scope {scope}: store it now, it is not shown again", err=True)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True)
def keys_list(as_json: bool) -> None:
    """List keys (never their secrets)."""
    from service.auth import list_keys

    rows = _run(lambda: list_keys(_db()))
    if as_json:
        click.echo(json.dumps([{"id": r.id, "name": r.name, "prefix": r.prefix, "scope": r.scope, "active": r.active} for r in rows]))
        return
    click.echo(f"{'id':>4}  {'prefix':8}  {'scope':6}  {'state':8}  name")
    for r in rows:
        click.echo(f"{r.id:>4}  {r.prefix:8}  {r.scope:6}  {'active' if r.active else 'revoked':8}  {r.name}")


@keys.command("revoke")
@click.argument("key")
def keys_revoke(key: str) -> None:
    """Revoke a key by id or prefix."""
    from service.auth import revoke_key

    record = _run(lambda: revoke_key(_db(), key, revoked_dir=_settings().data_dir / "revoked"))
    click.echo(f"revoked key {record.id} ({record.prefix})")


def _run(fn):
    try:
        return fn()
    except FrugalError as exc:
        raise click.ClickException(_one_line(exc)) from None


@main.command("plan")
@click.option("--experiment", default=None, help="id or name: read its definition and observed data")
@click.option("--method", "methods", multiple=True,
              type=click.Choice(["asymptotic_cs", "msprt", "gsd_obf", "gsd_pocock", "fixed"]), help="default: all")
@click.option("--kind", type=click.Choice(["binary", "continuous"]), default=None)
@click.option("--paired/--unpaired", default=None, help="shadow mode (both models score every request)")
@click.option("--baseline", type=float, default=None, help="champion's rate (binary) or mean")
@click.option("--sd", type=float, default=None, help="per-unit sd (of the paired difference when paired)")
@click.option("--agreement", type=float, default=None, help="paired binary: share of requests the models agree on")
@click.option("--margin", type=float, default=None, help="absolute non-inferiority margin")
@click.option("--true-diff", type=float, default=0.0, show_default=True)
@click.option("--alpha", type=float, default=None)
@click.option("--power", type=float, default=None)
@click.option("--traffic-per-day", type=float, default=None, help="requests per day (default: observed)")
@click.option("--share", type=float, default=None, help="share of traffic in the experiment")
@click.option("--json", "as_json", is_flag=True)
def plan_command(experiment, methods, kind, paired, baseline, sd, agreement, margin, true_diff, alpha, power,
                 traffic_per_day, share, as_json) -> None:
    """Sample size and days per method (POST /v1/plan does the same)."""
    from pydantic import ValidationError

    from service.analytics.planning import PlanRequest, make_plan

    try:
        request = PlanRequest(experiment=experiment, methods=list(methods) or None, kind=kind, paired=paired,
                              baseline=baseline, sd=sd, agreement=agreement, margin=margin, true_diff=true_diff,
                              alpha=alpha, power=power, traffic_per_day=traffic_per_day, share=share)
    except ValidationError as exc:
        raise click.UsageError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    db = _runtime().db if experiment else None
    result = _run(lambda: make_plan(db, request))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    unit = "requests" if result.paired else "units per arm"
    click.echo(f"{result.kind}{' paired' if result.paired else ''}: margin {result.margin:g}, alpha {result.alpha:g}, "
               f"power {result.power:.0%}, true difference {result.true_diff:+g}, unit variance {result.variance:.4g}")
    if result.traffic_per_day:
        click.echo(f"traffic {result.traffic_per_day:,.0f} requests/day, {result.share:.0%} in the experiment")
    click.echo(f"{'method':<14} {unit:>16} {'expected':>10} {'days (max)':>11} {'days (exp.)':>12}")
    for p in result.plans:
        days = f"{p.days:,.1f}" if p.days is not None else "n/a"
        exp_days = f"{p.expected_days:,.1f}" if p.expected_days is not None else "n/a"
        click.echo(f"{p.method:<14} {p.n_per_arm:>16,} {p.expected_n_per_arm:>10,.0f} {days:>11} {exp_days:>12}")


@main.group()
def models() -> None:
    """The model registry."""


def _runtime():
    from service.runtime import Runtime

    _db().dispose()  # exists and is migrated (one-line errors otherwise)
    return Runtime(_settings())


@models.command("register")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True)
@click.option("--version", "version", required=True)
@click.option("--task", type=click.Choice(["binary", "multiclass", "regression"]), required=True)
@click.option("--cost-per-1k", type=float, default=None, help="declared cost per 1,000 predictions (USD)")
@click.option("--feature-names", default=None, help="comma-separated column names of a single-tensor input")
@click.option("--description", default="")
def models_register(path: Path, name: str, version: str, task: str, cost_per_1k: float | None,
                    feature_names: str | None, description: str) -> None:
    """Validate and register an ONNX file."""
    from service import registry

    rt = _runtime()
    names = [n.strip() for n in feature_names.split(",")] if feature_names else None
    record = _run(lambda: registry.register(rt.db, rt.settings, path.read_bytes(), name=name, version=version, task=task,
                                            declared_cost_per_1k=cost_per_1k, feature_names=names, description=description))
    click.echo(f"registered {record.ref} (id {record.id}, sha256 {record.digest[:12]}, {record.file_size} bytes)")


def _echo_table(table: list[tuple[str, ...]]) -> None:
    """Rows of text cells in left-aligned columns (the first row is the header)."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


@models.command("bench")
@click.argument("model")
@click.option("--labelled-csv", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--budget-s", type=float, default=5.0, show_default=True)
def models_bench(model: str, labelled_csv: Path | None, budget_s: float) -> None:
    """Measure MODEL (id, name or name:version) on this host and store the profile."""
    from service import registry

    rt = _runtime()
    record = _run(lambda: registry.resolve(rt.db, model))
    profile = _run(lambda: registry.profile_model(rt.db, rt.settings, record.id, budget_s=budget_s,
                                                  labelled_csv=labelled_csv.read_text() if labelled_csv else None))
    click.echo(json.dumps(profile, indent=2))


@models.command("compare")
@click.argument("refs", nargs=-1)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write the quality-against-cost plot here (SVG)")
def models_compare(refs: tuple[str, ...], plot_path: Path | None) -> None:
    """Quality against cost per 1M predictions, with p95 latency: REFS (default every registered model),
    from each model's benchmark ('frugal models bench --labelled-csv' measures quality)."""
    from service import registry
    from service.reports.format import fmt
    from service.reports.plots import ParetoPoint, pareto

    rt = _runtime()
    rows = _run(lambda: registry.compare(rt.db, rt.settings, list(refs) or None))
    if not rows:
        click.echo("no models registered")
        return
    header = ("model", "quality", "$ per 1M predictions", "p95 latency", "memory", "frontier")
    table = [header] + [(r.ref, f"{r.quality_name} {r.quality:.4f}" if r.quality is not None else "n/a (bench with --labelled-csv)",
                         fmt(r.cost_per_1m, "usd_sig") if r.cost_per_1m is not None else "n/a (not benchmarked)",
                         f"{r.p95_ms:.3g} ms" if r.p95_ms is not None else "n/a", fmt(r.memory_mb, "mb"),
                         "yes" if r.on_frontier else "") for r in rows]
    _echo_table(table)
    click.echo(f"cost: benchmarked CPU time per prediction x ${rt.settings.price_per_core_hour:g} per core-hour "
               "(FRUGAL_PRICE_PER_CORE_HOUR), plus any declared cost; frontier: no other model with the same quality "
               "figure is both better and cheaper")
    if plot_path is not None:
        points = [ParetoPoint(r.ref, r.quality, r.cost_per_1m, r.p95_ms) for r in rows
                  if r.quality is not None and r.cost_per_1m]
        names = {r.quality_name for r in rows if r.quality is not None}
        plot_path.write_text(pareto(points, " / ".join(sorted(names)) or "quality", names != {"rmse"}))
        click.echo(f"plot written to {plot_path}")


@models.command("quantize")
@click.argument("model")
@click.option("--to", "to", type=click.Choice(["int8", "fp16"]), required=True)
@click.option("--version", "version", default=None, help="version of the new model (default <version>-<to>)")
@click.option("--check-csv", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="inputs (a 'label' column optional) to check the new version against MODEL on")
@click.option("--margin", type=float, default=0.02, show_default=True,
              help="with --check-csv: how much worse than MODEL (accuracy points, or RMSE) it may be")
def models_quantize(model: str, to: str, version: str | None, check_csv: Path | None, margin: float) -> None:
    """Register an int8 or fp16 version of MODEL (with --check-csv: checked against it)."""
    from service import candidates, registry

    rt = _runtime()
    source = _run(lambda: registry.resolve(rt.db, model))
    record, checked = _run(lambda: candidates.checked_quantize(
        rt.db, rt.settings, source.id, to, check_csv.read_text() if check_csv else None, version=version, margin=margin))
    click.echo(f"registered {record.ref} (id {record.id}, derived from {source.ref})")
    if checked is not None:
        a, r = checked.agreement, checked.cost_ratio
        quality = (f"; {a.quality_name} {a.quality:.4f} against {a.source_quality:.4f}" if a.quality_name else "")
        click.echo(f"checked on {a.rows:,} rows: {a.agreement_name} {a.agreement:.4f}{quality}; CPU time "
                   f"{r.ratio:.2f}x [{r.low:.2f}, {r.high:.2f}] of {source.ref}'s, timed turn about: {checked.verdict}")
        if checked.reasons:
            click.echo(f"warning: {record.ref} is {checked.verdict}: {'; '.join(checked.reasons)}", err=True)
    costs = registry.cost_comparison(registry.get(rt.db, source.id), record)
    if costs:
        before, after = costs
        click.echo(f"measured CPU cost per 1,000 predictions on this host: {source.ref} {before:.3g}, "
                   f"{record.ref} {after:.3g} ({after / before:.2f}x)")
        if after >= before:
            click.echo(f"warning: {record.ref} is not cheaper to run here than {source.ref} (quantizing a small "
                       "model adds conversion work that can outweigh the cheaper arithmetic); compare accuracy and "
                       "latency with 'frugal models bench' before using it", err=True)


@models.command("candidates")
@click.argument("model")
@click.option("--data-csv", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="inputs with a header of feature names; a 'label' column, if any, measures quality")
@click.option("--margin", type=float, default=0.02, show_default=True,
              help="how much worse than the champion (accuracy points, or RMSE) a candidate may be")
@click.option("--students", default="logistic,shallow-trees,small-mlp", show_default=True,
              help="students to distil (comma-separated; empty for none)")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write the quality-against-cost plot here (SVG)")
def models_candidates(model: str, data_csv: Path, margin: float, students: str, plot_path: Path | None) -> None:
    """Make cheaper candidates of MODEL (quantized, pruned, distilled), register them with lineage,
    benchmark them on this host and check them against MODEL: a table with the Pareto front."""
    from service import candidates, registry
    from service.reports.format import fmt
    from service.reports.plots import pareto

    rt = _runtime()
    source = _run(lambda: registry.resolve(rt.db, model))
    chosen = [s.strip() for s in students.split(",") if s.strip()]
    report = _run(lambda: candidates.make_candidates(rt.db, rt.settings, source.id, data_csv.read_text(), margin=margin,
                                                     students=chosen))
    click.echo(f"{report.rows:,} rows ({report.rows - report.holdout_rows:,} to learn from, {report.holdout_rows:,} "
               f"held out to check on), margin {margin:g}")
    best = report.frontier()
    quality = report.quality_name()
    header = ("model", quality, "agreement", "$ per 1M predictions", "CPU vs champion", "p95 latency", "frontier",
              "verdict")
    points = {p.label: p for p in report.points()}
    table = [header]
    if points:
        top = points[report.source.ref]
        table.append((report.source.ref, f"{top.quality:.4f}", "", fmt(top.cost_per_1m, "usd_sig"), "1.00x",
                      f"{top.p95_ms:.3g} ms" if top.p95_ms is not None else "n/a",
                      "yes" if report.source.ref in best else "", "champion"))
    for c in report.candidates:
        if c.record is None:
            table.append((f"({c.transform})", "", "", "", "", "", "", f"skipped: {c.skipped}"))
            continue
        k, p = c.check, points[c.record.ref]
        table.append((c.record.ref, f"{p.quality:.4f}", f"{100 * k.agreement.agreement:.1f}%",
                      fmt(k.cost_per_1m, "usd_sig"),
                      f"{k.cost_ratio.ratio:.2f}x [{k.cost_ratio.low:.2f}, {k.cost_ratio.high:.2f}]",
                      f"{k.p95_ms:.3g} ms" if k.p95_ms is not None else "n/a",
                      "yes" if c.record.ref in best else "",
                      str(k.verdict) + (f" ({'; '.join(k.reasons)})" if k.reasons else "")))
    _echo_table(table)
    click.echo(f"cost: the champion's benchmarked CPU time x ${rt.settings.price_per_core_hour:g} per core-hour, "
               "times each candidate's CPU-time ratio (both timed turn about in one process, 95% interval); "
               "quality and agreement on the held-out rows")
    chosen_one = report.best()
    if chosen_one is not None:
        saved = chosen_one.check.source_cost_per_1m - chosen_one.check.cost_per_1m
        click.echo(f"cheapest worth an experiment: {chosen_one.record.ref}, saving {fmt(saved, 'usd_sig')} per 1M "
                   f"predictions ({100 * (1 - chosen_one.check.cost_ratio.ratio):.0f}% of the champion's compute); "
                   f"test it: 'frugal experiments create' with it as the challenger")
    else:
        click.echo("no candidate is both cheaper and good enough on these rows")
    if plot_path is not None:
        plot_path.write_text(pareto([p for p in report.points() if p.cost_per_1m > 0], quality, quality != "rmse"))
        click.echo(f"plot written to {plot_path}")


@models.command("sync")
def models_sync() -> None:
    """Copy model files this node holds into shared storage (models registered before revision 0006)."""
    from service import artifacts

    database = _db()
    with database.unit_of_work() as session:
        copied, missing = artifacts.sync(session, _settings())
    click.echo(f"copied {len(copied)} model file(s) into shared storage")
    if missing:
        raise click.ClickException(f"{len(missing)} model file(s) are on neither this node nor in shared storage: "
                                   f"{', '.join(d[:12] for d in missing)}; run this on the node that registered them")


@main.command()
@click.option("--experiment", "experiment", default=None, help="experiment name or id")
@click.option("--portfolio", is_flag=True, help="the summary across every experiment that ran in the week")
@click.option("--week", default=None, help="ISO week such as 2026-W47 (default: the week of the experiment's latest "
              "analysis; for --portfolio the last complete week; FRUGAL_REPORT_TIMEZONE)")
@click.option("--pdf", is_flag=True, help="also write the PDF under FRUGAL_DATA_DIR/reports")
def report(experiment: str | None, portfolio: bool, week: str | None, pdf: bool) -> None:
    """Render a weekly report now, store it and print its URL (and the PDF's path)."""
    from datetime import datetime, timezone

    from service.reports import weekly
    from service.reports.weeks import IsoWeek

    if bool(experiment) == portfolio:
        raise click.UsageError("give --experiment NAME or --portfolio")
    rt = _runtime()
    if week:
        target = _run(lambda: IsoWeek.parse(week))
    elif portfolio:
        target = IsoWeek.previous(datetime.now(timezone.utc), rt.settings.report_timezone)
    else:  # the week of the experiment's latest analysis: a new experiment's report is not empty
        target = _run(lambda: weekly.default_week(rt.db, rt.settings, experiment))
    if portfolio:
        record = _run(lambda: weekly.render_portfolio(rt.db, rt.settings, target, pdf=pdf))
    else:
        record = _run(lambda: weekly.render_experiment(rt.db, rt.settings, experiment, target, pdf=pdf))
    click.echo(f"report {record.id} ({record.title}): {weekly.report_url(rt.settings, record)}")
    if record.pdf_path:
        click.echo(f"pdf: {record.pdf_path}")


@main.group()
def events() -> None:
    """The event log's spool and dead letters (docs/eventlog.md)."""


@events.command("status")
def events_status() -> None:
    """Spool files waiting to replay and dead-letter files waiting for a person."""
    from service.eventlog import Spool

    settings = _settings()
    spool = Spool(settings.spool_dir, settings.spool_fsync)
    files, dead = spool.files(), spool.dead_files()
    click.echo(f"spool {settings.spool_dir}: {len(files)} file(s) to replay; {len(dead)} dead-letter file(s); "
               f"writable: {'yes' if spool.writable() is None else 'NO (' + str(spool.writable()) + ')'}")
    for path in dead:
        for line in path.read_text(errors="backslashreplace").splitlines()[:3]:
            click.echo(f"  {path.name}: {json.loads(line).get('reason', '?')}")


@events.command("replay-dead-letters")
def events_replay_dead_letters() -> None:
    """Put every dead letter (spool/dead/) back through the writer once its cause is fixed: rows the
    database now takes are stored (once: inserts are idempotent), rows it still refuses go to a new
    dead-letter file with the new reason."""
    from service.eventlog import EventLog

    rt = _runtime()
    log = EventLog(rt.db, rt.settings)
    before = len(log.spool.dead_files())
    replayed, kept = _run(log.replay_dead_letters)
    refused = log.stats()["dead_lettered"]
    click.echo(f"replayed {replayed} event(s) from {before} file(s): {replayed - refused} stored or already stored, "
               f"{refused} still refused, {kept} unreadable line(s) kept in {log.spool.dead}")
    rt.close()
    sys.exit(0 if refused == 0 and kept == 0 else 1)


@main.command()
@click.option("--port", type=int, default=8000, show_default=True, envvar="FRUGAL_DEMO_PORT",
              help="the demo server's port (0: any free port); also FRUGAL_DEMO_PORT, so `make demo` takes it")
def demo(port: int) -> None:
    """Run the whole loop on the embedded default and print a recommendation."""
    from service.demo.run import run_demo

    sys.exit(run_demo(port=port))


if __name__ == "__main__":
    main()
