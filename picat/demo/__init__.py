"""The demo suite's data: synthetic part-labelled meshes and held-out benchmark stand-ins in the genuine layouts.

The demo runs the whole pipeline without downloading any dataset: a ShapeNet-like corpus of
synthetic meshes for pre-training, and stand-ins for the downstream benchmarks (ModelNet40,
ScanObjectNN, ShapeNetPart, S3DIS) written exactly as the real datasets are laid out, so the
real readers read them. Every shape, stand-in file and random draw is deterministic.

Modules: ``part_mesh`` (the part-labelled mesh, categories and part names), ``primitives``
(mesh primitives and the builder), ``recipes`` (the category recipes, ``generate_shape``,
``demo_objects``), ``mesh_files`` (OBJ + label files); ``seeding`` (held-out seeds and
random streams), ``classification`` (ModelNet40 / ScanObjectNN stand-ins), ``scanner`` (the
virtual scanner's scenes, scans and crops), ``visibility`` (hidden-point removal, occlusion);
``folders`` (atomic layout folders), ``parts`` (ShapeNetPart stand-in), ``furnishing``
(furnished rooms), ``rooms`` (S3DIS stand-in).
"""
