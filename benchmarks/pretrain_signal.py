"""Does pre-training help? Linear-SVM accuracy on held-out synthetic objects, pre-trained vs random init.

A quick check for the demo suite (the proper Table 1 protocol is the `svm` step of the
downstream workflow): objects of every demo category that pre-training never saw (other
seeds), N surface points each, global features of the frozen backbone, a linear SVM whose C
is chosen by cross-validation on the training objects only, accuracy on the test objects.
The random-init baseline is the same architecture built with the checkpoint's seed.

Two tasks: the objects in their canonical pose, and the same objects under a random
rotation (one fixed rotation per object, drawn from a fixed seed). The synthetic categories
are so distinct that random-init features already separate them in canonical pose (~98%);
the rotated task asks for what pre-training with rotation augmentation should teach.

    python benchmarks/pretrain_signal.py results/pretrain/demo/dgcnn/full/seed0/checkpoint.pt
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import trimesh
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

import picat
from picat.demo.part_mesh import CATEGORIES
from picat.demo.recipes import generate_shape
from picat.meshes import normalisation_transform
from picat.models.factory import build_point_backbone
from picat.pretrain.correspondence import random_rotations


def held_out_clouds(per_category: int, n_points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, N, 6) normalised clouds with surface normals and (n,) labels, from shape seeds far from the corpus's."""
    rng = np.random.default_rng(seed)
    clouds, labels = [], []
    for label, category in enumerate(CATEGORIES):
        for _ in range(per_category):
            shape = generate_shape(category, int(rng.integers(2**40, 2**41)))
            mesh = trimesh.Trimesh(shape.vertices, shape.faces, process=False)
            mesh.apply_transform(normalisation_transform(shape.vertices))
            points, faces = trimesh.sample.sample_surface(mesh, n_points, seed=int(rng.integers(2**31)))
            clouds.append(np.concatenate([points, mesh.face_normals[faces]], axis=1).astype(np.float32))
            labels.append(label)
    return np.stack(clouds), np.array(labels)


def rotated(clouds: np.ndarray, seed: int) -> np.ndarray:
    """(n, N, 6) clouds (points, normals), each turned by its own uniformly random rotation (fixed by ``seed``)."""
    rotations = random_rotations(len(clouds), "so3", generator=torch.Generator().manual_seed(seed)).float()
    turned = [torch.einsum("bij,bnj->bni", rotations, torch.from_numpy(clouds[..., i:i + 3])) for i in (0, 3)]
    return torch.cat(turned, dim=2).numpy()


@torch.no_grad()
def features(backbone: torch.nn.Module, clouds: np.ndarray, batch: int = 32) -> np.ndarray:
    """(n, D) global features; clouds (n, N, 6) are cut to xyz unless the backbone takes normals."""
    backbone.eval()
    if not backbone.picat_metadata["normals"]:
        clouds = np.ascontiguousarray(clouds[..., :3])
    return np.concatenate(
        [backbone(torch.from_numpy(clouds[i:i + batch])).numpy() for i in range(0, len(clouds), batch)]
    )


def svm_accuracy(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """Test accuracy of a linear SVM with C chosen by 5-fold CV on the training features."""
    search = GridSearchCV(make_pipeline(StandardScaler(), SVC(kernel="linear")),
                          {"svc__C": [0.001, 0.01, 0.1, 1.0]}, cv=5)
    search.fit(*train)
    return float(search.score(*test)), search.best_params_["svc__C"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--train-per-category", type=int, default=20)
    parser.add_argument("--test-per-category", type=int, default=10)
    parser.add_argument("--points", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(2)
    train = held_out_clouds(args.train_per_category, args.points, seed=1001)
    test = held_out_clouds(args.test_per_category, args.points, seed=2002)
    print(f"held-out synthetic objects: {len(train[1])} train / {len(test[1])} test, {len(CATEGORIES)} categories, "
          f"{args.points} points")
    tasks = {"canonical pose": (train[0], test[0]), "random rotation": (rotated(train[0], 1), rotated(test[0], 2))}
    for path in args.checkpoints:
        trained = picat.load_backbone(path)
        meta = trained.picat_metadata
        torch.manual_seed(meta["seed"])
        random_init = build_point_backbone(meta["backbone"], meta["options"], meta["normals"], meta["up_axis"])
        random_init.picat_metadata = meta
        print(f"{path} ({meta['backbone']}/{meta['variant']}, seed {meta['seed']}, {len(meta['history'])} epochs, "
              f"image features {meta['image_backbone']['name']}/{meta['image_backbone']['weights']}, "
              f"suite {meta['suite']})")
        for task, (train_clouds, test_clouds) in tasks.items():
            for name, backbone in (("pre-trained", trained), ("random init", random_init)):
                accuracy, c = svm_accuracy((features(backbone, train_clouds), train[1]),
                                           (features(backbone, test_clouds), test[1]))
                print(f"  {task:15s} {name:11s} accuracy {100 * accuracy:.1f}% (C={c})", flush=True)


if __name__ == "__main__":
    main()
