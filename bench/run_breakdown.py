"""Per-stage breakdown of finished runs: wall time, step seconds by kind, the longest chain, peak memory; with two
runs, the ratio. Reads only the run directories (manifest.json and steps/), so it works on committed runs.

Usage::

    python bench/run_breakdown.py RUN_DIR [RUN_DIR ...] [--peaks]

``--peaks`` measures this machine's fp32/bf16 matmul and conv3d peaks to print beside the wall times (the
timings only compare across machines as ratios of those peaks).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from foscu_bench.runner.fit_cache import fit_own_seconds


def breakdown(run_dir: Path) -> dict:
    """Wall time and memory of the last invocation; seconds, count and longest step per step kind; the longest
    fit -> sample -> U-Net chain (what a run with enough workers cannot go below; a fit's parts run beside each other)."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    invocation = manifest["invocations"][-1]
    by_kind: dict[str, list[tuple[float, str]]] = defaultdict(list)
    parts: dict[str, dict[str, float]] = {}
    for path in sorted((run_dir / "steps").glob("*.json")):
        record = json.loads(path.read_text())
        seconds = float(record.get("seconds") or 0.0)
        if path.name.startswith("fit--"):  # a fit's seconds count its parts, steps of their own: count them once
            parts[path.stem] = record["fit"].get("fit_part_seconds", {})
            seconds = fit_own_seconds(record["fit"])
        by_kind[path.name.split("--")[0]].append((seconds, path.stem))
    chains = {}
    for seconds, name in by_kind.get("fit", []):
        generator = name.split("--")[1]
        longest = {kind: max((s for s, n in by_kind.get(kind, []) if n.split("--")[1] == generator), default=0.0)
                   for kind in ("sample", "unet")}
        # the fit's parts ran beside each other before it
        chains[generator] = max(parts[name].values(), default=0.0) + seconds + longest["sample"] + longest["unet"]
    return {"run": run_dir.name, "wall_seconds": invocation.get("wall_seconds"),
            "workers": invocation.get("workers", 1), "threads_per_step": invocation.get("threads_per_step"),
            "peak_memory_mb": invocation.get("peak_memory_mb"),
            "peak_memory_mb_largest_worker": invocation.get("peak_memory_mb_largest_worker"),
            "stages": {kind: {"steps": len(rows), "seconds": sum(s for s, _ in rows),
                              "longest": max(rows)[1], "longest_seconds": max(rows)[0]}
                       for kind, rows in sorted(by_kind.items())},
            "longest_chain_seconds": max(chains.values(), default=None),
            "longest_chain": max(chains, key=chains.get) if chains else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--peaks", action="store_true")
    args = parser.parse_args()
    rows = [breakdown(run) for run in args.runs]
    if args.peaks:
        import torch
        from segmentation_throughput import measured_peaks

        peaks = {p: measured_peaks(torch.device("cpu"), p) for p in ("fp32", "bf16")}
        print("this machine's peaks (GFLOP/s):", json.dumps(peaks))
    for row in rows:
        print(f"\n{row['run']}: {row['wall_seconds'] / 60:.1f} min wall, {row['workers']} worker(s) x "
              f"{row['threads_per_step'] or '?'} thread(s), peak memory {row['peak_memory_mb'] or 0:.0f} MiB "
              f"(largest worker {row['peak_memory_mb_largest_worker'] or 0:.0f} MiB)")
        for kind, stage in row["stages"].items():
            print(f"  {kind:9s} {stage['steps']:3d} steps {stage['seconds']:8.0f} s  "
                  f"(longest {stage['longest_seconds']:.0f} s: {stage['longest']})")
        if row["longest_chain"]:
            print(f"  longest chain fit -> sample -> U-Net: {row['longest_chain']} "
                  f"{row['longest_chain_seconds'] / 60:.1f} min")
    if len(rows) == 2:
        print(f"\nwall ratio {rows[0]['run']} / {rows[1]['run']}: {rows[0]['wall_seconds'] / rows[1]['wall_seconds']:.2f}x")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
