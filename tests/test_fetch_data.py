"""``picat fetch-data``: download (resumable), checksum, atomic extraction into the readers' layouts.

Archives are tiny zips written here in the genuine releases' internal layouts, served from a
local HTTP server on 127.0.0.1 that honours Range requests and can cut a transfer short; the
sources table is pointed at it. A fetched dataset is read back with the picat reader.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from picat.cli import build_parser, main
from picat.datasets import (
    FORMATS,
    PART_FORMATS,
    read_modelnet40_h5,
    read_modelnet40_off,
    read_modelnet40_resampled,
    read_shapenetpart_txt,
    write_modelnet40_h5,
)
from picat.fetch import (
    SOURCES,
    ChecksumError,
    DownloadError,
    ExtractError,
    FetchError,
    LayoutError,
    UnverifiedArchiveError,
    fetch_dataset,
)
from picat.fetch.download import part_path

# --------------------------------------------------------------------------- local HTTP server


class _State:
    """What the server serves and what it saw."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.cut_after: int | None = None  # send only this many body bytes of the next response, then close
        self.ignore_range = False


class _Handler(BaseHTTPRequestHandler):
    """GET with single-range ``bytes=N-`` support (206 + Content-Range, 416 past the end)."""

    def do_GET(self) -> None:
        state: _State = self.server.state  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        requested = self.headers.get("Range")
        state.requests.append((path, requested))
        data = state.files.get(path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        if requested and not state.ignore_range:
            match = re.fullmatch(r"bytes=(\d+)-", requested)
            assert match, f"unexpected Range header {requested!r}"
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if state.cut_after is not None:  # announce the whole body, send part of it, hang up
            body, state.cut_after = body[:state.cut_after], None
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, _State]]:
    """(base URL, state) of an HTTP server on 127.0.0.1 with Range support."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = _State()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.state  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- tiny archives in the genuine layouts


def _zip(entries: dict[str, bytes | str]) -> bytes:
    """A zip holding ``entries`` (name -> content; a name ending in / is a folder entry)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


_TETRA = "OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n"
_TETRA_BROKEN_HEADER = _TETRA.replace("OFF\n4 4 0", "OFF4 4 0")  # as in some ModelNet files


def modelnet40_off_zip() -> bytes:
    """ModelNet40.zip: ModelNet40/<class>/{train,test}/<class>_NNNN.off, with macOS debris."""
    return _zip({
        "ModelNet40/": "",
        "ModelNet40/airplane/train/airplane_0001.off": _TETRA,
        "ModelNet40/airplane/train/airplane_0002.off": _TETRA_BROKEN_HEADER,
        "ModelNet40/airplane/test/airplane_0627.off": _TETRA,
        "ModelNet40/bathtub/train/bathtub_0001.off": _TETRA,
        "ModelNet40/bathtub/test/bathtub_0107.off": _TETRA,
        "ModelNet40/.DS_Store": b"\x00\x01",
        "__MACOSX/ModelNet40/._airplane": b"\x00",
    })


def _resampled_file(rng: np.random.Generator, n: int = 12) -> str:
    points = rng.normal(size=(n, 3))
    normals = points / np.linalg.norm(points, axis=1, keepdims=True)
    return "".join(",".join(f"{v:.6f}" for v in row) + "\n" for row in np.c_[points, normals])


def modelnet40_resampled_zip() -> bytes:
    """modelnet40_normal_resampled.zip: <class>/<class>_NNNN.txt, the name and split lists."""
    rng = np.random.default_rng(0)
    top = "modelnet40_normal_resampled"
    return _zip({
        f"{top}/": "",
        f"{top}/airplane/airplane_0001.txt": _resampled_file(rng),
        f"{top}/airplane/airplane_0627.txt": _resampled_file(rng),
        f"{top}/night_stand/night_stand_0001.txt": _resampled_file(rng),
        f"{top}/modelnet40_shape_names.txt": "airplane\nnight_stand\n",
        f"{top}/modelnet40_train.txt": "airplane_0001\nnight_stand_0001\n",
        f"{top}/modelnet40_test.txt": "airplane_0627\n",
        f"{top}/modelnet10_shape_names.txt": "night_stand\n",
        f"{top}/filelist.txt": "airplane/airplane_0001.txt\n",
    })


def modelnet40_h5_zip(tmp: Path) -> bytes:
    """modelnet40_ply_hdf5_2048.zip: ply_data_*.h5, shape_names.txt, {train,test}_files.txt."""
    folder = tmp / "h5_source"
    rng = np.random.default_rng(1)
    names = ["airplane", "bathtub"]
    write_modelnet40_h5(folder, "train", rng.normal(size=(3, 16, 6)), np.array([0, 1, 1]), names)
    write_modelnet40_h5(folder, "test", rng.normal(size=(2, 16, 6)), np.array([1, 0]), names)
    return _zip({f"modelnet40_ply_hdf5_2048/{p.name}": p.read_bytes() for p in sorted(folder.iterdir())})


def shapenetpart_zip() -> bytes:
    """shapenetcore_partanno_segmentation_benchmark_v0_normal.zip: category list, <synset>/<id>.txt, splits."""
    rng = np.random.default_rng(2)
    top = "shapenetcore_partanno_segmentation_benchmark_v0_normal"

    def shape(parts: list[int]) -> str:
        rows = np.c_[rng.normal(size=(len(parts), 6)), parts]
        return "".join(" ".join(f"{v:.6f}" for v in row[:6]) + f" {int(row[6])}\n" for row in rows)

    def listing(ids: list[str]) -> str:
        return json.dumps([f"shape_data/{i}" for i in ids])

    return _zip({
        f"{top}/synsetoffset2category.txt": "Airplane\t02691156\nMug\t03797390\n",
        f"{top}/02691156/1a04e3eab45ca15dd86060f189eb133.txt": shape([0, 1, 2, 3, 0]),
        f"{top}/02691156/1a32f10b20170883663e90eaf6b4ca52.txt": shape([1, 1, 3]),
        f"{top}/03797390/10f6e09036350e92b3f21f1137c3c347.txt": shape([36, 37, 37, 36]),
        f"{top}/train_test_split/shuffled_train_file_list.json": listing(
            ["02691156/1a04e3eab45ca15dd86060f189eb133", "03797390/10f6e09036350e92b3f21f1137c3c347"]),
        f"{top}/train_test_split/shuffled_val_file_list.json": listing([]),
        f"{top}/train_test_split/shuffled_test_file_list.json": listing(["02691156/1a32f10b20170883663e90eaf6b4ca52"]),
    })


def _check_modelnet40_off(folder: Path) -> None:
    train = read_modelnet40_off(folder, "train", n_points=32, seed=0)
    assert train.class_names == ("airplane", "bathtub")
    assert train.points.shape == (3, 32, 3) and list(train.labels) == [0, 0, 1]
    assert len(read_modelnet40_off(folder, "test", n_points=32, seed=0)) == 2
    assert not (folder / ".DS_Store").exists() and not (folder.parent / "__MACOSX").exists()


def _check_modelnet40_resampled(folder: Path) -> None:
    train = read_modelnet40_resampled(folder, "train", n_points=10, normals=True)
    assert train.class_names == ("airplane", "night_stand")
    assert train.points.shape == (2, 10, 6) and list(train.labels) == [0, 1]
    assert (folder / "filelist.txt").is_file()  # the release's extra files are kept


def _check_modelnet40_h5(folder: Path) -> None:
    train = read_modelnet40_h5(folder, "train", normals=True)
    assert train.points.shape == (3, 16, 6) and list(train.labels) == [0, 1, 1]
    assert len(read_modelnet40_h5(folder, "test")) == 2


def _check_shapenetpart(folder: Path) -> None:
    train = read_shapenetpart_txt(folder, "train")
    assert train.category_names == ("Airplane", "Mug") and list(train.categories) == [0, 1]
    assert [len(p) for p in train.points] == [5, 4] and train.points[0].shape[1] == 6
    assert len(read_shapenetpart_txt(folder, "test")) == 1


ARCHIVES: dict[str, tuple[Callable[[Path], bytes], Callable[[Path], None]]] = {
    "modelnet40_off": (lambda tmp: modelnet40_off_zip(), _check_modelnet40_off),
    "modelnet40_resampled": (lambda tmp: modelnet40_resampled_zip(), _check_modelnet40_resampled),
    "modelnet40_h5": (modelnet40_h5_zip, _check_modelnet40_h5),
    "shapenetpart_txt": (lambda tmp: shapenetpart_zip(), _check_shapenetpart),
}


def _serve(monkeypatch: pytest.MonkeyPatch, server: tuple[str, _State], name: str, data: bytes,
           sha256: str | None | bool = True, extra_urls: tuple[str, ...] = ()) -> str:
    """Serve ``data`` as the archive of source ``name`` and point the table at it; sha256 True
    means the data's true digest. Returns the archive's URL."""
    base, state = server
    source = SOURCES[name]
    path = f"/files/{source.archive}"
    state.files[path] = data
    digest = hashlib.sha256(data).hexdigest() if sha256 is True else sha256
    size = len(data) if source.size is not None else None  # keep the size check where the table has one
    monkeypatch.setitem(SOURCES, name, dataclasses.replace(source, urls=(*extra_urls, base + path), sha256=digest,
                                                           size=size))
    return base + path


def _cli(argv: list[str]) -> None:
    """Run ``picat fetch-data`` through the `picat` command's own parser (its wiring included)."""
    args = build_parser().parse_args(["fetch-data", *argv])
    args.run(args)


def test_picat_main_reports_conflicting_flags_in_one_line(capsys: pytest.CaptureFixture) -> None:
    assert main(["fetch-data", "modelnet40_resampled", "--sha256", "0" * 64, "--accept-unverified"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("picat fetch-data: error:") and "--accept-unverified" in error and "\n" not in error


def _fetch(name: str, root: Path, **options: object):
    return fetch_dataset(SOURCES[name], root, progress=False, log=lambda line: None, **options)


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", list(ARCHIVES))
def test_good_download_ends_in_the_readers_layout(name: str, server, monkeypatch, tmp_path: Path) -> None:
    build, check = ARCHIVES[name]
    _serve(monkeypatch, server, name, build(tmp_path))
    root = tmp_path / "data"
    _cli([name, "--root", str(root), "--quiet"])
    folder = root / SOURCES[name].folder
    check(folder)
    # Only the dataset folder is left: no archive, no .part, no temporary sibling.
    assert [p.name for p in root.iterdir()] == [folder.name]


def test_truncated_download_is_an_error_and_keeps_the_part(server, monkeypatch, tmp_path: Path) -> None:
    data = modelnet40_off_zip()
    url = _serve(monkeypatch, server, "modelnet40_off", data)
    server[1].cut_after = 300
    with pytest.raises(DownloadError, match=rf"{re.escape(url)}: the transfer stopped after 300 of {len(data)} bytes"):
        _fetch("modelnet40_off", tmp_path)
    archive = tmp_path / "ModelNet40.zip"
    assert not (tmp_path / "ModelNet40").exists() and not archive.exists()
    assert part_path(archive).stat().st_size == 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ModelNet40.zip.part"]


def test_interrupted_download_resumes_with_a_range_request(server, monkeypatch, tmp_path: Path) -> None:
    data = shapenetpart_zip()
    _serve(monkeypatch, server, "shapenetpart_txt", data)
    base, state = server
    state.cut_after = 500
    with pytest.raises(DownloadError, match="run the same command again to resume"):
        _fetch("shapenetpart_txt", tmp_path)
    result = _fetch("shapenetpart_txt", tmp_path)
    assert [r for _, r in state.requests] == [None, "bytes=500-"]
    assert result.downloaded and result.sha256 == hashlib.sha256(data).hexdigest()
    _check_shapenetpart(result.folder)
    assert not part_path(tmp_path / SOURCES["shapenetpart_txt"].archive).exists()


def test_wrong_checksum_names_the_file_and_both_digests(server, monkeypatch, tmp_path: Path) -> None:
    data = modelnet40_resampled_zip()
    wrong = "ab" * 32
    _serve(monkeypatch, server, "modelnet40_resampled", data, sha256=wrong)
    archive = tmp_path / "modelnet40_normal_resampled.zip"
    with pytest.raises(ChecksumError) as caught:
        _fetch("modelnet40_resampled", tmp_path)
    message = str(caught.value)
    assert str(archive) in message and wrong in message and hashlib.sha256(data).hexdigest() in message
    assert "\n" not in message
    assert not (tmp_path / "modelnet40_normal_resampled").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]  # kept for inspection, not extracted


def test_present_dataset_is_not_downloaded(server, monkeypatch, tmp_path: Path) -> None:
    _serve(monkeypatch, server, "modelnet40_h5", modelnet40_h5_zip(tmp_path))
    root = tmp_path / "data"
    assert _fetch("modelnet40_h5", root).downloaded
    requests = len(server[1].requests)
    again = _fetch("modelnet40_h5", root)
    assert not again.downloaded and len(server[1].requests) == requests
    _check_modelnet40_h5(again.folder)
    # A folder in the way without the reader's layout is an error, still without a download.
    (again.folder / "shape_names.txt").unlink()
    with pytest.raises(LayoutError, match=r"already exists but lacks shape_names\.txt"):
        _fetch("modelnet40_h5", root)
    assert len(server[1].requests) == requests


def test_unpublished_checksum_refuses_to_extract_until_given_or_waived(server, monkeypatch, tmp_path: Path) -> None:
    data = modelnet40_resampled_zip()
    digest = hashlib.sha256(data).hexdigest()
    _serve(monkeypatch, server, "modelnet40_resampled", data, sha256=None)
    root = tmp_path / "a"
    with pytest.raises(UnverifiedArchiveError, match=rf"its sha256 is {digest}\. .* --sha256 {digest}"):
        _cli(["modelnet40_resampled", "--root", str(root), "--quiet"])
    assert not (root / "modelnet40_normal_resampled").exists()
    assert (root / "modelnet40_normal_resampled.zip").is_file()
    # The recorded digest lets it through, from the archive already downloaded.
    _cli(["modelnet40_resampled", "--root", str(root), "--quiet", "--sha256", digest.upper()])
    _check_modelnet40_resampled(root / "modelnet40_normal_resampled")
    assert len(server[1].requests) == 1
    # A wrong --sha256 is a checksum error; --accept-unverified extracts anyway.
    with pytest.raises(ChecksumError):
        _cli(["modelnet40_resampled", "--root", str(tmp_path / "b"), "--quiet", "--sha256", "0" * 64])
    _cli(["modelnet40_resampled", "--root", str(tmp_path / "c"), "--quiet", "--accept-unverified"])
    _check_modelnet40_resampled(tmp_path / "c" / "modelnet40_normal_resampled")


def test_server_ignoring_range_restarts_from_the_start(server, monkeypatch, tmp_path: Path) -> None:
    data = modelnet40_off_zip()
    _serve(monkeypatch, server, "modelnet40_off", data)
    part_path(tmp_path / "ModelNet40.zip").write_bytes(b"stale bytes of another transfer")
    server[1].ignore_range = True
    result = _fetch("modelnet40_off", tmp_path)
    assert server[1].requests[0][1] == "bytes=31-"  # it asked to resume, got the whole file, started over
    _check_modelnet40_off(result.folder)


def test_complete_part_is_finished_without_a_transfer(server, monkeypatch, tmp_path: Path) -> None:
    data = modelnet40_off_zip()
    _serve(monkeypatch, server, "modelnet40_off", data)
    part_path(tmp_path / "ModelNet40.zip").write_bytes(data)  # cut just before the rename
    _check_modelnet40_off(_fetch("modelnet40_off", tmp_path).folder)
    assert server[1].requests == [("/files/ModelNet40.zip", f"bytes={len(data)}-")]


def test_dead_host_falls_back_to_the_next_url(server, monkeypatch, tmp_path: Path) -> None:
    base, state = server
    url = _serve(monkeypatch, server, "shapenetpart_txt", shapenetpart_zip(), extra_urls=(base + "/gone.zip",))
    result = _fetch("shapenetpart_txt", tmp_path)
    assert result.url == url
    assert [base + path for path, _ in state.requests] == [base + "/gone.zip", url]
    _check_shapenetpart(result.folder)


def test_no_reachable_url_names_each_url(server, monkeypatch, tmp_path: Path) -> None:
    base, _ = server
    monkeypatch.setitem(SOURCES, "modelnet40_off", dataclasses.replace(
        SOURCES["modelnet40_off"], urls=(base + "/a.zip", "http://127.0.0.1:9/b.zip")))
    with pytest.raises(DownloadError) as caught:
        _fetch("modelnet40_off", tmp_path)
    message = str(caught.value)
    assert f"{base}/a.zip: HTTP 404" in message and "127.0.0.1:9/b.zip: cannot be reached" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("entries", "error"), [
    ({"airplane/train/airplane_0001.off": _TETRA, "airplane/test/airplane_0627.off": _TETRA},
     r"holds no files under ModelNet40/"),
    ({"ModelNet40/airplane/train/airplane_0001.off": _TETRA, "ModelNet40/../x.off": _TETRA}, "unsafe entry"),
    ({"ModelNet40/airplane/train/airplane_0001.off": _TETRA, "/abs/x.off": _TETRA}, "unsafe entry"),
    ({"ModelNet40/airplane/train/airplane_0001.off": _TETRA}, r"lacks \*/test/\*\.off"),
])
def test_archive_not_in_the_expected_layout_is_refused(entries, error, server, monkeypatch, tmp_path: Path) -> None:
    _serve(monkeypatch, server, "modelnet40_off", _zip(entries))
    with pytest.raises(LayoutError, match=error):
        _fetch("modelnet40_off", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ModelNet40.zip"]  # no dataset, no temporary folder


def test_entries_outside_the_top_folder_are_skipped_and_reported(server, monkeypatch, tmp_path: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(modelnet40_off_zip())) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    _serve(monkeypatch, server, "modelnet40_off", _zip({**entries, "README.txt": "about ModelNet"}))
    notes: list[str] = []
    result = fetch_dataset(SOURCES["modelnet40_off"], tmp_path, progress=False, log=notes.append)
    _check_modelnet40_off(result.folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ModelNet40"]
    assert any("skipped the entries outside ModelNet40/ (1 in all, first: 'README.txt')" in note for note in notes)


def test_leftover_of_a_killed_extraction_is_removed(server, monkeypatch, tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    leftover = tmp_path / f".ModelNet40.tmp-{gone.pid}"
    (leftover / "airplane").mkdir(parents=True)
    _serve(monkeypatch, server, "modelnet40_off", modelnet40_off_zip())
    _check_modelnet40_off(_fetch("modelnet40_off", tmp_path).folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ModelNet40"]


def test_corrupt_archive_leaves_no_dataset(server, monkeypatch, tmp_path: Path) -> None:
    data = bytearray(modelnet40_off_zip())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("ModelNet40/bathtub/test/bathtub_0107.off")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)  # the entry's compressed bytes
    data[start:start + 8] = bytes(255 - b for b in data[start:start + 8])  # a bad CRC or a broken stream
    _serve(monkeypatch, server, "modelnet40_off", bytes(data))
    with pytest.raises(ExtractError, match=r"ModelNet40\.zip: entry 'ModelNet40/bathtub/test/bathtub_0107\.off' "
                                           r"cannot be extracted"):
        _fetch("modelnet40_off", tmp_path)
    assert not (tmp_path / "ModelNet40").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(("name", "where"), [
    ("scanobjectnn", "https://hkust-vgd.github.io/scanobjectnn/"),
    ("s3dis", "http://buildingparser.stanford.edu/dataset.html"),
    ("shapenetcore", "https://shapenet.org"),
])
def test_behind_terms_prints_where_to_agree_and_the_layout(name, where, capsys, tmp_path: Path) -> None:
    _cli([name, "--root", str(tmp_path / "data")])  # returns normally: exit status 0
    out = capsys.readouterr().out
    assert where in out and SOURCES[name].layout in out and str(tmp_path / "data" / SOURCES[name].folder) in out
    assert not (tmp_path / "data").exists()


def test_list_prints_the_table(capsys) -> None:
    _cli(["--list"])
    out = capsys.readouterr().out
    for source in SOURCES.values():
        assert f"{source.name}: {source.title}" in out
        if source.sha256:
            assert source.sha256 in out
    assert "none known: extraction needs --sha256 HEX or --accept-unverified" in out


def test_name_or_list_is_required() -> None:
    with pytest.raises(FetchError, match="give a dataset NAME"):
        _cli([])


def test_sources_table_is_consistent() -> None:
    for source in SOURCES.values():
        if source.behind_terms:
            assert source.sha256 is None and source.archive is None and "behind terms" in source.terms
            continue
        assert source.name in FORMATS + PART_FORMATS, source.name
        assert source.archive and source.archive_folder == source.folder and source.required
        assert all(url.startswith("https://") for url in source.urls)
        assert source.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", source.sha256)
        assert source.checksum_origin, f"{source.name}: say where the checksum comes from, or why there is none"
