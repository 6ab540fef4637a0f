#!/usr/bin/env bash
# Regenerates the PNGs in this folder with the tool itself (random-init ResNet-50: no weights
# are downloaded here, so these show an untrained network's maps of matplotlib's sample photo).
# Run from the repository root: bash docs/gallery/make_gallery.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d viz-out/gallery-XXXX)
trap 'rm -rf "$work"' EXIT
gallery=docs/gallery

# The main job (what `python -m viz` does, minus the ImageNet download attempt).
python3 -m viz --weights none --out "$work/main" --quiet
job="$work/main/resnet50/grace_hopper/layer4"
cp "$job/sum.png" "$gallery/layer4_sum.png"
cp "$job/overlay.png" "$gallery/layer4_overlay.png"
cp "$job/sheet.png" "$gallery/layer4_sheet.png"
cp "$job/gradcam_overlay.png" "$gallery/layer4_gradcam_overlay.png"

# A ViT: its tokens drawn on the 14x14 patch grid (default layer, its fixed 224 input), small.
python3 -m viz --model vit_b_16 --weights none --scale 4 --out "$work/vit" --quiet
vit="$work/vit/vit_b_16/grace_hopper/encoder.layers.encoder_layer_11.ln_1"
cp "$vit/sheet.png" "$gallery/vit_b_16_sheet.png"
cp "$vit/overlay.png" "$gallery/vit_b_16_overlay.png"

# An earlier layer, per-channel images at 8x (48x48 -> 384x384), ranked by energy; one file per
# channel (--channel-files) to copy two of them (by default they are tiles of channels.png).
python3 -m viz --weights none --layer layer2 --rank energy --channel-files --out "$work/l2" --quiet
for channel in 0007 0042; do cp "$work/l2/resnet50/grace_hopper/layer2/channels/$channel.png" "$gallery/layer2_channel_$channel.png"; done
cp "$work/l2/resnet50/grace_hopper/layer2/sheet.png" "$gallery/layer2_sheet.png"

# Compare: the same architecture with two different random initialisations ("baseline" vs "new").
python3 - "$work/new_method.pth" <<'PY'
import sys, torch, torchvision
torch.manual_seed(1)
torch.save({"epoch": 120, "state_dict": {f"module.{k}": v for k, v in torchvision.models.resnet50().state_dict().items()}}, sys.argv[1])
PY
python3 -m viz --weights none --compare "$work/new_method.pth" --layer layer3 --out "$work/cmp" --quiet
cp "$work/cmp/compare/resnet50-vs-resnet50/grace_hopper/layer3/panel_sum.png" "$gallery/compare_layer3_sum.png"
cp "$work/cmp/compare/resnet50-vs-resnet50/grace_hopper/layer3/panel_sheet.png" "$gallery/compare_layer3_sheet.png"
du -ch "$gallery"/*.png | tail -1
