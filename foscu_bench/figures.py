"""Paper figures from stored runs (PNG and PDF), recomputed from per-case rows, step records and synthetic sets.

- ``fig1_generated_<run>``: tri-planar views of generated volumes with label contours, one row per generator.
- ``fig4_label_real_synthetic_<run>``: label / synthetic image / nearest real training case, for a tumour-free
  and a tumour case per generator (the nearest real case is the training label with the highest Dice).
- ``dice_distributions_<key>``: per comparability group, per-case seed-averaged liver Dice per arm (box + strip),
  a line per test case, with the group's Holm p values (the leaderboard's).
- ``fidelity_<run>``: FID (bias-corrected bootstrap CI) and KID per generator beside the real-vs-real floor.
- ``dice_vs_n_synthetic_<key>``: delta Dice (95% CI) against the number of synthetic cases, from the runs of
  one comparability group that differ in ``--synthetic``.
- ``dice_vs_real_cases_<key>``: liver Dice against the number of real training cases, real-only and every
  generator and control (dashed), with 95% CIs; the curve the real-case equivalent reads from.
- ``loss_curves_<run>``: U-Net training losses per arm (seed 0) and each generator's fitting losses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from foscu_bench.errors import ConfigError
from foscu_bench.metrics.segmentation import dice
from foscu_bench.preview import LIVER_COLOUR, TUMOUR_COLOUR, draw_triplanar
from foscu_bench.comparability import RunGroup, group_runs
from foscu_bench.results import REFERENCE, RunResult, find_runs, training_pairs
from foscu_bench.store import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out_dir: Path, stem: str) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` atomically."""
    paths = []
    for fmt in ("png", "pdf"):
        path = out_dir / f"{stem}.{fmt}"
        with atomic_path(path, suffix=f".{fmt}") as tmp:
            fig.savefig(tmp, format=fmt, dpi=130, bbox_inches="tight")
        paths.append(path)
    _plt().close(fig)
    return paths


def _synthetic(run: RunResult, generator: str, seed: int = 0):
    from foscu_bench.store import load_synthetic

    path = run.synthetic_path(generator, seed)
    return load_synthetic(path) if path.is_file() else []


def _generators(run: RunResult) -> list[str]:
    return list(run.manifest["config"]["generators"])


def fig_generated(run: RunResult, out_dir: Path) -> list[Path]:
    plt = _plt()
    rows = [(g, pair) for g in _generators(run) for pair in _synthetic(run, g)[:1]]
    if not rows:
        return []
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.5 * len(rows)), squeeze=False)
    for row_axes, (generator, pair) in zip(axes, rows):
        draw_triplanar(row_axes, pair.image[0], pair.label, pair.spacing,
                       f"{generator}\n{pair.liver_volume_ml:.0f} ml{' · tumour' if pair.has_tumour else ''}")
    fig.suptitle(f"Generated volumes (liver yellow, tumour red) · {run.manifest['profile']['name']} profile", fontsize=9)
    return save_figure(fig, out_dir, f"fig1_generated_{run.run_id}")


def _axial(volume: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = int(np.argwhere(label > 0)[:, 2].mean()) if label.any() else label.shape[2] // 2
    return volume[::-1, :, z].T, label[::-1, :, z].T


def fig_label_real_synthetic(run: RunResult, out_dir: Path, train_pairs) -> list[Path]:
    plt = _plt()
    panels = []
    for generator in _generators(run):
        pairs = _synthetic(run, generator)
        for want_tumour in (False, True):
            pair = next((p for p in pairs if p.has_tumour == want_tumour), None)
            if pair is not None:
                nearest = max(train_pairs, key=lambda t: dice(t.label, pair.label))
                panels.append((generator, pair, nearest))
    if not panels:
        return []
    fig, axes = plt.subplots(len(panels), 3, figsize=(6.6, 2.3 * len(panels)), squeeze=False)
    for row, (generator, pair, nearest) in zip(axes, panels):
        aspect = pair.spacing[1] / pair.spacing[0]
        synthetic_image, synthetic_label = _axial(pair.image[0], pair.label)
        real_image, real_label = _axial(nearest.image[0], nearest.label)
        row[0].imshow(synthetic_label, cmap="magma", vmin=0, vmax=2, origin="lower", aspect=aspect)
        row[1].imshow(synthetic_image, cmap="gray", vmin=0, vmax=1, origin="lower", aspect=aspect)
        row[2].imshow(real_image, cmap="gray", vmin=0, vmax=1, origin="lower", aspect=aspect)
        for ax, lab in ((row[1], synthetic_label), (row[2], real_label)):
            if (lab > 0).any():
                ax.contour(lab > 0, levels=[0.5], colors=[LIVER_COLOUR], linewidths=0.6)
            if (lab == 2).any():
                ax.contour(lab == 2, levels=[0.5], colors=[TUMOUR_COLOUR], linewidths=0.6)
        row[0].set_ylabel(f"{generator}\n{'tumour' if pair.has_tumour else 'no tumour'}", fontsize=7)
        row[2].set_xlabel(f"nearest real: {nearest.case_id} (Dice {dice(nearest.label, pair.label):.2f})",
                          fontsize=6)
        for ax in row:
            ax.set_xticks([]), ax.set_yticks([])
    for ax, title in zip(axes[0], ("synthetic label", "synthetic image", "nearest real training case")):
        ax.set_title(title, fontsize=8)
    return save_figure(fig, out_dir, f"fig4_label_real_synthetic_{run.run_id}")


def fig_dice_distributions(group: RunGroup, out_dir: Path) -> list[Path]:
    """Per-case seed-averaged liver Dice per arm of a comparability group, with the group's Holm p values."""
    import seaborn as sns

    plt = _plt()
    largest = max(group.stats["levels"])
    frame = group.frame[group.frame["arm"].isin(["real", "real+synthetic"]) & (group.frame["n_real"] == largest)]
    per_case = frame.groupby(["generator", "case_id"], as_index=False)["dice_liver"].mean()
    stats = {g: e for g, e in group.stats["generators"].items() if "delta_dice_mean" in e}
    order = [REFERENCE] + sorted(stats, key=lambda g: (group.kinds.get(g) == "control", -stats[g]["delta_dice_mean"]))
    fig, ax = plt.subplots(figsize=(1.3 + 1.1 * len(order), 3.6))
    wide = per_case.pivot(index="case_id", columns="generator", values="dice_liver")[order]
    for _, values in wide.iterrows():
        ax.plot(range(len(order)), values.to_numpy(), color="0.75", linewidth=0.6, zorder=1)
    sns.boxplot(data=per_case, x="generator", y="dice_liver", order=order, ax=ax, width=0.5, fliersize=0,
                boxprops={"alpha": 0.5}, zorder=2)
    sns.stripplot(data=per_case, x="generator", y="dice_liver", order=order, ax=ax, size=3, color="black", zorder=3,
                  jitter=False)
    labels = [REFERENCE] + [f"{g}{' (control)' if group.kinds.get(g) == 'control' else ''}\n"
                            f"Δ {100 * stats[g]['delta_dice_mean']:+.2f} pts\np={stats[g]['p_holm']:.2g}"
                            for g in order[1:]]
    ax.set_xticks(range(len(order)), labels, fontsize=7)
    ax.set_xlabel("")
    ax.set_ylabel("liver Dice (test case, mean over seeds)")
    ax.set_title(f"{group.name} · {largest} real cases · {group.key['seeds']} seeds · Holm within generators and "
                 f"within controls · lines join a test case · key {group.key_id}", fontsize=8)
    return save_figure(fig, out_dir, f"dice_distributions_{group.key_id}")


def fig_fidelity(run: RunResult, out_dir: Path) -> list[Path]:
    plt = _plt()
    generators = run.fidelity.get("generators", {})
    generators = {g: v for g, v in generators.items() if v.get("fid") is not None}
    if not generators:
        return []
    floor = run.fidelity.get("real_vs_real", {})
    names = sorted(generators, key=lambda g: generators[g]["fid"])
    fig, (ax_fid, ax_kid) = plt.subplots(1, 2, figsize=(3 + 1.4 * len(names), 3.4))
    fid = np.array([generators[g]["fid"] for g in names])
    err = np.array([[generators[g]["fid"] - generators[g]["fid_ci_low"] for g in names],
                    [generators[g]["fid_ci_high"] - generators[g]["fid"] for g in names]]).clip(min=0)
    ax_fid.bar(names, fid, yerr=err, color="#4c72b0", capsize=3)
    kid_key, kid_err = ("kid", "kid_se") if "kid_se" in floor else ("kid_mean", "kid_std")  # schema 4 / 3
    ax_kid.bar(names, [generators[g][kid_key] for g in names], yerr=[generators[g][kid_err] for g in names],
               color="#dd8452", capsize=3)
    for ax, key in ((ax_fid, "fid"), (ax_kid, kid_key)):
        if floor.get(key) is not None:
            ax.axhline(floor[key], color="black", linestyle="--", linewidth=1, label="real vs real floor")
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        ax.legend(fontsize=7)
    n = run.fidelity.get("n_per_set")
    extractor = run.fidelity.get("extractor", {}).get("name")
    ax_fid.set_title(f"FID ({extractor}, n={n} per set)", fontsize=8)
    ax_kid.set_title("KID (± bootstrap SE)" if kid_key == "kid" else "KID (mean ± sd over subsets)", fontsize=8)
    return save_figure(fig, out_dir, f"fidelity_{run.run_id}")


def fig_dice_vs_n_synthetic(group: RunGroup, out_dir: Path) -> list[Path]:
    """Delta Dice against the number of synthetic cases, from the runs of one comparability group."""
    plt = _plt()
    points: dict[str, list[tuple[int, float, float, float]]] = {}
    for run in group.runs:
        n = run.manifest["config"].get("n_synthetic")
        for generator in run.manifest["config"]["generators"]:
            entry = group.stats["generators"].get(group.labels.get((run.run_id, generator)), {})
            if "delta_dice_mean" in entry:
                points.setdefault(generator, []).append((n, entry["delta_dice_mean"], entry["ci_low"], entry["ci_high"]))
    if not any(len({n for n, *_ in values}) > 1 for values in points.values()):
        return []  # one synthetic-set size per generator: nothing to plot against (a grid over real cases instead)
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    for generator, values in sorted(points.items()):
        values.sort()
        n, delta, low, high = (np.array(v, dtype=float) for v in zip(*values))
        ax.errorbar(n, 100 * delta, yerr=[100 * (delta - low), 100 * (high - delta)], marker="o", capsize=3,
                    label=generator)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel("synthetic cases per seed")
    ax.set_ylabel("Δ liver Dice vs real-only (pts, 95% CI)")
    ax.set_title(f"{group.name} · key {group.key_id}", fontsize=8)
    ax.legend(fontsize=7)
    return save_figure(fig, out_dir, f"dice_vs_n_synthetic_{group.key_id}")


def fig_dice_vs_real_cases(group: RunGroup, out_dir: Path) -> list[Path]:
    """Liver Dice against the number of real training cases: the real-only learning curve, each generator and each
    control (dashed) with 95% CIs (crossed random effects over test cases and trainings)."""
    from foscu_bench.results import with_replicates
    from foscu_bench.stats import crossed_random_effects

    levels = group.stats["levels"]
    if len(levels) < 2:
        return []
    plt = _plt()
    frame = with_replicates(group.frame)
    fig, ax = plt.subplots(figsize=(7.4, 3.8))
    arms = [(REFERENCE, "real")] + [(g, "real+synthetic") for g in sorted(group.stats["generators"],
                                                                         key=lambda g: (group.kinds.get(g) == "control", g))]
    colours = generator_colours([g for g, _ in arms[1:]])
    for generator, arm in arms:
        points = []
        for n in levels:
            sub = frame[(frame["generator"] == generator) & (frame["arm"] == arm) & (frame["n_real"] == n)]
            if sub.empty:
                continue
            matrix = sub.pivot_table(index="case_id", columns="replicate", values="dice_liver").dropna().to_numpy()
            mixed = crossed_random_effects(matrix)
            points.append((n, mixed.estimate, mixed.ci_low, mixed.ci_high))
        if not points:
            continue
        n, mean, low, high = (np.array(v, dtype=float) for v in zip(*points))
        control = group.kinds.get(generator) == "control"
        style = {"color": "black", "linewidth": 2.0} if generator == REFERENCE else {
            "color": colours[generator], "linestyle": "--" if control else "-", "linewidth": 1.2}
        ax.errorbar(n, mean, yerr=[mean - low, high - mean], marker="o", markersize=3, capsize=3,
                    label=generator + (" (control)" if control else ""), **style)
    from matplotlib.ticker import NullFormatter, NullLocator

    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(levels, [str(n) for n in levels])
    ax.set_xlabel("real training cases (nested subsets)")
    ax.set_ylabel("liver Dice on held-out cases (95% CI)")
    ax.set_title(f"{group.name} · {group.key['seeds']} seeds · key {group.key_id}", fontsize=8)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))  # outside: 9 curves fill the axes
    return save_figure(fig, out_dir, f"dice_vs_real_cases_{group.key_id}")


def fig_loss_curves(run: RunResult, out_dir: Path) -> list[Path]:
    plt = _plt()
    unet = [(step, record) for step, record in run.layout.step_records("unet") if step.seed == 0]
    curves = {f"{step.generator}: {stage}": values for step, record in run.layout.step_records("fit")
              for stage, values in record["fit"].get("loss_curves", {}).items() if values}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for step, record in unet:
        losses = np.asarray(record["losses"])
        suffix = " (synthetic only)" if step.arm == "synthetic" else ""
        axes[0].plot(losses, linewidth=0.8, label=f"{step.generator or REFERENCE}{suffix}")
    axes[0].set_title("U-Net training loss (Dice + CE), seed 0", fontsize=8)
    axes[0].set_xlabel("iteration")
    axes[0].legend(fontsize=6)
    for label, values in curves.items():
        values = np.abs(np.asarray(values, dtype=float))
        window = max(1, len(values) // 50)  # moving average: the trend, not the per-batch noise
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        axes[1].plot(smooth / max(smooth[0], 1e-12), linewidth=0.8, label=label)
    axes[1].set_yscale("log")
    axes[1].set_title("generator fitting losses (moving average, relative to start; log)", fontsize=8)
    axes[1].set_xlabel("logged step (≤ 1000 points per stage)")
    if curves:
        axes[1].legend(fontsize=6, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    return save_figure(fig, out_dir, f"loss_curves_{run.run_id}")


def generator_colours(generators: list[str]) -> dict:
    """One colour per generator, in the given order (generators, then controls): every figure of a group passes
    the same order, so a generator has the same colour in all of them."""
    plt = _plt()
    return {g: plt.get_cmap("tab10")(i % 10) for i, g in enumerate(generators)}


def fig_metric_validity(rows: list[dict], out_dir: Path) -> list[Path]:
    """Each fidelity metric against the Dice delta, one point per generator/control and level, with the rank
    correlation and its CI (``validity``) in the panel title, over generators and controls and over generators
    alone: which fidelity number predicts usefulness."""
    from foscu_bench.validity import VALIDITY_METRICS, metric_validity

    entries = [e for e in metric_validity(rows) if e["spearman"] is not None]
    alone = {e["metric"]: e for e in metric_validity(rows, scope="generators")}
    if not entries:
        return []
    plt = _plt()
    columns = min(5, len(entries))
    lines = -(-len(entries) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(2.6 * columns, 2.4 * lines), squeeze=False)
    kinds = {r["generator"]: r.get("kind") for r in rows if r.get("kind") != "reference"}
    generators = sorted(kinds, key=lambda g: (kinds[g] == "control", g))
    colours = generator_colours(generators)
    for ax, entry in zip(axes.flat, entries):
        for g in generators:
            points = [(r[entry["metric"]], 100 * r["delta_dice_mean"]) for r in rows if r["generator"] == g
                      and r.get(entry["metric"]) is not None and r.get("delta_dice_mean") is not None]
            if points:
                x, y = zip(*points)
                ax.scatter(x, y, s=14, color=colours[g], label=g)
        ax.axhline(0, color="grey", linewidth=0.6)
        ax.set_xlabel(VALIDITY_METRICS[entry["metric"]], fontsize=7)
        title = f"all ρ {entry['spearman']:+.2f} [{entry['ci_low']:+.2f}, {entry['ci_high']:+.2f}]"
        gen = alone.get(entry["metric"], {})
        if gen.get("spearman") is not None:
            title += f"\ngenerators ρ {gen['spearman']:+.2f} [{gen['ci_low']:+.2f}, {gen['ci_high']:+.2f}]"
        ax.set_title(title, fontsize=6)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(entries):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("Δ liver Dice (points)", fontsize=7)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=6, loc="lower center", ncol=min(6, len(labels)))
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return save_figure(fig, out_dir, f"metric_validity_{rows[0]['comparability_key']}")


def make_figures(runs_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Every figure for every completed run under ``runs_dir``, pooled only within comparability groups."""
    runs = find_runs(runs_dir)
    if not runs:
        raise ConfigError(f"{runs_dir}: no completed runs found (run `foscu-bench run` first)")
    out_dir = Path(out_dir)
    written: list[Path] = []
    for group in group_runs(runs):
        for run in group.runs:
            written += fig_generated(run, out_dir)
            written += fig_label_real_synthetic(run, out_dir, training_pairs(run))
            written += fig_fidelity(run, out_dir)
            written += fig_loss_curves(run, out_dir)
    return written + group_figures(runs_dir, out_dir)


def group_figures(runs_dir: str | Path, out_dir: str | Path, rows: list[dict] | None = None) -> list[Path]:
    """The figures of each comparability group (per-case distributions, Dice vs synthetic and real cases, metric
    validity): they read the runs' rows and stats only, so they draw from committed run files without volumes.
    ``rows``: the leaderboard rows of ``runs_dir`` where the caller has them (their bootstraps take minutes)."""
    from foscu_bench.leaderboard import leaderboard_rows

    out_dir = Path(out_dir)
    written: list[Path] = []
    for group in group_runs(find_runs(runs_dir)):
        written += fig_dice_distributions(group, out_dir)
        written += fig_dice_vs_n_synthetic(group, out_dir)
        written += fig_dice_vs_real_cases(group, out_dir)
    rows = leaderboard_rows(runs_dir) if rows is None else rows
    for key in dict.fromkeys(r["comparability_key"] for r in rows):
        written += fig_metric_validity([r for r in rows if r["comparability_key"] == key], out_dir)
    return written
