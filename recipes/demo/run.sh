#!/usr/bin/env bash
# Demo recipe: the shipped demo corpus (3 synthetic voices, 36 utterances, ~100 s), end to
# end on CPU in about 10 minutes: prepare, train an MLP and an MDN, generate audio from
# both, compare them.
#
# usage: recipes/demo/run.sh [--stage N] [--stop-stage M] [--exp DIR] [--models mlp_mdn|heads]
#                            [--fit-args "..."] [--gen-args "..."]
#   stages: 1 prepare, 2 train MLP, 3 train MDN, 4 generate, 5 compare
#   --models heads: every output distribution (MLP, MDN, MDN on the discretised likelihood,
#               logistic mixture, mu-law softmax), one report; see recipes/common.sh
#   --exp DIR   output folder (default exp/demo, with --models heads exp/demo_heads)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exp=
parse_recipe_option() { return 1; }
# shellcheck source=../common.sh
. "$here/../common.sh"
parse_common "$@"
exp=${exp:-exp/demo$(models_suffix)}

if in_stage 1; then
  stage_banner 1 "prepare the demo corpus (2 validation utterances per speaker)"
  run "$WAVEFORM_MDN" prepare demo "$exp/data" --split per_speaker --valid 2 --seed 0 --overwrite
fi
model_stages "$here/conf/mlp.yaml" "$here/conf/mdn.yaml" --split valid --seconds 2 --png
closing_message
