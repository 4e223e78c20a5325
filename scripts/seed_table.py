"""Runs `psl pipeline` once per training seed and prints eval mAP and d' as mean ± std per
variant: the results table of the PSL issue, from one command.

    python scripts/seed_table.py --profile demo --seeds 0 1 2 \
        --students psl-10s psl-5s psl-2s ts-2s psl-2s-crop psl-2s-isolated

Stages already finished with the same config and inputs are reused (the pipeline's own
rule), so a second call with more students or seeds only trains what is new.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict

from psl.stages.common import resolve_config
from psl.stages.pipeline import run_pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--students", nargs="+", default=["psl-2s"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra --set key=value")
    args = parser.parse_args()

    scores: dict[str, list[tuple[float, float]]] = defaultdict(list)
    transfers: dict[str, list[float]] = defaultdict(list)
    for seed in args.seeds:
        overrides = [
            *args.overrides,
            f"pipeline.students=[{', '.join(args.students)}]",
            *(f"{section}.train.seed={seed}" for section in ("teacher", "baseline", "student")),
        ]
        result = run_pipeline(resolve_config(args.profile, None, overrides, None))
        for row in result.rows:
            if row.stage == "transfer" and row.mAP is not None:
                transfers[row.variant].append(row.mAP)
            elif row.mAP is not None:
                scores[row.variant].append((row.mAP, row.dprime))

    print(f"\n{'variant':<18} {'runs':>4} {'eval mAP':>17} {'d-prime':>17}")
    for variant, values in scores.items():
        maps, dprimes = [v[0] for v in values], [v[1] for v in values]
        print(f"{variant:<18} {len(values):>4} {_mean_std(maps):>17} {_mean_std(dprimes):>17}")
    if transfers:
        print(f"\n{'transfer':<18} {'runs':>4} {'target mAP':>17}")
        for variant, maps in transfers.items():
            print(f"{variant:<18} {len(maps):>4} {_mean_std(maps):>17}")


def _mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


if __name__ == "__main__":
    main()
