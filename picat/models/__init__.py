"""Point cloud backbones (DGCNN, PointNeXt-S), the frozen 2D backbone and the projection heads."""
