"""THE ORIGINAL SCRIPT, kept for timing only: do not use it, do not "fix" it.

A faithful copy of the blog post's feature-map visualisation (``../shared/seed/*.txt``,
described in ``../shared/notes/original-script.md``): ``image_proprecess``, the hand-edited
``forward`` returning a layer's output, ``visualize_feature_map`` and
``BilinearInterpolation`` (imported from ``original_bilinear.py``), with its bugs (uint8 output, black frame, 0.001 px shift, pyplot
state leaking across channels, the running sum aliasing channel 0). Two changes, both only
so it can be timed here: the channel loop's hard-coded 2048 is the module constant
``CHANNELS`` (the benchmark sets it to run a subset and extrapolates), and the model is a
random-init torchvision ResNet-50 on the CPU instead of ``siamese_resnet50`` + ``net_120.pth``
+ ``.cuda()``. The edited ``forward`` returns ``layer4`` (the 2048-channel layer the loop was
written for).

``python -m benchmarks.original_script OUT_PREFIX N [N ...]`` runs the whole job once per N
and prints a JSON object of timings (seconds since process start, and per visualisation).
"""

import time

PROCESS_START = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision import transforms  # noqa: E402

from benchmarks.original_bilinear import BilinearInterpolation  # noqa: E402

#: The original loops over ``range(0, 2048)``; the benchmark lowers this to time a subset.
CHANNELS = 2048


def image_proprecess(img_path):
    img = Image.open(img_path)
    data_transforms = transforms.Compose([
        transforms.Resize((384, 384), interpolation=3),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        ])
    data = data_transforms(img)
    data = torch.unsqueeze(data,0)
    return data


class EditedResNet(torch.nn.Module):
    """The original's hand-edited ``forward``, returning layer4's output beside the final one."""

    def __init__(self):
        super().__init__()
        self.model = torchvision.models.resnet50()

    def forward(self, x):
        x = self.model.conv1(x)
        x = self.model.bn1(x)
        x = self.model.relu(x)
        x = self.model.maxpool(x)
        x = self.model.layer1(x)
        x = self.model.layer2(x)
        x = self.model.layer3(x)
        feature = self.model.layer4(x)
        return feature, x


def Init_Setting():
    model = EditedResNet()
    model = model.eval()
    return model


def visualize_feature_map(img_batch,out_path,type,BI):
    feature_map = torch.squeeze(img_batch)
    feature_map = feature_map.detach().cpu().numpy()

    feature_map_sum = feature_map[0, :, :]
    feature_map_sum = np.expand_dims(feature_map_sum, axis=2)
    for i in range(0, CHANNELS):
        feature_map_split = feature_map[i,:, :]
        feature_map_split = np.expand_dims(feature_map_split,axis=2)
        if i > 0:
            feature_map_sum +=feature_map_split
        feature_map_split = BI.transform(feature_map_split)

        plt.imshow(feature_map_split)
        plt.savefig(out_path + str(i) + "_{}.jpg".format(type) )
        plt.xticks()
        plt.yticks()
        plt.axis('off')

    feature_map_sum = BI.transform(feature_map_sum)
    plt.imshow(feature_map_sum)
    plt.savefig(out_path + "sum_{}.jpg".format(type))
    print("save sum_{}.jpg".format(type))


def main(out_prefix, channel_counts):
    """The original's main flow, once per channel count; returns the timings."""
    from matplotlib import cbook

    timings = {"imports_s": time.perf_counter() - PROCESS_START}
    start = time.perf_counter()
    model = Init_Setting()
    BI = BilinearInterpolation(8, 8)
    data = image_proprecess(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    output, _ = model(data)
    timings["model_and_forward_s"] = time.perf_counter() - start
    for count in channel_counts:
        global CHANNELS
        CHANNELS = count
        plt.close("all")  # each timed run starts with a fresh figure, as a fresh process would
        start = time.perf_counter()
        visualize_feature_map(output, f"{out_prefix}{count}_", "drone", BI)
        timings[f"visualize_{count}_s"] = time.perf_counter() - start
    return timings


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], [int(n) for n in sys.argv[2:]])))
