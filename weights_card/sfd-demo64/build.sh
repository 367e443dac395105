#!/usr/bin/env bash
# Rebuilds the bundled demo weights sfd/weights/sfd-demo64 from a training checkpoint, with the
# commands that made the committed folder: calibration, direction atlas, held-out evaluation,
# the reenactment figure docs/heldout_reenactment.png and the fp16-only export with its card.
#
#   weights_card/sfd-demo64/build.sh CHECKPOINT DATA FACES
#
# CHECKPOINT: a training checkpoint folder (its ema/ weights are used), e.g.
#             runs/demo64/checkpoints/checkpoint-0009000
# DATA:       the preprocessed clips (train/ and test/), as `python -m sfd preprocess` wrote them
# FACES:      ../shared/data/faces (the held-out clips are read from here, uncropped)
# The numbers for weights_card/sfd-demo64/NOTES.md are printed on the way.
set -euo pipefail
CHECKPOINT=${1:?training checkpoint folder}
DATA=${2:?preprocessed data root with train/ and test/}
FACES=${3:?the shared faces folder}
cd "$(dirname "$0")/../.."
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
DATASETS=("LIA example clips (VoxCeleb-style)=CC BY-NC 4.0" "LivePortrait example clips=MIT")
# The figure shows the first clip: d19 comes from LivePortrait's MIT-licensed examples.
HELD_OUT=("$FACES/liveportrait/driving/d19.mp4" "$FACES/lia-vox/driving2.mp4")

python -m sfd export "$CHECKPOINT" "$STAGE/full"
python -m sfd calibrate "$STAGE/full" "$DATA/train" --no-crop --max-faces 1000
python -m sfd atlas "$STAGE/full" --faces "$DATA/train" --no-crop
# What ships is float16: measure that.
python -m sfd export "$STAGE/full" "$STAGE/fp16" --fp16-only --calibration "$STAGE/full/calibration.json"
python -m sfd evaluate "$STAGE/fp16" "$DATA" --split test --out "$STAGE/eval" --name sfd-demo64 \
    --dataset-name "held-out clips (driving2, d19)"
python -m sfd.evaluation.full_frame "$STAGE/fp16" "${HELD_OUT[@]}" --max-frames 96 \
    --figure docs/heldout_reenactment.png --figure-frames 24 48 72
python -m sfd export "$STAGE/full" sfd/weights/sfd-demo64 --overwrite --fp16-only --name sfd-demo64 \
    --calibration "$STAGE/full/calibration.json" --atlas "$STAGE/full/atlas.json" \
    --eval-json "$STAGE/eval/evaluation.json" --notes weights_card/sfd-demo64/NOTES.md \
    --license cc-by-nc-4.0 --datasets "${DATASETS[@]}"
