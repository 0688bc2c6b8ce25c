"""Loading a model version for scoring, shared by every service that scores or explains.

A version is loaded once per process and refused if its file no longer matches its
registry row (or the row fails its seal); its engine carries the band edges a manager last
saved for it.
"""

from __future__ import annotations

from finflow_core.errors import ModelError, NotFound
from finflow_core.lending.model.bundle import ModelBundle
from finflow_core.lending.scoring import ScoringEngine
from finflow_core.lending.strategy import Strategy
from finflow_core.services.context import Context
from finflow_core.store import registry
from finflow_core.store.model_files import installation_key, load_bundle


def load_version(ctx: Context, version: str) -> ModelBundle:
    """A registered version, loaded once per process, refused if its file no longer matches
    (or its registry row fails its seal)."""
    with ctx.store.connect() as conn:
        rec = registry.trusted_version(conn, version)
    if rec is None:
        raise NotFound(f"no model version {version!r} is registered", version=version)
    key = (ctx.store.url, ctx.config.sha256, version, rec.artifact_sha256)

    def load() -> ModelBundle:
        bundle = load_bundle(registry.model_folder(rec.folder, ctx.config.paths.models_dir),
                             installation_key(ctx.config),
                             expected_sha256=rec.artifact_sha256)
        bundle.check_compatible(ctx.config)
        return bundle

    return ctx.models.bundle(key, load)


def active_strategy(ctx: Context, bundle: ModelBundle) -> Strategy:
    """The model's strategy with the band edges a manager last saved for it, if any."""
    with ctx.store.connect() as conn:
        saved = registry.saved_edges(conn, bundle.version)
    return bundle.strategy if saved is None else bundle.strategy.with_edges(saved.low_edge, saved.high_edge)


def engine_for(ctx: Context, bundle: ModelBundle, strategy: Strategy, *, explain: bool = True) -> ScoringEngine:
    key = (ctx.store.url, ctx.config.sha256, bundle.version, strategy.low_edge, strategy.high_edge, explain)
    return ctx.models.engine(key, lambda: ScoringEngine(bundle, ctx.config, strategy, explain=explain))


def champion_engine(ctx: Context, *, explain: bool = True) -> ScoringEngine:
    """The champion with its active strategy, ready to score."""
    with ctx.store.connect() as conn:
        version = registry.champion_version(conn)
    if version is None:
        raise ModelError("no champion model yet: train one with `finflow train --data FILE.csv` "
                         "(or the Model page) before scoring")
    bundle = load_version(ctx, version)
    return engine_for(ctx, bundle, active_strategy(ctx, bundle), explain=explain)


def version_engine(ctx: Context, version: str) -> ScoringEngine:
    """An engine for one version (to explain a case it scored: band edges do not matter)."""
    bundle = load_version(ctx, version)
    return engine_for(ctx, bundle, active_strategy(ctx, bundle))
