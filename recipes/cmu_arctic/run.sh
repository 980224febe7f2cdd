#!/usr/bin/env bash
# CMU ARCTIC recipe: single-speaker studio recordings (about 1,130 utterances, ~1 h per
# voice) with the release's Festival phone labels (lab/*.lab), fetched by
# torchaudio.datasets.CMUARCTIC.
#
# usage: recipes/cmu_arctic/run.sh [--speakers slt[,bdl...]] [--root DIR | --corpus DIR]
#                                  [--max-utterances N] [--stage N] [--stop-stage M]
#                                  [--exp DIR] [--fit-args "..."] [--gen-args "..."]
#   --root DIR     download root (default downloads/); stage 0 downloads into DIR/ARCTIC
#   --corpus DIR   an existing folder holding cmu_us_<spk>_arctic/{wav,lab}: skips the download
#   --max-utterances N   use at most N utterances (default all)
#   stages: 0 download, 1 prepare, 2 train MLP, 3 train MDN, 4 generate, 5 compare
#   --exp DIR      output folder (default exp/cmu_arctic)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
speakers=slt
root=downloads
corpus=
max_utts=
stage=0
exp=exp/cmu_arctic
parse_recipe_option() {
  case "$1" in
    --speakers) speakers=$2; consumed=2 ;;
    --root) root=$2; consumed=2 ;;
    --corpus) corpus=$2; consumed=2 ;;
    --max-utterances) max_utts=$2; consumed=2 ;;
    *) return 1 ;;
  esac
}
# shellcheck source=../common.sh
. "$here/../common.sh"
parse_common "$@"
python=$(dirname "$(command -v "$WAVEFORM_MDN")")/python
[ -x "$python" ] || python=python3

if [ -z "$corpus" ]; then
  corpus=$root/ARCTIC
  if in_stage 0; then
    stage_banner 0 "download CMU ARCTIC ($speakers) with torchaudio.datasets.CMUARCTIC"
    run "$python" -m data_prep.arctic "$root" --speakers "$speakers"
  fi
fi
# Festival's ARCTIC labels use TIMIT symbols plus a few of their own: map those.
prep=(--speakers "$speakers" --split per_speaker --valid 0.05 --phone-map ssil=pau,brth=pau,sil=pau)
[ -n "$max_utts" ] && prep+=(--max-utterances "$max_utts")

if in_stage 1; then
  stage_banner 1 "prepare CMU ARCTIC ($speakers)"
  run "$WAVEFORM_MDN" prepare "$corpus" "$exp/data" "${prep[@]}" --overwrite
fi
model_stages "$here/conf/mlp.yaml" "$here/conf/mdn.yaml" --split valid --limit 4 --png
closing_message
