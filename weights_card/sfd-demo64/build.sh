#!/usr/bin/env bash
# Rebuilds the bundled demo weights sfd/weights/sfd-demo64 from a training checkpoint, with the
# commands that made the committed folder: calibration, the measured direction atlas, the
# evaluation on the test identities, the figure docs/heldout_reenactment.png and the fp16-only
# export with its card.
#
#   weights_card/sfd-demo64/build.sh CHECKPOINT DATA TEST CORPUS
#
# CHECKPOINT: a training checkpoint folder (its ema/ weights are used), e.g.
#             runs/final/checkpoints/checkpoint-0004000, or a weights folder (what a lease returns:
#             OUT/weights of `python -m sfd.training.lease run`, as for the committed folder)
# DATA:       the preprocessed training crops (DATA/train), as `python -m sfd preprocess` wrote them
#             (the committed folder's: one box per clip, the default, as its last stage trained on)
# TEST:       the preprocessed crops of the corpus's test identities (TEST/test; one box per clip too)
# CORPUS:     the talking-heads corpus (manifest.csv, clips/, stills/): whole-frame evaluation
# The numbers for weights_card/sfd-demo64/NOTES.md are printed on the way.
set -euo pipefail
CHECKPOINT=${1:?training checkpoint folder}
DATA=${2:?preprocessed training crops with train/}
TEST=${3:?preprocessed test crops with test/}
CORPUS=${4:?the talking-heads corpus folder}
cd "$(dirname "$0")/../.."
# SFD_BUILD_STAGE keeps the intermediate folders (to re-run the last export after editing NOTES.md).
if [ -n "${SFD_BUILD_STAGE:-}" ]; then
    STAGE=$SFD_BUILD_STAGE
    mkdir -p "$STAGE"
else
    STAGE=$(mktemp -d)
    trap 'rm -rf "$STAGE"' EXIT
fi
mapfile -t DATASETS < <(python weights_card/sfd-demo64/training_sources.py "$CORPUS/manifest.csv")

python -m sfd export "$CHECKPOINT" "$STAGE/full"
python -m sfd calibrate "$STAGE/full" "$DATA/train" --no-crop --max-faces 1000
python -m sfd atlas "$STAGE/full" --faces "$DATA/train" --no-crop
# What ships is float16: measure that.
python -m sfd export "$STAGE/full" "$STAGE/fp16" --fp16-only --calibration "$STAGE/full/calibration.json"
python -m sfd evaluate "$STAGE/fp16" "$TEST" --split test --out "$STAGE/eval" --name sfd-demo64 \
    --dataset-name "talking-heads test identities (crops)" --max-frames 48 --cross-identity-pairs 0
# The figure: a test clip where the mouth's motion shows (mouth r 0.88 on the committed weights).
FIGURE_CLIP=${SFD_FIGURE_CLIP:-clips/099_dpe-s.mp4}
python -m sfd.evaluation.full_frame "$STAGE/fp16" "$CORPUS/$FIGURE_CLIP" --max-frames 96 \
    --figure docs/heldout_reenactment.png --figure-frames 24 48 72
# Same identity on every test clip; then each clip driving 5 stills of other people (30 frames each:
# 95 animations). The weights' own motion: without the pipeline's blink, mouth and head transfer.
python -m sfd.evaluation.full_frame "$STAGE/fp16" --data "$CORPUS" --split test --max-frames 90 \
    --no-blinks --no-mouth --no-head --json "$STAGE/full_frame.json"
python -m sfd.evaluation.full_frame "$STAGE/fp16" --data "$CORPUS" --split test --max-frames 30 \
    --cross-stills 5 --no-blinks --no-mouth --no-head --json "$STAGE/cross.json"
python -m sfd export "$STAGE/full" sfd/weights/sfd-demo64 --overwrite --fp16-only --name sfd-demo64 \
    --calibration "$STAGE/full/calibration.json" --atlas "$STAGE/full/atlas.json" \
    --eval-json "$STAGE/eval/evaluation.json" --notes weights_card/sfd-demo64/NOTES.md \
    --license cc-by-nc-4.0 --datasets "${DATASETS[@]}"
