# Shared by recipes/<dataset>/run.sh: stage selection, logging of each CLI call, the closing
# message. Source it after setting defaults; it parses the common options:
#   --stage N / --stop-stage M   run stages N..M only (1 prepare, 2 train MLP, 3 train MDN,
#                                4 generate, 5 compare)
#   --exp DIR                    where data, runs and the report go
#   --fit-args "..."             extra arguments for both `waveform-mdn fit` calls
#                                (e.g. "--trainer.max_epochs 3 --trainer.accelerator gpu")
#   --gen-args "..."             extra arguments for `waveform-mdn generate`
#   --models mlp_mdn|heads       mlp_mdn (default): the 2014 MLP and MDN; heads: every output
#                                distribution on the same data, one report (docs/heads.md):
#                                stage 2 trains the MLP and the MDN, stage 3 the MDN on the
#                                discretised likelihood, the logistic mixture and the mu-law
#                                softmax (recipes/heads/*.yaml over the MDN config); the best
#                                checkpoint of each is chosen by val/bits_per_sample
# Each stage is one `waveform-mdn` call, printed before it runs, so it can be rerun by hand.
set -euo pipefail

stage=${stage:-1}
stop_stage=${stop_stage:-5}
fit_args=${fit_args:-}
gen_args=${gen_args:-}
models=${models:-mlp_mdn}
heads_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/heads
WAVEFORM_MDN=${WAVEFORM_MDN:-waveform-mdn}

recipe_usage() {
  sed -n '2,/^set -e/p' "$0" | sed -e '/^set -e/d' -e 's/^# \{0,1\}//'
  exit "${1:-0}"
}

# "_heads" with --models heads (the default output folder's suffix), else nothing; exits 0
models_suffix() { if [ "$models" = heads ]; then echo _heads; fi; }

parse_common() {
  while [ $# -gt 0 ]; do
    case "$1" in
      -h|--help) ;;
      --*) if [ $# -lt 2 ]; then echo "error: option $1 needs a value" >&2; exit 2; fi ;;
    esac
    case "$1" in
      --stage) stage=$2; shift 2 ;;
      --stop-stage|--stop_stage) stop_stage=$2; shift 2 ;;
      --exp) exp=$2; shift 2 ;;
      --fit-args) fit_args=$2; shift 2 ;;
      --gen-args) gen_args=$2; shift 2 ;;
      --models) models=$2; shift 2 ;;
      -h|--help) recipe_usage 0 ;;
      *) if ! parse_recipe_option "$@"; then echo "unknown option: $1" >&2; recipe_usage 2; fi
         shift "$consumed" ;;
    esac
  done
  case "$models" in
    mlp_mdn|heads) ;;
    *) echo "error: --models must be mlp_mdn or heads, not '$models'" >&2; exit 2 ;;
  esac
  if ! command -v "$WAVEFORM_MDN" >/dev/null 2>&1; then
    echo "error: '$WAVEFORM_MDN' not found on PATH; install the package (pip install -e .) or" \
         "activate its virtual environment" >&2
    exit 127
  fi
}


# in_stage N: is stage N selected?
in_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

# run CMD...: print the command (as it can be pasted into a shell), then run it.
run() {
  printf '+' >&2; printf ' %q' "$@" >&2; printf '\n' >&2
  "$@"
}

stage_banner() { printf '\n==== stage %s: %s ====\n' "$1" "$2" >&2; }

# fit_run NAME CONFIG [ARGS...]: train one model into $exp/runs/NAME/run (TensorBoard logs +
# checkpoints). A run already there is kept, renamed to run.<date-time>, so that the new
# curves and checkpoints never mix with it -- unless --fit-args resume it (--ckpt_path).
fit_run() {
  local name=$1 config=$2
  shift 2
  local dir=$exp/runs/$name/run
  case " $fit_args " in
    *" --ckpt_path"*) ;;
    *) if [ -e "$dir" ]; then
         local kept
         kept=$dir.$(date +%Y%m%d-%H%M%S)
         echo "note: $dir exists from an earlier run; kept as $kept" >&2
         mv "$dir" "$kept"
       fi ;;
  esac
  # shellcheck disable=SC2086
  run "$WAVEFORM_MDN" fit --config "$config" --data.path "$exp/data" \
    --trainer.logger.init_args.save_dir "$exp/runs" --trainer.logger.init_args.name "$name" \
    --trainer.logger.init_args.version run "$@" $fit_args
}

# gen_run NAME: generate from the best checkpoint of run NAME into $exp/runs/NAME/run/generated.
gen_run() {
  local name=$1; shift
  # shellcheck disable=SC2086
  run "$WAVEFORM_MDN" generate --ckpt "$exp/runs/$name/run/checkpoints/best.ckpt" --data "$exp/data" \
    --out "$exp/runs/$name/run/generated" "$@" $gen_args
}

# model_stages MLP_CONF MDN_CONF GENERATE_ARGS...: the stages every recipe shares after its
# own preparation: 2 train MLP, 3 train MDN, 4 generate from both, 5 compare.
model_stages() {
  if [ "$models" = heads ]; then
    heads_stages "$@"
    return
  fi
  local mlp_conf=$1 mdn_conf=$2
  shift 2
  if in_stage 2; then
    stage_banner 2 "train the MLP (Gaussian head, MSE): $mlp_conf"
    fit_run mlp "$mlp_conf"
  fi
  if in_stage 3; then
    stage_banner 3 "train the MDN (mixture of Gaussians, NLL): $mdn_conf"
    fit_run mdn "$mdn_conf"
  fi
  if in_stage 4; then
    stage_banner 4 "generate from each model ($*)"
    gen_run mlp "$@"
    gen_run mdn "$@"
  fi
  if in_stage 5; then
    stage_banner 5 "compare MLP and MDN"
    run "$WAVEFORM_MDN" compare "$exp/runs/mlp/run" "$exp/runs/mdn/run" --names MLP,MDN --out "$exp/report"
  fi
}

# heads_stages MLP_CONF MDN_CONF GENERATE_ARGS...: every head on the same data (--models heads).
HEAD_RUNS=(mlp mdn mdn_discretised logistic_mixture mulaw_softmax)
HEAD_NAMES=MLP,MDN,MDN-discretised,logistic-mixture,mu-law-softmax
heads_stages() {
  local mlp_conf=$1 mdn_conf=$2 name
  shift 2
  local by_bits=(--checkpoint.monitor val/bits_per_sample)
  if in_stage 2; then
    stage_banner 2 "train the MLP and the MDN (best checkpoint by bits/sample)"
    fit_run mlp "$mlp_conf" "${by_bits[@]}"
    fit_run mdn "$mdn_conf" "${by_bits[@]}"
  fi
  if in_stage 3; then
    for name in mdn_discretised logistic_mixture mulaw_softmax; do
      stage_banner 3 "train $name: $mdn_conf + $heads_dir/$name.yaml"
      fit_run "$name" "$mdn_conf" --config "$heads_dir/$name.yaml" "${by_bits[@]}"
    done
  fi
  if in_stage 4; then
    stage_banner 4 "generate from every head ($*)"
    for name in "${HEAD_RUNS[@]}"; do gen_run "$name" "$@"; done
  fi
  if in_stage 5; then
    stage_banner 5 "compare every head"
    local dirs=()
    for name in "${HEAD_RUNS[@]}"; do dirs+=("$exp/runs/$name/run"); done
    run "$WAVEFORM_MDN" compare "${dirs[@]}" --names "$HEAD_NAMES" --out "$exp/report"
  fi
}

closing_message() {
  cat <<MSG

==== done ====
prepared data:       $exp/data
generated audio:     $(ls -d "$exp"/runs/*/run/generated 2>/dev/null | tr '\n' ' ')
comparison report:   $exp/report/report.md  (table: $exp/report/table.csv, curves: $exp/report/curves.png)
listening page:      $exp/report/report.html  (open it in a browser: xdg-open $exp/report/report.html)
TensorBoard logs:    $exp/runs
look at them with:   tensorboard --logdir $exp/runs
MSG
}
