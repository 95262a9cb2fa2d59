"""metrics.csv, stats.json and fidelity.json, assembled from the step records once every step is done.

Per-case rows are the only truth (DESIGN.md): stats.json is computed from metrics.csv *as read back*, exactly
as the leaderboard recomputes it.
"""

from __future__ import annotations

from foscu_bench.results import compute_stats, json_safe, metrics_csv, metrics_frame, read_metrics
from foscu_bench.runner.plan import step_record, steps
from foscu_bench.store import atomic_write_json, atomic_write_text


def assemble(ctx) -> None:
    rows = [row for s in steps(ctx) if s.kind == "unet" for row in step_record(ctx, s)["rows"]]
    atomic_write_text(ctx.layout.metrics, metrics_csv(metrics_frame(rows)))
    kinds = {name: meta.kind for name, meta in ctx.metas.items()}
    atomic_write_json(ctx.layout.stats, compute_stats(read_metrics(ctx.layout.metrics), kinds))
    atomic_write_json(ctx.layout.fidelity, fidelity_document(ctx))


FIDELITY_KEYS = ("fid", "fid_ci_low", "fid_ci_high", "kid_mean", "kid_std", "mmd", "ms_ssim",
                 "ms_ssim_synthetic_real", "n_real", "n_synthetic")
FLOOR_KEYS = ("fid", "fid_ci_low", "fid_ci_high", "kid_mean", "kid_std", "mmd", "ms_ssim", "n_real", "n_synthetic")


def _fidelity_level(records: dict) -> dict:
    first = next(iter(records.values()))
    generators = {}
    for name, record in records.items():
        report = record["report"]
        scores = report["generator"]
        generators[name] = {key: scores[key] for key in FIDELITY_KEYS}
        generators[name].update(extractor=record["extractor"]["name"], warning=report["warning"],
                                per_view=scores["per_view"])
    floor = first["report"]["real_vs_real"]
    return {"extractor": first["extractor"], "real_vs_real": {k: floor[k] for k in FLOOR_KEYS},
            "n_per_set": first["report"]["n_per_set"], "feature_dim": first["report"]["feature_dim"],
            "ms_ssim_settings": first["report"]["ms_ssim_settings"], "generators": generators}


def fidelity_document(ctx) -> dict:
    """fidelity.json: per generator (DESIGN schema keys first) and the real-vs-real floor, one extractor per
    real-data level (it learns from that level's cases only). Top-level keys: the largest level; ``levels``: all."""
    by_level: dict = {}
    for s in steps(ctx):
        if s.kind == "fidelity":
            by_level.setdefault((ctx.n_train(s.n_real), s.draw), {})[s.generator] = step_record(ctx, s)
    documents = {f"n-{n}-draw-{d}": _fidelity_level(records) for (n, d), records in sorted(by_level.items())}
    largest = _fidelity_level(by_level[max(by_level)])
    return json_safe({"schema_version": 3, **largest,
                      "protocol": "real volumes split into seeded halves A/B; B is the reference; floor = A vs B; "
                                  "each generator's first |A| volumes (seeds in order) vs B",
                      "levels": documents if len(documents) > 1 else {}})
