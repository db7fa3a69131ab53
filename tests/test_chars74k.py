"""Chars74K end to end on small generated archives with the real internal layout.

The archives hold a few classes, fonts, writers and photos each, plus the members a real
archive has and we must skip (hand trajectories, photo masks). A local HTTP server stands in
for the dataset's site.
"""

import hashlib
import io
import itertools
import random
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from test_download import FileServer  # tests/ is on sys.path; one fake server for both files

from charjax.cli.main import main
from charjax.data import chars74k_archive
from charjax.data.cache import SPLITS, is_cache, load_cache
from charjax.data.chars74k import Chars74kOptions, prepare_chars74k
from charjax.data.sources import resolve_data
from charjax.errors import CharjaxError
from charjax.labels import sample_dir_name
from charjax.preprocess import PreprocessSpec, preprocess

CLASSES = (0, 10, 36)  # "0", "A", "a": Sample001, Sample011, Sample037
FONTS, WRITERS, PHOTOS, BAD_PHOTOS = 10, 10, 10, 2
SIZE = 16


def _png(seed: int, size=(24, 24), mode="L", fg="black", bg="white") -> bytes:
    """A stroke whose position depends on `seed`, so no two images are the same."""
    rng = random.Random(seed)
    image = Image.new(mode, size, bg)
    w, h = size
    x0, x1 = rng.randrange(2, w // 2), rng.randrange(w // 2, w - 2)
    ImageDraw.Draw(image).line((x0, 2, x1, h - 3), fill=fg, width=max(2, w // 10))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _layout() -> dict[str, dict[str, bytes]]:
    """Archive name -> {member name: bytes}, in the real Chars74K layout."""
    fnt, hnd, img = {}, {}, {}
    for c in CLASSES:
        sample, n = sample_dir_name(c), c + 1
        for f in range(1, FONTS + 1):
            fnt[f"English/Fnt/{sample}/img{n:03d}-{f:05d}.png"] = _png(c * 1000 + f)
        for w in range(1, WRITERS + 1):
            name = f"English/Hnd/Img/{sample}/img{n:03d}-{w:03d}.png"
            hnd[name] = _png(c * 2000 + w, (60, 45), "RGB")
            hnd[f"English/Hnd/Trj/{sample}/img{n:03d}-{w:03d}.mat"] = b"trajectory"
        for p in range(1, PHOTOS + 1):
            photo = _png(c * 3000 + p, (20 + p, 30), "RGB", fg=(230, 220, 90), bg=(40, 60, 90))
            img[f"English/Img/GoodImg/Bmp/{sample}/img{n:03d}-{p:05d}.png"] = photo
            img[f"English/Img/GoodImg/Msk/{sample}/mimg{n:03d}-{p:05d}.png"] = _png(p)
        for p in range(1, BAD_PHOTOS + 1):
            img[f"English/Img/BadImag/Bmp/{sample}/img{n:03d}-{p:05d}.png"] = _png(c * 4000 + p)
    return {"EnglishFnt.tgz": fnt, "EnglishHnd.tgz": hnd, "EnglishImg.tgz": img}


def _tgz(members: dict[str, bytes], shuffle: int | None = None, extra=()) -> bytes:
    """A .tgz of `members` (in a shuffled order if asked), plus raw TarInfo `extra` ones."""
    names = sorted(members)
    if shuffle is not None:
        random.Random(shuffle).shuffle(names)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            tar.addfile(info, io.BytesIO(members[name]))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


@pytest.fixture(scope="module")
def archives() -> dict[str, bytes]:
    return {name: _tgz(members) for name, members in _layout().items()}


@pytest.fixture
def site(archives, monkeypatch):
    """The fake dataset site, also set as $CHARJAX_CHARS74K_URL."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    server = FileServer()
    server.files.update(archives)
    monkeypatch.setenv("CHARJAX_CHARS74K_URL", server.base)
    yield server
    server.close()


@pytest.fixture
def offline(monkeypatch):
    """Any attempt at the network fails at once (port 9 on localhost refuses)."""
    monkeypatch.setenv("CHARJAX_CHARS74K_URL", "http://127.0.0.1:9/")


def _run(capsys, *args) -> tuple[int, str, str]:
    try:
        main(list(map(str, args)))
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code, err, *words):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("charjax: error:"), err
    for word in words:
        assert word in lines[0], lines[0]


def _cli(tmp_path, *args):
    return ["data", "chars74k", "--download-dir", tmp_path / "dl", "--size", SIZE,
            "--no-progress", *args]  # fmt: skip


def test_download_prepare_and_second_run_does_nothing(site, archives, tmp_path, capsys):
    out = tmp_path / "c74k"
    args = _cli(tmp_path, "--out", out, "--subsets", "font,hand,img_good,img_bad")
    code, stdout, err = _run(capsys, *args)
    assert code == 0, err
    # EnglishImg.tgz holds two subsets but is fetched once.
    assert sorted(p for p, _ in site.requests) == sorted(archives)
    cache = load_cache(out)
    n = len(CLASSES) * (FONTS + WRITERS + PHOTOS + BAD_PHOTOS)
    assert len(cache) == n and cache.image_size == SIZE
    assert sorted(np.unique(cache.labels)) == list(CLASSES)  # masks and .mat files skipped
    meta = cache.meta
    assert meta["source"] == "chars74k" and meta["preprocess"] == PreprocessSpec(SIZE).to_dict()
    assert {s: v["count"] for s, v in meta["subsets"].items()} == {
        "font": 30, "hand": 30, "img_good": 30, "img_bad": 6,
    }  # fmt: skip
    for name, data in archives.items():
        assert meta["archives"][name]["sha256"] == hashlib.sha256(data).hexdigest()
    # 10 images per class and subset: 7 train, 1 val, 2 test; img_bad's 2 stay in train.
    assert meta["counts"] == {"train": 3 * (7 * 3 + 2), "val": 3 * 3, "test": 3 * 2 * 3}
    assert "wrote 96 images" in stdout and "train with: charjax train --data" in stdout

    code, stdout, _ = _run(capsys, *args)
    assert code == 0 and "already prepared (96 images); nothing to do" in stdout
    assert len(site.requests) == 3  # no new request


def test_writer_split_keeps_writers_apart_and_archives_are_reused(site, tmp_path, capsys):
    out = tmp_path / "hand"
    code, _, err = _run(capsys, *_cli(tmp_path, "--out", out, "--subsets", "hand"))
    assert code == 0, err
    code, stdout, err = _run(
        capsys, *_cli(tmp_path, "--out", out, "--subsets", "hand", "--split", "writer")
    )
    assert code == 0, err
    assert site.count("EnglishHnd.tgz") == 1 and "already there" in stdout
    cache = load_cache(out)
    writers = {s: set(np.asarray(cache.groups)[cache.indices(s)].tolist()) for s in SPLITS}
    for a, b in itertools.combinations(SPLITS, 2):
        assert writers[a].isdisjoint(writers[b])
    assert [len(writers[s]) for s in SPLITS] == [7, 1, 2]
    assert cache.meta["split_by"] == "hand by writer (7/1/2 writers)"


def test_split_is_the_same_on_every_run_and_any_member_order(archives, tmp_path, offline):
    layout = _layout()
    for name, shuffle in (("a", None), ("b", 7)):
        folder = tmp_path / f"from-{name}"
        folder.mkdir()
        for archive, members in layout.items():
            (folder / archive).write_bytes(_tgz(members, shuffle))
        prepare_chars74k(
            tmp_path / name, from_dir=str(folder), subsets=("font", "img_good"), size=SIZE,
            progress=False,
        )  # fmt: skip
    a, b = load_cache(tmp_path / "a"), load_cache(tmp_path / "b")
    assert np.array_equal(a.splits, b.splits) and np.array_equal(a.images, b.images)
    assert np.array_equal(a.labels, b.labels)
    per_class = [np.bincount(a.splits[a.labels == c], minlength=3).tolist() for c in CLASSES]
    assert per_class == [[14, 2, 4]] * 3  # font and photos: 7/1/2 of each 10 per class


def test_from_dir_needs_no_network_and_reads_unpacked_folders(archives, tmp_path, offline):
    (tmp_path / "arch").mkdir()
    (tmp_path / "arch" / "EnglishHnd.tgz").write_bytes(archives["EnglishHnd.tgz"])
    report = prepare_chars74k(
        tmp_path / "a", from_dir=str(tmp_path / "arch"), subsets=("hand",), size=SIZE,
        progress=False,
    )  # fmt: skip
    assert report.counts == {"hand": 30}
    with tarfile.open(fileobj=io.BytesIO(archives["EnglishHnd.tgz"])) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    prepare_chars74k(
        tmp_path / "b", from_dir=str(tmp_path / "unpacked"), subsets=("hand",), size=SIZE,
        progress=False,
    )  # fmt: skip
    a, b = load_cache(tmp_path / "a"), load_cache(tmp_path / "b")
    assert np.array_equal(a.images, b.images) and np.array_equal(a.splits, b.splits)
    with pytest.raises(CharjaxError, match="has neither EnglishFnt.tgz nor the unpacked"):
        prepare_chars74k(tmp_path / "c", from_dir=str(tmp_path / "arch"), subsets=("font",))


def test_404_says_what_to_do(site, tmp_path, capsys):
    del site.files["EnglishHnd.tgz"]
    out = tmp_path / "c"
    code, _, err = _run(capsys, *_cli(tmp_path, "--out", out, "--subsets", "hand"))
    _one_line_error(code, err, "HTTP 404", "--from-dir", "--url-base")
    assert not out.exists()


def test_truncated_archive_leaves_no_cache_and_is_fetched_afresh(site, archives, tmp_path, capsys):
    good = archives["EnglishHnd.tgz"]
    site.files["EnglishHnd.tgz"] = good[: len(good) // 2]
    out = tmp_path / "c"
    code, _, err = _run(capsys, *_cli(tmp_path, "--out", out, "--subsets", "hand"))
    _one_line_error(code, err, "EnglishHnd.tgz is truncated or corrupt", "download it afresh")
    assert not out.exists() and not (tmp_path / "dl" / "EnglishHnd.tgz").exists()
    site.files["EnglishHnd.tgz"] = good
    code, _, err = _run(capsys, *_cli(tmp_path, "--out", out, "--subsets", "hand"))
    assert code == 0 and is_cache(out), err


def test_an_interrupted_run_keeps_finished_subsets(site, archives, tmp_path, monkeypatch):
    read = []
    real_read = chars74k_archive.read_subsets
    monkeypatch.setattr(
        chars74k_archive,
        "read_subsets",
        lambda src, subsets, *a: read.append(src.name) or real_read(src, subsets, *a),
    )
    good = archives["EnglishHnd.tgz"]
    site.files["EnglishHnd.tgz"] = good[:-100]
    out = tmp_path / "c"
    options = Chars74kOptions(subsets=("font", "hand"), size=SIZE)
    with pytest.raises(CharjaxError):
        prepare_chars74k(out, options, download_dir=tmp_path / "dl", progress=False)
    staged = list((tmp_path / ".c.parts").glob("font-*.npz"))
    assert len(staged) == 1 and not out.exists()
    site.files["EnglishHnd.tgz"] = good
    prepare_chars74k(out, options, download_dir=tmp_path / "dl", progress=False)
    assert is_cache(out) and not (tmp_path / ".c.parts").exists()
    # The font subset was read once; the second run took it from its stage file.
    assert read == ["EnglishFnt.tgz", "EnglishHnd.tgz", "EnglishHnd.tgz"]
    assert site.count("EnglishFnt.tgz") == 1


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    "extra, problem",
    [
        ((tarfile.TarInfo("../evil.png"), b""), "outside the destination"),
        ((tarfile.TarInfo("/tmp/charjax-evil.png"), b""), "absolute path"),
        ((_link("English/Hnd/Img/Sample001/link.png", "/etc/passwd"), None), "link"),
        ((_link("English/Hnd/Img/Sample001/l.png", "img001-001.png"), None), "is a link"),
        ((_link("English/dev", "", tarfile.CHRTYPE), None), "special file"),
    ],
)
def test_unsafe_archives_are_refused_and_nothing_is_written(tmp_path, offline, extra, problem):
    members = _layout()["EnglishHnd.tgz"]
    (tmp_path / "arch").mkdir()
    (tmp_path / "arch" / "EnglishHnd.tgz").write_bytes(_tgz(members, extra=[extra]))
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(CharjaxError, match=f"refusing an unsafe archive: .*{problem}"):
        prepare_chars74k(
            tmp_path / "out" / "c", from_dir=str(tmp_path / "arch"), subsets=("hand",),
            progress=False,
        )  # fmt: skip
    assert sorted(tmp_path.rglob("*")) == before
    assert not Path("/tmp/charjax-evil.png").exists()


def test_resolve_data_downloads_prepares_and_mixes(site, glyph_cache, tmp_path):
    cache = resolve_data("chars74k:hand:writer", SIZE, data_dir=str(tmp_path), progress=False)
    assert cache.path == tmp_path / "chars74k-hand-writer-16" and len(cache) == 30
    assert (tmp_path / "downloads" / "EnglishHnd.tgz").is_file()
    mixed = resolve_data(f"chars74k:hand:writer:1+{glyph_cache}:1", SIZE, str(tmp_path), False)
    assert mixed.meta["source"] == "mixture" and site.count("EnglishHnd.tgz") == 1
    n_train = len(cache.indices("train")) + len(load_cache(glyph_cache).indices("train"))
    # Equal weights: the same number of train images from each part (hand's repeated).
    assert abs(len(mixed.indices("train")) - n_train) <= 1
    assert abs(mixed.meta["parts"][0]["train_images"] - n_train / 2) <= 0.5


def test_parallel_decoding_gives_the_same_images(archives, tmp_path, offline):
    (tmp_path / "arch").mkdir()
    (tmp_path / "arch" / "EnglishFnt.tgz").write_bytes(archives["EnglishFnt.tgz"])
    caches = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        prepare_chars74k(
            out, from_dir=str(tmp_path / "arch"), subsets=("font",), size=SIZE,
            workers=workers, progress=False,
        )  # fmt: skip
        caches.append(load_cache(out))
    assert np.array_equal(caches[0].images, caches[1].images)


def test_options_are_checked():
    with pytest.raises(CharjaxError, match="--split writer needs the hand subset"):
        Chars74kOptions(subsets=("font",), split="writer")
    with pytest.raises(CharjaxError, match="subsets must be distinct names of font, hand"):
        Chars74kOptions(subsets=("fonts",))
    with pytest.raises(CharjaxError, match="--sha256 EnglishFnt.tgz=zz"):
        Chars74kOptions(sha256=(("EnglishFnt.tgz", "zz"),))


def test_pinned_sha256_is_verified(archives, tmp_path, offline):
    (tmp_path / "arch").mkdir()
    (tmp_path / "arch" / "EnglishHnd.tgz").write_bytes(archives["EnglishHnd.tgz"])
    with pytest.raises(CharjaxError, match="EnglishHnd.tgz: sha256 .* does not match"):
        prepare_chars74k(
            tmp_path / "c", from_dir=str(tmp_path / "arch"), subsets=("hand",),
            sha256=(("EnglishHnd.tgz", "ab" * 32),),
        )  # fmt: skip


def test_photos_come_out_like_ink_on_paper():
    """Why one spec serves photos too: light-on-dark and dark-on-light give the same input."""
    spec = PreprocessSpec(SIZE)
    light_on_dark = Image.open(io.BytesIO(_png(5, (30, 40), "RGB", (230, 220, 90), (40, 60, 90))))
    dark_on_light = Image.open(io.BytesIO(_png(5, (30, 40), "L", "black", "white")))
    a, b = preprocess(light_on_dark, spec), preprocess(dark_on_light, spec)
    assert a.max() > 200 and a[[0, -1]].mean() < 5  # ink bright, the background black
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95


def test_cli_writes_the_default_cache_that_train_uses(site, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CHARJAX_CACHE", str(tmp_path / "cache"))
    code, stdout, err = _run(capsys, *_cli(tmp_path, "--subsets", "hand,font"))
    assert code == 0, err
    assert "charjax train --data chars74k:font,hand:random --image-size 16" in stdout
    assert is_cache(tmp_path / "cache" / "chars74k-font-hand-random-16")
    cache = resolve_data("chars74k:font,hand", SIZE, progress=False)
    assert len(cache) == 60 and len(site.requests) == 2
