"""Which fidelity number carries information about downstream usefulness?

Over every generator and control of a comparability group and every real-data level (one leaderboard row each),
the Spearman rank correlation between a fidelity metric and the Dice delta, with a 95% CI from a bootstrap that
resamples whole generators (a generator's rows at several levels are not independent). Nobody has published this
for 3D medical generation; the table says which numbers to read and which to ignore, on this dataset and profile.

Two scopes: with the controls, a metric must tell a set of mismatched pairs (the negative control) and fresh real
cases (the positive one) from the generators; without them, it must rank the generators themselves, which is what a
user choosing a generator needs. A relation that only the controls carry (the negative control is 100% near-copies
by construction) shows in the first scope and not in the second.
"""

from __future__ import annotations

import numpy as np

VALIDITY_METRICS: dict[str, str] = {
    "fid_excess": "FID − floor", "fd_infinity": "FD∞", "kid_mean": "KID", "precision": "precision",
    "recall": "recall", "density": "density", "coverage": "coverage", "ms_ssim": "MS-SSIM (diversity)",
    "near_copy_fraction": "near-copy fraction", "consistency": "image-label consistency"}
"""Leaderboard columns tested, with the names the table shows."""
BOOTSTRAP = 2000


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def _weighted_ranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average (tie-aware) ranks of every row of ``values`` within each resample, a resample being the rows taken
    ``weights[b, row]`` times: (n_resamples, n_rows), equal to ``rankdata`` of the resample with its repeats."""
    unique, inverse = np.unique(values, return_inverse=True)
    per_value = weights @ (inverse[:, None] == np.arange(len(unique))).astype(float)  # copies of each value
    average = np.cumsum(per_value, axis=1) - (per_value - 1) / 2
    return average[:, inverse]


def _resampled_spearman(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``_spearman`` of every resample at once (``weights``: how often each resample takes each row); NaN where
    a resample has fewer than 3 rows or a constant metric or delta, as ``_spearman``."""
    rx, ry = _weighted_ranks(x, weights), _weighted_ranks(y, weights)
    n = weights.sum(axis=1)
    dx = rx - ((weights * rx).sum(axis=1) / n)[:, None]
    dy = ry - ((weights * ry).sum(axis=1) / n)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (weights * dx * dy).sum(axis=1) / np.sqrt((weights * dx ** 2).sum(axis=1) * (weights * dy ** 2).sum(axis=1))

    def constant(v: np.ndarray) -> np.ndarray:
        return np.where(weights > 0, v, -np.inf).max(axis=1) == np.where(weights > 0, v, np.inf).min(axis=1)

    return np.where((n < 3) | constant(x) | constant(y), np.nan, rho)


SCOPES: dict[str, tuple[str, ...]] = {"generators and controls": ("reference",),
                                      "generators": ("reference", "control")}
"""Scope name -> the row kinds it leaves out."""


def metric_validity(rows: list[dict], n_boot: int = BOOTSTRAP, seed: int = 0,
                    scope: str = "generators and controls") -> list[dict]:
    """One entry per metric: rank correlation with the Dice delta over the rows of ``scope`` that have both, its
    cluster bootstrap CI (generators resampled with replacement) and the number of rows and generators behind it."""
    rows = [r for r in rows if r.get("kind") not in SCOPES[scope] and r.get("delta_dice_mean") is not None]
    out = []
    rng = np.random.default_rng(seed)
    for column, label in VALIDITY_METRICS.items():
        usable = [r for r in rows if r.get(column) is not None]
        generators = sorted({r["generator"] for r in usable})
        entry = {"metric": column, "label": label, "scope": scope, "n_rows": len(usable),
                 "n_generators": len(generators), "spearman": None, "ci_low": None, "ci_high": None}
        if len(usable) >= 4 and len(generators) >= 3:
            x = np.array([r[column] for r in usable], dtype=float)
            y = np.array([r["delta_dice_mean"] for r in usable], dtype=float)
            owner = np.array([generators.index(r["generator"]) for r in usable])
            picks = rng.integers(len(generators), size=(n_boot, len(generators)))  # generators drawn per resample
            times_drawn = (picks[:, :, None] == np.arange(len(generators))).sum(axis=1)
            values = _resampled_spearman(x, y, times_drawn[:, owner].astype(float))
            # a resample in which the metric (or the delta) does not vary cannot rank anything: it counts as no
            # relation, not as missing (dropping it would condition the CI on the few rows where a mostly constant
            # metric, such as the near-copy fraction, is not zero)
            values = np.nan_to_num(np.asarray(values), nan=0.0)
            entry.update(spearman=_spearman(x, y), ci_low=float(np.quantile(values, 0.025)),
                         ci_high=float(np.quantile(values, 0.975)))
        out.append(entry)
    return out


def verdict(entry: dict) -> str:
    """Plain words for one metric: informative where the CI excludes 0."""
    if entry["spearman"] is None:
        return "too few rows"
    if entry["ci_low"] > 0:
        return "higher goes with a larger gain"
    if entry["ci_high"] < 0:
        return "lower goes with a larger gain"
    return "no detectable relation"


def all_scopes(rows: list[dict]) -> list[dict]:
    """``metric_validity`` in every scope, one list (each entry names its scope)."""
    return [entry for scope in SCOPES for entry in metric_validity(rows, scope=scope)]


def validity_markdown(entries: list[dict]) -> str:
    """One line per metric, a column block per scope present in ``entries``."""
    scopes = list(dict.fromkeys(e["scope"] for e in entries))
    header, rule = ["fidelity metric"], ["---"]
    for scope in scopes:
        header += [f"ρ with Δ Dice, {scope}", "95% CI (generators resampled)", "rows / generators", "reading"]
        rule += ["---"] * 4
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    for metric in dict.fromkeys(e["metric"] for e in entries):
        cells = [next(e["label"] for e in entries if e["metric"] == metric)]
        for scope in scopes:
            e = next(e for e in entries if e["metric"] == metric and e["scope"] == scope)
            rho = "" if e["spearman"] is None else f"{e['spearman']:+.2f}"
            ci = "" if e["spearman"] is None else f"[{e['ci_low']:+.2f}, {e['ci_high']:+.2f}]"
            cells += [rho, ci, f"{e['n_rows']} / {e['n_generators']}", verdict(e)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
