#!/usr/bin/env bash
# NLTK TIMIT sample recipe: the 16-speaker sample that NLTK users have under
# nltk_data/corpora/timit (layout dr<N>-<speaker>/<utt>.{wav,phn,wrd,txt}; real TIMIT
# speech, 10 utterances per speaker).
#
# usage: recipes/timit_sample/run.sh [--corpus DIR] [--setup one_speaker|all_speakers]
#                                    [--speaker ID] [--stage N] [--stop-stage M] [--exp DIR]
#                                    [--fit-args "..."] [--gen-args "..."] [--models mlp_mdn|heads]
#   --corpus DIR   the sample (default: $TIMIT_SAMPLE_DIR, else $NLTK_DATA/corpora/timit,
#                  else ~/nltk_data/corpora/timit)
#   --setup one_speaker    one speaker (--speaker, default FAEM0): 9 train, 1 valid utterance
#           all_speakers   every speaker: 9 train, 1 valid utterance each
#   stages: 1 prepare, 2 train MLP, 3 train MDN, 4 generate, 5 compare
#   --models heads every output distribution on the same data, one report (recipes/common.sh)
#   --exp DIR      output folder (default exp/timit_sample_<setup>, with --models heads
#                  exp/timit_sample_<setup>_heads)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
corpus=${TIMIT_SAMPLE_DIR:-${NLTK_DATA:-$HOME/nltk_data}/corpora/timit}
setup=one_speaker
speaker=FAEM0
exp=
parse_recipe_option() {
  case "$1" in
    --corpus) corpus=$2; consumed=2 ;;
    --setup) setup=$2; consumed=2 ;;
    --speaker) speaker=$2; consumed=2 ;;
    *) return 1 ;;
  esac
}
# shellcheck source=../common.sh
. "$here/../common.sh"
parse_common "$@"
exp=${exp:-exp/timit_sample_$setup$(models_suffix)}

case "$setup" in
  one_speaker)  prep=(--speakers "$speaker" --split per_speaker --valid 1); gen=(--split valid --png)
                mlp_conf=$here/conf/mlp.yaml; mdn_conf=$here/conf/mdn.yaml ;;
  all_speakers) prep=(--split per_speaker --valid 1); gen=(--split valid --limit 4 --png)
                mlp_conf=$here/conf/mlp_all.yaml; mdn_conf=$here/conf/mdn_all.yaml ;;
  *) echo "error: --setup must be one_speaker or all_speakers, not '$setup'" >&2; exit 2 ;;
esac

if in_stage 1; then
  if [ ! -d "$corpus" ]; then
    echo "error: NLTK TIMIT sample not found at $corpus (give --corpus DIR; NLTK users:" \
         "python -m nltk.downloader timit)" >&2; exit 2
  fi
  stage_banner 1 "prepare the NLTK TIMIT sample ($setup)"
  run "$WAVEFORM_MDN" prepare "$corpus" "$exp/data" "${prep[@]}" --overwrite
fi
model_stages "$mlp_conf" "$mdn_conf" "${gen[@]}"
closing_message
