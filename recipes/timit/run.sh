#!/usr/bin/env bash
# TIMIT recipe: your own copy of the LDC TIMIT corpus (TRAIN/ and TEST/ folders, NIST
# SPHERE .WAV files, any letter case). Reproduces the 2014 experiments and scales up.
#
# usage: recipes/timit/run.sh --timit DIR [--setup aa|fclt0|full] [--stage N] [--stop-stage M]
#                             [--exp DIR] [--fit-args "..."] [--gen-args "..."] [--models mlp_mdn|heads]
#   --timit DIR   the corpus (or set TIMIT_DIR)
#   --setup aa     segments of /aa/ from TRAIN: 100 train, 10 valid sequences (2014 "aa" dataset)
#           fclt0  one speaker, FCLT0: 9 train, 1 valid utterance (2014 "one speaker")
#           full   all of TIMIT, official split (TEST as validation), DDP on all GPUs
#   stages: 1 prepare, 2 train MLP, 3 train MDN, 4 generate, 5 compare
#   --models heads every output distribution on the same data, one report (recipes/common.sh;
#                 e.g. --setup aa --models heads)
#   --exp DIR     output folder (default exp/timit_<setup>, with --models heads exp/timit_<setup>_heads)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
timit=${TIMIT_DIR:-}
setup=fclt0
exp=
parse_recipe_option() {
  case "$1" in
    --timit) timit=$2; consumed=2 ;;
    --setup) setup=$2; consumed=2 ;;
    *) return 1 ;;
  esac
}
# shellcheck source=../common.sh
. "$here/../common.sh"
parse_common "$@"
exp=${exp:-exp/timit_$setup$(models_suffix)}

case "$setup" in
  aa)    prep=(--corpus-split train --phone-filter aa --max-sequences 110 --split total --valid 10 --split-by sequence)
         mlp_conf=$here/conf/mlp_aa.yaml; mdn_conf=$here/conf/mdn_aa.yaml; gen=(--split valid --limit 5) ;;
  fclt0) prep=(--speakers FCLT0 --split per_speaker --valid 1)
         mlp_conf=$here/conf/mlp.yaml; mdn_conf=$here/conf/mdn.yaml; gen=(--split valid --png) ;;
  full)  prep=(--split official)
         mlp_conf=$here/conf/mlp_full_ddp.yaml; mdn_conf=$here/conf/mdn_full_ddp.yaml
         gen=(--split valid --limit 8 --seconds 3 --png) ;;
  *) echo "error: --setup must be aa, fclt0 or full, not '$setup'" >&2; exit 2 ;;
esac

if in_stage 1; then
  if [ -z "$timit" ]; then
    echo "error: give the TIMIT folder with --timit DIR or TIMIT_DIR=DIR" >&2; exit 2
  fi
  stage_banner 1 "prepare TIMIT ($setup)"
  run "$WAVEFORM_MDN" prepare "$timit" "$exp/data" "${prep[@]}" --overwrite
fi
model_stages "$mlp_conf" "$mdn_conf" "${gen[@]}"
closing_message
