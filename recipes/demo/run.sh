#!/usr/bin/env bash
# Demo recipe: the shipped demo corpus (3 synthetic voices, 36 utterances, ~100 s), end to
# end on CPU in about 10 minutes: prepare, train an MLP and an MDN, generate audio from
# both, compare them.
#
# usage: recipes/demo/run.sh [--stage N] [--stop-stage M] [--exp DIR]
#                            [--fit-args "..."] [--gen-args "..."]
#   stages: 1 prepare, 2 train MLP, 3 train MDN, 4 generate, 5 compare
#   --exp DIR   output folder (default exp/demo)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exp=exp/demo
parse_recipe_option() { return 1; }
# shellcheck source=../common.sh
. "$here/../common.sh"
parse_common "$@"

if in_stage 1; then
  stage_banner 1 "prepare the demo corpus (2 validation utterances per speaker)"
  run "$WAVEFORM_MDN" prepare demo "$exp/data" --split per_speaker --valid 2 --seed 0 --overwrite
fi
if in_stage 2; then
  stage_banner 2 "train the MLP (Gaussian head, MSE)"
  fit_run mlp "$here/conf/mlp.yaml"
fi
if in_stage 3; then
  stage_banner 3 "train the MDN (mixture of 3 Gaussians, NLL)"
  fit_run mdn "$here/conf/mdn.yaml"
fi
if in_stage 4; then
  stage_banner 4 "generate the validation utterances (2 per speaker, first 2 s) from each model"
  gen_run mlp --split valid --seconds 2 --png
  gen_run mdn --split valid --seconds 2 --png
fi
if in_stage 5; then
  stage_banner 5 "compare MLP and MDN"
  run "$WAVEFORM_MDN" compare "$exp/runs/mlp/run" "$exp/runs/mdn/run" --names MLP,MDN --out "$exp/report"
fi
closing_message
