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


SET_KEYS = ("fid", "fid_ci_low", "fid_ci_high", "fd_infinity", "kid", "kid_se", "kid_ci", "kid_mean", "kid_std",
            "mmd", "precision", "recall", "density", "coverage", "ms_ssim", "n_real", "n_synthetic", "per_view")
GENERATOR_KEYS = SET_KEYS + ("ms_ssim_synthetic_real", "excess_over_floor")


def _rounded(values: list[float]) -> list[float]:
    return [float(f"{v:.6g}") for v in values]


def _set_entry(scores: dict, keys: tuple[str, ...]) -> dict:
    entry = {key: scores[key] for key in keys if key in scores}
    entry["replicates"] = {k: _rounded(v) for k, v in scores.get("replicates", {}).items()}
    return entry


def _fidelity_level(records: dict) -> dict:
    first = next(iter(records.values()))
    generators = {}
    for name, record in records.items():
        report = record["report"]
        generators[name] = _set_entry(report["generator"], GENERATOR_KEYS)
        generators[name].update(extractor=record["extractor"]["name"], warning=report["warning"],
                                sampled_for_fidelity=record.get("sampled_for_fidelity", 0))
        for extra in ("memorisation", "consistency"):
            if extra in report:
                generators[name][extra] = report[extra]
    report = first["report"]
    return {"extractor": first["extractor"], "real_vs_real": _set_entry(report["real_vs_real"], SET_KEYS),
            "n_per_set": report["n_per_set"], "feature_dim": report["feature_dim"], "bootstrap": report["bootstrap"],
            "held_out_ids": first["held_out_ids"], "ms_ssim_settings": report["ms_ssim_settings"],
            "generators": generators}


FIDELITY_VERSION = 2
"""What fidelity numbers mean, in the comparability key (``comparability.comparability_key``): 2 = consistency judged
by a U-Net trained on held-out half A (``runner.consistency``), KID on reference-z-scored features
(``metrics.fidelity.KID_VERSION``); 1 (documents without the field) = training-split judge, raw-feature KID."""


def fidelity_document(ctx) -> dict:
    """fidelity.json: per generator (DESIGN schema keys first) and the held-out floor per real-data level.
    Top-level keys: the largest level; ``levels``: all."""
    by_level: dict = {}
    for s in steps(ctx):
        if s.kind == "fidelity":
            by_level.setdefault((ctx.n_train(s.n_real), s.draw), {})[s.generator] = step_record(ctx, s)
    documents = {f"n-{n}-draw-{d}": _fidelity_level(records) for (n, d), records in sorted(by_level.items())}
    largest = _fidelity_level(by_level[max(by_level)])
    return json_safe({"schema_version": 4, "fidelity_version": FIDELITY_VERSION, **largest,
                      "protocol": "held-out real volumes (validation, test and on the phantom fresh reference "
                                  "patients; never a training case) split into seeded halves A/B; B is the "
                                  "reference; floor = A vs B; each generator's first |A| volumes (seeds in order, "
                                  "topped up by sampling) vs B; bootstrap replicates share the reference's "
                                  "resampling, so differences between sets are paired; image-label consistency "
                                  "is judged by a U-Net trained on A, its real ceiling on B",
                      "levels": documents if len(documents) > 1 else {}})
