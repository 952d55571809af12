#!/usr/bin/env bash
# Regenerate every table and plot made from the committed sweep results (from the repository root):
#     bash results/sweeps/refresh.sh
# Trains nothing. `--reselect-best` first re-chooses any best checkpoint that an older tailor took
# from a customization's critic warm-up (results/REPRODUCTION.md, "best checkpoint"); it evaluates
# only those (a few seconds each) and leaves the others untouched.
set -euo pipefail
TAILOR="${TAILOR:-.venv/bin/tailor}"
PY="${PY:-.venv/bin/python}"
"$TAILOR" sweep table2 --budget paper --out results/sweeps/paper --reselect-best
"$TAILOR" table table2 results/sweeps/paper --budget paper --out results/tables/table2-paper.md
"$TAILOR" table table1 results/sweeps/1m --budget 1m --out results/tables/table1-1m.md
"$TAILOR" table table3 results/sweeps/1m --budget 1m --out results/tables/table3-1m.md
"$TAILOR" plot table2 results/sweeps/paper --budget paper --out results/plots/paper
"$TAILOR" plot table1 results/sweeps/1m --budget 1m --out results/plots/1m
"$TAILOR" plot table3 results/sweeps/1m --budget 1m --out results/plots/1m
"$PY" results/customization/tradeoff.py
{
    echo "# Per-seed results of the sweeps (last checkpoint)"
    echo
    echo "Made by \`bash results/sweeps/refresh.sh\`: \`results/customization/table.py\` over every finished job's \`result.json\`. Statistic: mean |θ| (HalfCheetah), torso z (Hopper), v_y (Ant)."
    for budget in paper 1m; do
        echo
        echo "## budget $budget"
        echo
        "$PY" results/customization/table.py results/sweeps/$budget/*/*/result.json
    done
} > results/sweeps/per-seed.md
