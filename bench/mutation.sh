#!/usr/bin/env bash
# Mutation testing of the core with mutmut (not part of CI: hours on 2 cores for every
# mutant; TIMEOUT_PER_GROUP cuts each group short, and the numbers are then partial).
#
#   bench/mutation.sh [--rev REV] [--out DIR] [GROUP...]
#
# GROUP is one of: heads data engine metrics spectral analysis compare (default: all but spectral
# and analysis, which are parts of metrics).
# For each group mutmut mutates only that group's modules and runs only that group's fast
# test files (mutmut's own coverage step then picks, per mutant, the tests that reach the
# mutated function).
# Run a copy of this script if you edit it meanwhile (bash reads a script as it goes).
# It runs in a separate git worktree of REV (default HEAD) under /tmp, so edits in the
# working tree do not interfere, and removes the worktree afterwards. mutmut is not a
# project dependency: it is installed into its own venv ($MUTMUT_VENV) that sees the
# project venv's packages (torch, ...) through a .pth file.
#
# Per group it writes DIR/GROUP.json (killed, survived, no tests, timeout, ...: mutmut's
# export-cicd-stats), DIR/GROUP.results.txt (each mutant checked and its status),
# DIR/GROUP.survivors.txt (the mutants not killed, with their diffs)
# and DIR/GROUP.log; DIR/summary.md has one line per group. Scores are in docs/testing.md.
set -euo pipefail

REPO=${REPO:-$(cd "$(dirname "$0")/.." && pwd)}  # set REPO when running a copy of this script
REV=HEAD
OUT="$REPO/exp/mutation"
MUTMUT_VERSION=3.8.1
MUTMUT_VENV=${MUTMUT_VENV:-/tmp/waveform-mdn-mutmut-venv}
TIMEOUT_PER_GROUP=${TIMEOUT_PER_GROUP:-3600}  # seconds; an unfinished group reports what it checked
MAX_CHILDREN=${MAX_CHILDREN:-1}  # mutants run at once (mutmut --max-children): 2 uses both cores
GROUPS_ASKED=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rev) REV=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) GROUPS_ASKED+=("$1"); shift ;;
    esac
done
[ ${#GROUPS_ASKED[@]} -eq 0 ] && GROUPS_ASKED=(heads data engine metrics compare)

# group -> modules to mutate (globs) | test files (those present at REV are used)
declare -A MODULES TESTS DESELECT
MODULES[heads]="waveform_mdn/heads/*"  # Normalisation (the 16-bit grid) is data_prep/audio_io.py: not mutated
TESTS[heads]="tests/test_heads.py tests/test_heads_discretised.py tests/test_heads_generation.py
             tests/test_sampling_statistics.py tests/test_known_answers.py tests/test_head_contracts.py"
MODULES[data]="waveform_mdn/data.py"
TESTS[data]="tests/test_windows.py tests/test_data_known_answers.py tests/test_text.py"  # test_text: the durations read
MODULES[engine]="waveform_mdn/generation/engine.py"
TESTS[engine]="tests/test_generate.py tests/test_sampling_statistics.py tests/test_generation_options.py
               tests/test_progress.py"
DESELECT[engine]="cli_generate_and_evaluate"  # 27 s of CLI and audio measurements per mutant
DESELECT[heads]="fit_logs_bits_beside_the_nll"  # fit's CLI fails on mutmut's copies of the heads (exit 2)
MODULES[metrics]="waveform_mdn/audio_metrics/*"
TESTS[metrics]="tests/test_audio_metrics.py tests/test_known_answers.py tests/test_metric_file_errors.py
                tests/test_judges.py tests/test_signal_analysis.py"
MODULES[spectral]="waveform_mdn/audio_metrics/spectral.py"  # LSD and MCD alone: "metrics" spends its time in pYIN
TESTS[spectral]="${TESTS[metrics]}"
MODULES[analysis]="waveform_mdn/audio_metrics/analysis.py"  # framing, kurtosis, periodicity: a third of metrics
TESTS[analysis]="${TESTS[metrics]}"
MODULES[compare]="waveform_mdn/compare/runs.py waveform_mdn/compare/tables.py waveform_mdn/compare/measurements.py"
TESTS[compare]="tests/test_compare.py tests/test_compare_numbers.py tests/test_compare_runs.py"

PY="$REPO/.venv/bin/python"
# the tests find ../shared beside the repository, not beside mutmut's copy: name it
export WAVEFORM_MDN_SHARED=${WAVEFORM_MDN_SHARED:-$(cd "$REPO/.." && pwd)/shared}
if [ ! -x "$MUTMUT_VENV/bin/mutmut" ]; then
    base=$("$PY" -c 'import sys; print(sys.base_prefix)')/bin/python3
    "$base" -m venv "$MUTMUT_VENV"
    site=$("$MUTMUT_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    "$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$site/project-venv.pth"
    "$MUTMUT_VENV/bin/pip" install -q "mutmut==$MUTMUT_VERSION"
fi

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WT=$(mktemp -d /tmp/waveform-mdn-mutation.XXXXXX)
git -C "$REPO" worktree add --detach "$WT" "$REV" >/dev/null
trap 'cd "$REPO"; git worktree remove --force "$WT"' EXIT
echo "mutation testing $(git -C "$WT" rev-parse --short HEAD) in $WT -> $OUT"

for g in "${GROUPS_ASKED[@]}"; do
    [ -n "${MODULES[$g]:-}" ] || { echo "unknown group $g (heads data engine metrics spectral analysis compare)" >&2; exit 2; }
    cd "$WT"
    rm -rf mutants
    tests=$(for t in ${TESTS[$g]}; do if [ -f "$t" ]; then echo "$t"; fi; done)
    {
        echo "[mutmut]"
        echo "source_paths=waveform_mdn"
        echo "only_mutate="; for m in ${MODULES[$g]}; do echo "    $m"; done
        echo "also_copy="; printf '    %s\n' data_prep recipes  # recipes: the demo configs some tests train with
        echo "pytest_add_cli_args_test_selection="; for t in $tests; do echo "    $t"; done
        echo "pytest_add_cli_args="; printf '    %s\n' -p no:cacheprovider -q -m "not slow"
        if [ -n "${DESELECT[$g]:-}" ]; then printf '    %s\n' -k "not ${DESELECT[$g]}"; fi
        echo "process_isolation=forkserver"
    } > setup.cfg
    echo "== $g: ${MODULES[$g]} <- $(echo $tests)"
    start=$(date +%s)
    OMP_NUM_THREADS=1 timeout "$TIMEOUT_PER_GROUP" "$MUTMUT_VENV/bin/mutmut" run --max-children "$MAX_CHILDREN" \
        > "$OUT/$g.log" 2>&1 || echo "   mutmut run ended with $? (timeout or error: partial numbers)"
    secs=$(( $(date +%s) - start ))
    "$MUTMUT_VENV/bin/mutmut" export-cicd-stats > /dev/null
    cp mutants/mutmut-cicd-stats.json "$OUT/$g.json"
    "$MUTMUT_VENV/bin/mutmut" results --all true > "$OUT/$g.results.txt" || true  # every mutant checked
    : > "$OUT/$g.survivors.txt"
    for name in $(awk -F': ' '/: survived$|: no tests$|: timeout$/ {gsub(/ /, "", $1); print $1}' "$OUT/$g.results.txt"); do
        "$MUTMUT_VENV/bin/mutmut" show "$name" >> "$OUT/$g.survivors.txt" 2>&1 || true
    done
    "$PY" - "$OUT/$g.json" "$g" "$secs" "$(git rev-parse --short HEAD)" >> "$OUT/summary.md" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
checked = s["killed"] + s["survived"] + s["no_tests"] + s["timeout"] + s["suspicious"] + s["segfault"]
score = 100.0 * (s["killed"] + s["timeout"]) / checked if checked else float("nan")
print(f"| {sys.argv[4]} | {sys.argv[2]} | {s['total']} | {checked} | {s['killed']} | {s['timeout']} | "
      f"{s['survived']} | {s['no_tests']} | {score:.1f}% | {int(sys.argv[3]) // 60} min |")
EOF
    tail -n 1 "$OUT/summary.md"
done
