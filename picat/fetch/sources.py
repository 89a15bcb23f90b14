"""The one table of datasets ``picat fetch-data`` knows: where each archive is published, its
checksum and where that checksum was found, and the layout the picat reader expects.

Two kinds of entry:

* **direct downloads** (``urls`` non-empty): the authors publish a plain archive; the first URL
  is the authors' own, the rest are mirrors tried in order when a host cannot be reached. The
  archive is checked against ``sha256`` before anything is extracted. ``sha256`` is ``None``
  where no checksum could be found in public material: the digest is then computed and shown,
  and extraction waits for the user to confirm it (``--sha256 HEX``) or waive it
  (``--accept-unverified``). Nothing here is invented.
* **behind terms** (``urls`` empty): the authors hand the data out only after the user agrees
  to their terms; ``fetch-data`` prints where to agree and the layout to unpack into.

No checksum below is published by the dataset's authors themselves (none of them publishes
one); each was found recorded in public code that downloads the same URL, and ``checksum_origin``
says where. Hosts change: shapenet.cs.stanford.edu (the PointNet/PointNet++ releases) has been
reported unreachable since about 2023 (connection refused), so its entries list mirrors. A
mirror is a third party's copy: the checksum, where there is one, is what vouches for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from picat.fetch.errors import FetchError


@dataclass(frozen=True)
class Source:
    """One dataset ``picat fetch-data NAME`` can fetch or explain.

    Attributes:
        name: the command-line name (the picat reader format where there is one).
        title: what the dataset is, for listings.
        folder: the folder made under ``--root``; it is the reader's ``root``.
        reader: how picat reads it (a reader spec ``format`` or the corpus kind).
        layout: the layout under ``folder`` the reader expects, in words.
        required: glob patterns (relative to ``folder``) that must each match at least one
            path for the extracted tree to count as the reader's layout.
        archive: the archive's file name (downloaded beside the dataset folder).
        archive_folder: the single top-level folder inside the archive, whose contents
            become ``folder``.
        urls: the authors' URL first, then mirrors; empty where the data is behind terms.
        sha256: the archive's expected sha256 (lower-case hex), or None where none is known.
        checksum_origin: where ``sha256`` was found, or why there is none.
        size: the archive's size in bytes where known (checked after the download).
        terms: the terms of use, and where to agree to them for entries behind terms.
        notes: anything else a user should know (dead hosts, mirrors, rearrangements).
    """

    name: str
    title: str
    folder: str
    reader: str
    layout: str
    required: tuple[str, ...] = ()
    archive: str | None = None
    archive_folder: str | None = None
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    checksum_origin: str = ""
    size: int | None = None
    terms: str = ""
    notes: str = ""

    @property
    def behind_terms(self) -> bool:
        """True where the data is handed out only after agreeing to terms (no direct URL)."""
        return not self.urls


_STANFORD_DOWN = ("shapenet.cs.stanford.edu, the original host, has been reported unreachable since about "
                  "2023; the mirrors after it are third-party copies")

SOURCES: dict[str, Source] = {source.name: source for source in (
    Source(
        name="modelnet40_off",
        title="ModelNet40 meshes (Princeton ModelNet, 12,311 OFF meshes in 40 classes)",
        folder="ModelNet40",
        reader="modelnet40_off (and corpus.kind: modelnet_off)",
        layout="<class>/{train,test}/<class>_NNNN.off",
        required=("*/train/*.off", "*/test/*.off"),
        archive="ModelNet40.zip",
        archive_folder="ModelNet40",
        urls=("https://modelnet.cs.princeton.edu/ModelNet40.zip",),
        sha256="42dc3e656932e387f554e25a4eb2cc0e1a1bd3ab54606e2a9eae444c60e536ac",
        checksum_origin=("not published by Princeton; recorded for this URL in InterDigital's CompressAI "
                         "(compressai/datasets/pointcloud/modelnet.py, HASHES['40']) and, with the same value, "
                         "in several independent public projects"),
        terms=("the ModelNet models are for academic research use only; copyright stays with the models' "
               "authors (https://modelnet.cs.princeton.edu/)"),
        notes="the archive's ModelNet40/ folder is the reader's layout as it is; nothing is rearranged",
    ),
    Source(
        name="modelnet40_resampled",
        title="ModelNet40 resampled point clouds with normals (PointNet++ authors, 10,000 points per shape)",
        folder="modelnet40_normal_resampled",
        reader="modelnet40_resampled",
        layout=("<class>/<class>_NNNN.txt (x,y,z,nx,ny,nz per line), modelnet40_shape_names.txt, "
                "modelnet40_{train,test}.txt"),
        required=("modelnet40_shape_names.txt", "modelnet40_train.txt", "modelnet40_test.txt", "*/*_*.txt"),
        archive="modelnet40_normal_resampled.zip",
        archive_folder="modelnet40_normal_resampled",
        urls=("https://shapenet.cs.stanford.edu/media/modelnet40_normal_resampled.zip",
              "https://huggingface.co/datasets/cminst/ModelNet40/resolve/main/modelnet40_normal_resampled.zip"),
        sha256=None,
        checksum_origin=("none found: the authors publish none; Flux3D.jl records "
                         "d64e9c5cfc479bac3260b164ae3c75ba83e94a1d216fbcd3f59ce2a9686d3762 for this archive, but "
                         "the same repository gives that value to ModelNet10.zip as well (whose sha256 is "
                         "9d8679435fc07d1d26f13009878db164a7aa8ea5e7ea3c8880e42794b7307d51 per CompressAI), so "
                         "it is not trusted here"),
        terms="derived from ModelNet (academic research use only)",
        notes=(_STANFORD_DOWN + "; the archive's modelnet40_normal_resampled/ folder is the reader's layout as it "
               "is (its extra modelnet10_*.txt and filelist.txt are kept)"),
    ),
    Source(
        name="modelnet40_h5",
        title="ModelNet40 HDF5, 2048 points per shape (PointNet authors; the paper suite's default)",
        folder="modelnet40_ply_hdf5_2048",
        reader="modelnet40_h5",
        layout="ply_data_{train,test}{0..4}.h5 (data, label, normal), shape_names.txt, {train,test}_files.txt",
        required=("shape_names.txt", "train_files.txt", "test_files.txt", "ply_data_train*.h5",
                  "ply_data_test*.h5"),
        archive="modelnet40_ply_hdf5_2048.zip",
        archive_folder="modelnet40_ply_hdf5_2048",
        urls=("https://shapenet.cs.stanford.edu/media/modelnet40_ply_hdf5_2048.zip",
              "https://huggingface.co/datasets/Msun/modelnet40/resolve/main/modelnet40_ply_hdf5_2048.zip",
              "https://github.com/ma-xu/pointMLP-pytorch/releases/download/Modenet40_dataset/"
              "modelnet40_ply_hdf5_2048.zip"),
        sha256="07670e237db72ece0f723b9abb571534c9ad655a6456b389646587dc72bb8bae",
        checksum_origin=("not published by the PointNet authors; recorded with the size for this URL in "
                         "TensorFlow Graphics (tensorflow_graphics/datasets/modelnet40/checksums.tsv)"),
        size=435212151,
        terms="derived from ModelNet (academic research use only)",
        notes=(_STANFORD_DOWN + "; the archive's modelnet40_ply_hdf5_2048/ folder is the reader's layout as it "
               "is (the lists' data/modelnet40_ply_hdf5_2048/ prefix is resolved by the reader)"),
    ),
    Source(
        name="shapenetpart_txt",
        title="ShapeNetPart, normal-resampled text release (16 categories, 50 parts, 16,881 shapes)",
        folder="shapenetcore_partanno_segmentation_benchmark_v0_normal",
        reader="shapenetpart_txt",
        layout=("synsetoffset2category.txt, <synset>/<shape id>.txt (x y z nx ny nz part), "
                "train_test_split/shuffled_{train,val,test}_file_list.json"),
        required=("synsetoffset2category.txt", "train_test_split/shuffled_train_file_list.json",
                  "train_test_split/shuffled_val_file_list.json", "train_test_split/shuffled_test_file_list.json",
                  "[0-9]*/*.txt"),
        archive="shapenetcore_partanno_segmentation_benchmark_v0_normal.zip",
        archive_folder="shapenetcore_partanno_segmentation_benchmark_v0_normal",
        urls=("https://shapenet.cs.stanford.edu/media/shapenetcore_partanno_segmentation_benchmark_v0_normal.zip",
              "https://huggingface.co/datasets/cminst/ShapeNet/resolve/main/"
              "shapenetcore_partanno_segmentation_benchmark_v0_normal.zip",
              "https://omnomnom.vision.rwth-aachen.de/data/point2vec/data/"
              "shapenetcore_partanno_segmentation_benchmark_v0_normal.zip"),
        sha256="0e26411700bae2da38ee8ecc719ba4db2e6e0133486e258665952ad5dfced0fe",
        checksum_origin=("not published by the authors; recorded for this URL in InterDigital's CompressAI "
                         "(compressai/datasets/pointcloud/shapenet.py) and, with the same value, by two other "
                         "public projects, which use it for the Hugging Face and RWTH mirrors"),
        terms="part annotations of ShapeNet models (Yi et al. 2016); ShapeNet's terms of use apply",
        notes=(_STANFORD_DOWN + "; the archive's folder is the reader's layout as it is"),
    ),
    Source(
        name="shapenetcore",
        title="ShapeNetCore meshes (the pre-training corpus)",
        folder="ShapeNetCore.v2",
        reader="corpus.kind: shapenetcore",
        layout=("<synset>/<model id>/models/model_normalized.obj (v2), or <synset>/<model id>/model.obj (v1, "
                "folder ShapeNetCore.v1)"),
        terms=("behind terms: register at https://shapenet.org, agree to the ShapeNet terms of use and download "
               "ShapeNetCore.v2.zip; or accept the terms of the gated Hugging Face organisation "
               "https://huggingface.co/ShapeNet and download ShapeNetCore's per-synset zips"),
        notes="unzip so that <root>/ShapeNetCore.v2/<synset>/... exists (per-synset zips: one folder per synset)",
    ),
    Source(
        name="scanobjectnn",
        title="ScanObjectNN real scans, 15 classes (OBJ_BG, OBJ_ONLY, PB_T50_RS)",
        folder="ScanObjectNN/h5_files",
        reader="scanobjectnn (variant obj_bg, obj_only or pb_t50_rs)",
        layout=("main_split/{training,test}_objectdataset.h5 (obj_bg), main_split_nobg/{training,test}_"
                "objectdataset.h5 (obj_only), main_split/{training,test}_objectdataset_augmentedrot_scale75.h5 "
                "(pb_t50_rs)"),
        terms=("behind terms: agree to the terms of use at https://hkust-vgd.github.io/scanobjectnn/ ; the "
               "authors then send the link to h5_files.zip"),
        notes="unzip h5_files.zip into <root>/ScanObjectNN so that <root>/ScanObjectNN/h5_files/main_split/ exists",
    ),
    Source(
        name="s3dis",
        title="S3DIS, Stanford 3D indoor scenes, 6 areas, 13 classes",
        folder="Stanford3dDataset_v1.2_Aligned_Version",
        reader="s3dis_raw (converted once by picat s3dis-convert into s3dis_npy rooms)",
        layout="Area_<k>/<room>/Annotations/<class>_<i>.txt (x y z r g b per line)",
        terms=("behind terms: request access with the form at http://buildingparser.stanford.edu/dataset.html "
               "and agree to the terms; then download Stanford3dDataset_v1.2_Aligned_Version.zip"),
        notes=("unzip into <root> so that <root>/Stanford3dDataset_v1.2_Aligned_Version/Area_1/ exists; the "
               "release's known bad byte in Area_5/hallway_6/Annotations/ceiling_1.txt is reported by the "
               "reader with file and line"),
    ),
)}


def get_source(name: str) -> Source:
    """The table entry ``name``, or a FetchError naming the known names."""
    if name not in SOURCES:
        raise FetchError(f"unknown dataset {name!r} for fetch-data; known: {', '.join(SOURCES)}")
    return SOURCES[name]
