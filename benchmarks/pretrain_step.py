"""Time one Pic@Point training step with cached vs on-the-fly image features, and peak memory.

Each (backbone, image-feature path) runs in its own process so its peak resident memory is
its own. Full paper sizes by default: batch 32, 1024 points, DGCNN k=20 / 1024 channels,
PointNeXt-S, latent 512, frozen ResNet-18 (random weights: the cost does not depend on them).

    python benchmarks/pretrain_step.py                 # all four, a table
    python benchmarks/pretrain_step.py --one dgcnn cached
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from picat.geometry import dodecahedron_cameras
from picat.models.factory import build_point_backbone
from picat.models.image import ImageBackboneSpec, build_image_backbone
from picat.pretrain.correspondence import random_rotations
from picat.pretrain.engine import TrainSettings, step_loss
from picat.pretrain.model import PicAtPoint


def measure(backbone_name: str, images: str, batch: int, points: int, repeats: int, image_backbone: str) -> dict:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    options = {"k": 20, "emb_dims": 1024, "local_centres": 256} if backbone_name == "dgcnn" else {}
    encoder = build_image_backbone(ImageBackboneSpec(image_backbone,
                                                     "imagenet" if image_backbone != "resnet18" else "none"))
    model = PicAtPoint(build_point_backbone(backbone_name, options), encoder.local_dim, "full", 512, 64)
    optimizer = torch.optim.Adam([{"params": model.point_parameters(), "lr": 1e-3},
                                  {"params": model.image_parameters(), "lr": 5e-5}], weight_decay=1e-6)
    settings = TrainSettings(epochs=1, batch_size=batch)
    views, projs = dodecahedron_cameras(2.5, 50.0)
    batch_data = {
        "points": torch.randn(batch, points, 3) * 0.4,
        "view": torch.tensor(views[:1], dtype=torch.float32).expand(batch, 4, 4).clone(),
        "proj": torch.tensor(projs[:1], dtype=torch.float32).expand(batch, 4, 4).clone(),
    }
    raw_images = torch.randint(0, 256, (batch, 224, 224, 3), dtype=torch.uint8)
    if images == "cached":
        with torch.no_grad():
            batch_data["image_local"], batch_data["image_global"] = encoder(raw_images)
    else:
        batch_data["image"] = raw_images
    times = []
    for step in range(repeats + 1):
        started = time.perf_counter()
        rotation = random_rotations(batch, "so3", generator=torch.Generator().manual_seed(step))
        losses = step_loss(model, batch_data, rotation, settings, encoder if images == "onthefly" else None)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        if step:  # the first step warms up
            times.append(time.perf_counter() - started)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"backbone": backbone_name, "images": images, "step_s": statistics.median(times), "peak_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one", nargs=2, metavar=("BACKBONE", "IMAGES"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image-backbone", default="resnet18", choices=["resnet18", "efficientnet_lite0"])
    args = parser.parse_args()
    common = ["--batch", str(args.batch), "--points", str(args.points), "--repeats", str(args.repeats),
              "--image-backbone", args.image_backbone]
    if args.one:
        print(json.dumps(measure(*args.one, args.batch, args.points, args.repeats, args.image_backbone)))
        return
    print(f"torch {torch.__version__}, 2 threads, batch {args.batch}, {args.points} points, image backbone "
          f"{args.image_backbone}, median of {args.repeats} steps after 1 warm-up")
    for backbone in ("dgcnn", "pointnext"):
        for images in ("cached", "onthefly"):
            out = subprocess.run([sys.executable, __file__, "--one", backbone, images, *common],
                                 capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{backbone:9s} {images:8s} step {row['step_s']:.2f} s   peak RSS {row['peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
