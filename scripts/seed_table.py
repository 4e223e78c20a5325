"""Runs `psl pipeline` once per training seed and prints, per variant, mean ± std of eval mAP
against the complete truth and against the eval split's weak labels, d', PSDS1, the epochs
and steps each model trained for, and the paper's numbers beside them: the results table of
the findings issue, from one command.

    python scripts/seed_table.py --profile demo --seeds 0 1 2 \\
        --students psl-10s psl-5s psl-2s ts-2s psl-10s-isolated psl-5s-isolated psl-2s-isolated

Every model trains as its profile says (the demo: until val mAP stops improving);
`--set pipeline.fixed_updates=160` runs the fixed-update comparison instead. Stages already
finished with the same config and inputs are reused (the pipeline's own rule), so a second
call with more students or seeds only trains what is new. `--markdown FILE` also writes
the table as Markdown. Seeds can run side by side in separate folders (each with its own
tracking store): `--rows FILE` saves a call's results and `--from FILE ...` prints the
table of saved results without training.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

from psl.stages.common import resolve_config
from psl.stages.pipeline import StageRow, run_pipeline

# The paper and its release on balanced AudioSet (MobileNetV2 student, teacher 40.53 mAP),
# whose students were labelled chunk by chunk (our -isolated variants): mAP (%) and d'.
PAPER = {
    "weak": "17.69 / 1.994",
    "psl-10s-isolated": "31.13",
    "psl-5s-isolated": "34.11",
    "psl-2s-isolated": "35.48 / 2.588",
    "teacher": "40.53 (full AudioSet)",
}
COLUMNS = ("variant", "runs", "eval mAP (truth)", "eval mAP (weak)", "d'", "PSDS1", "epochs", "steps", "paper")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--students", nargs="+", default=["psl-2s"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra --set key=value")
    parser.add_argument("--markdown", type=Path, help="also write the table to this Markdown file")
    parser.add_argument("--rows", type=Path, help="save this call's results (JSON) for --from")
    parser.add_argument("--from", dest="saved", type=Path, nargs="+", help="print the table of saved results")
    args = parser.parse_args()

    start = time.perf_counter()
    rows = [StageRow(**row) for path in args.saved for row in json.loads(path.read_text())] if args.saved else []
    for seed in [] if args.saved else args.seeds:
        overrides = [
            *args.overrides,
            f"pipeline.students=[{', '.join(args.students)}]",
            *(f"{section}.train.seed={seed}" for section in ("teacher", "baseline", "student")),
        ]
        rows += run_pipeline(resolve_config(args.profile, None, overrides, None)).rows
    wall = time.perf_counter() - start
    if args.rows:
        args.rows.write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))

    by_variant: dict[str, list[StageRow]] = defaultdict(list)
    for row in rows:
        if row.mAP is not None:
            by_variant[row.variant].append(row)
    table = [_cells(variant, runs) for variant, runs in by_variant.items()]
    command = "python scripts/seed_table.py " + " ".join(
        [f"--profile {args.profile}", "--seeds", *map(str, args.seeds), "--students", *args.students]
        + [f"--set '{o}'" for o in args.overrides]
    )
    print(f"\n{_plain(table)}\n")
    if not args.saved:
        print(f"{command}\nwall time {wall / 60:.1f} min for what was not reused")
    if args.markdown:
        args.markdown.write_text(_markdown(table) + "\n")


def _cells(variant: str, runs: list[StageRow]) -> tuple[str, ...]:
    def spread(values: list[float | None], digits: int) -> str:
        known = [v for v in values if v is not None]
        if not known:
            return "-"
        std = statistics.stdev(known) if len(known) > 1 else 0.0
        return f"{statistics.mean(known):.{digits}f} ± {std:.{digits}f}"

    def mean_count(values: list[int | None]) -> str:
        known = [v for v in values if v is not None]
        return f"{statistics.mean(known):.0f}" if known else "-"

    return (
        variant,
        str(len(runs)),
        spread([r.mAP for r in runs], 3),
        spread([r.weak_mAP for r in runs], 3),
        spread([r.dprime for r in runs], 2),
        spread([r.psds1 for r in runs], 3),
        mean_count([r.epochs for r in runs]),
        mean_count([r.steps for r in runs]),
        PAPER.get(variant, ""),
    )


def _plain(table: list[tuple[str, ...]]) -> str:
    widths = [max(len(c) for c in column) for column in zip(COLUMNS, *table)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in [COLUMNS, *table])


def _markdown(table: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(line) + " |" for line in table])


if __name__ == "__main__":
    main()
