"""Folders of videos (FFS): codecs and containers, frame folders, zips, bad files named, prepared
records, the FaceForensics preprocessing script and a few FFS-smoke training steps from raw videos."""

import importlib.util
import json
import math
import re
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from configs import ffs
from maskflow_jax import config_validation
from maskflow_jax.data import loader, records, tokens, video_folder
from maskflow_jax.errors import DataError

av = pytest.importorskip("av", reason="PyAV is the [video] extra: pip install -e '.[video]'")
ROOT = Path(__file__).resolve().parents[1]
H, W = 40, 48  # stored frames are not square: the reader centre-crops to 40x40 and resizes


def _frames(n, tag=0, h=H, w=W):
    """uint8 (n, h, w, 3): red = 20 + 12 t (frame t), blue = 40 tag (clip), green 16x16 blocks.

    Flat regions and 16-pixel blocks survive 4:2:0 lossy codecs with small errors."""
    v = np.zeros((n, h, w, 3), np.uint8)
    v[..., 0] = (20 + 12 * np.arange(n))[:, None, None]
    v[..., 1] = np.where((np.arange(h)[:, None] // 16 + np.arange(w)[None] // 16) % 2, 200, 60)
    v[..., 2] = 40 * tag
    return v


def _has_encoder(codec):
    try:
        av.codec.Codec(codec, "w")
        return True
    except Exception:  # noqa: BLE001 - any failure means "not in this build"
        return False


def _write_video(path, frames, codec="libx264", fps=10):
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.height, s.width = frames.shape[1:3]
        s.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _expected(frames, size):
    return np.stack([video_folder.crop_resize(Image.fromarray(f), size) for f in frames])


def _red(video):
    return video[..., 0].reshape(len(video), -1).mean(axis=1)


CODECS = [
    ("mp4", "libx264"),
    ("mp4", "mpeg4"),
    ("avi", "mjpeg"),
    ("mkv", "libx264"),
    ("mkv", "ffv1"),
    ("webm", "libvpx"),
    ("webm", "libvpx-vp9"),
]


@pytest.mark.parametrize("ext, codec", CODECS, ids=[f"{e}-{c}" for e, c in CODECS])
def test_codecs_and_containers_read_back(tmp_path, ext, codec):
    if not _has_encoder(codec):
        pytest.skip(f"this PyAV/FFmpeg build has no {codec} encoder, so no {ext} test file can be written")
    src = _frames(12, tag=3)
    path = _write_video(tmp_path / "train" / f"clip.{ext}", src, codec)
    split = video_folder.VideoFolderSplit(tmp_path, "train", size=32, min_length=12)
    video = split[0]["video"]
    assert video.shape == (12, 32, 32, 3) and video.dtype == np.uint8
    assert [c.name for c in split.clips] == [f"train/clip.{ext}"] and split[0]["actions"] is None
    red, target = _red(video), 20 + 12 * np.arange(12)
    np.testing.assert_array_equal(np.abs(red[:, None] - target).argmin(axis=1), np.arange(12))  # order
    np.testing.assert_allclose(red, target, atol=6)
    err = np.abs(video.astype(int) - _expected(src, 32)).mean()
    assert err < 4, f"{path.name}: mean abs error {err:.2f} after {codec}"
    native = video_folder.decode_video(str(path))  # size None: centre square at native size
    assert native.shape == (12, 40, 40, 3)


def _png_folder(folder, frames, ext="png"):
    folder.mkdir(parents=True, exist_ok=True)
    for t, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{t + 1}.{ext}", quality=95)  # unpadded names 1..n


def test_frame_folders_order_and_nesting(tmp_path):
    _png_folder(tmp_path / "train" / "b" / "clip0", _frames(11, tag=1))  # 1.png, ..., 10.png, 11.png
    _png_folder(tmp_path / "train" / "a", _frames(5, tag=2), ext="jpg")
    _write_video(tmp_path / "train" / "a0.mp4", _frames(6, tag=4))
    split = video_folder.VideoFolderSplit(tmp_path, "train", size=24)
    assert [c.name for c in split.clips] == ["train/a/", "train/a0.mp4", "train/b/clip0/"]
    clips = list(split)
    assert [c["video"].shape for c in clips] == [(5, 24, 24, 3), (6, 24, 24, 3), (11, 24, 24, 3)]
    np.testing.assert_allclose(_red(clips[2]["video"]), 20 + 12 * np.arange(11), atol=1)  # 2 before 10
    np.testing.assert_array_equal(clips[2]["video"], _expected(_frames(11, tag=1), 24))  # png: exact
    assert abs(clips[0]["video"][..., 2].mean() - 80) < 3  # jpg clip, tag 2


def test_zip_layout_and_splits(tmp_path):
    z = tmp_path / "ffs.zip"
    with zipfile.ZipFile(z, "w") as f:
        for split, tag in (("train", 1), ("test", 2)):
            for t, frame in enumerate(_frames(4, tag=tag)):
                im = tmp_path / "x.png"
                Image.fromarray(frame).save(im)
                f.write(im, f"{split}/clip{tag}/{t:03d}.png")
        f.write(_write_video(tmp_path / "v.mkv", _frames(5, tag=3)), "train/v.mkv")
        f.writestr("__MACOSX/train/._v.mkv", b"resource fork")
    train = video_folder.VideoFolderSplit(z, "train", size=16)
    assert [c.name for c in train.clips] == ["train/clip1/", "train/v.mkv"]
    videos = [x["video"] for x in train]
    assert videos[0].shape == (4, 16, 16, 3) and videos[1].shape == (5, 16, 16, 3)
    np.testing.assert_array_equal(videos[0], _expected(_frames(4, tag=1), 16))
    np.testing.assert_allclose(_red(videos[1]), 20 + 12 * np.arange(5), atol=4)
    test = video_folder.VideoFolderSplit(z, "validation", size=16)  # alias of test/
    assert [c.name for c in test.clips] == ["test/clip2/"]


def test_flat_root_is_one_split_and_missing_split_errors(tmp_path):
    _write_video(tmp_path / "flat" / "x" / "a.mp4", _frames(4))
    _write_video(tmp_path / "flat" / "b.webm", _frames(4), "libvpx")
    names = [c.name for c in video_folder.list_split(tmp_path / "flat", "train")[1]]
    assert names == ["b.webm", "x/a.mp4"]
    assert [c.name for c in video_folder.list_split(tmp_path / "flat", "test")[1]] == names
    _write_video(tmp_path / "only_train" / "train" / "a.mp4", _frames(4))
    with pytest.raises(DataError, match="config.data.eval_split") as err:
        video_folder.list_split(tmp_path / "only_train", "test")
    assert "['train']" in str(err.value)
    with pytest.raises(DataError, match="not a folder or a .zip"):
        video_folder.list_split(tmp_path / "nothing", "train")
    (tmp_path / "npz").mkdir()
    np.savez(tmp_path / "npz" / "0.npz", video=_frames(2))
    with pytest.raises(DataError, match="data.name='dmlab'"):
        video_folder.list_split(tmp_path / "npz", "train")


def _bad_root(root):
    """A train split with 2 good clips and 5 bad ones; returns {bad relative name: error text}."""
    _write_video(root / "train" / "good0.mp4", _frames(8, tag=1))
    _write_video(root / "train" / "good1.avi", _frames(8, tag=2), "mjpeg")
    (root / "train" / "garbage.mp4").write_bytes(bytes(range(256)) * 8)
    data = _write_video(root / "train" / "cut.mp4", _frames(8)).read_bytes()
    (root / "train" / "cut.mp4").write_bytes(data[: len(data) // 2])  # index (moov) lost
    data = _write_video(root / "train" / "cut.avi", _frames(8), "mjpeg").read_bytes()
    (root / "train" / "cut.avi").write_bytes(data[: len(data) // 2])  # decodes, but fewer frames
    _write_video(root / "train" / "short.mkv", _frames(3))
    _png_folder(root / "train" / "frames", _frames(6))
    data = (root / "train" / "frames" / "3.png").read_bytes()
    (root / "train" / "frames" / "3.png").write_bytes(data[: len(data) // 2])
    # clip name -> (file the error must name, text it must contain)
    return {
        "garbage.mp4": ("garbage.mp4", "unreadable or corrupt video"),
        "cut.mp4": ("cut.mp4", "no video stream|unreadable or corrupt video"),  # moov lost
        "cut.avi": ("cut.avi", "truncated: decoded|unreadable or corrupt video"),
        "short.mkv": ("short.mkv", "shorter than the 6"),
        "frames/": ("frames/3.png", "unreadable or truncated image"),
    }


def test_bad_clips_named_and_skip_and_count(tmp_path):
    bad = _bad_root(tmp_path)
    split = video_folder.VideoFolderSplit(tmp_path, "train", size=16, min_length=6)
    by_name = {c.name: i for i, c in enumerate(split.clips)}
    for clip, (name, text) in bad.items():
        with pytest.raises(DataError) as err:
            split[by_name["train/" + clip]]
        assert str(tmp_path / "train" / name) in str(err.value) and re.search(text, str(err.value))
        assert "skip_corrupt" in str(err.value) or "data.frames" in str(err.value)
    with pytest.raises(DataError, match="cut.avi"):  # strict: the first bad clip in order
        list(split)
    lenient = video_folder.VideoFolderSplit(tmp_path, "train", size=16, min_length=6, skip_corrupt=True)
    kept = list(lenient)
    assert len(kept) == 2 and [round(k["video"][..., 2].mean() / 40) for k in kept] == [1, 2]
    assert sorted(Path(p).name for p, _ in lenient.skipped) == [
        "cut.avi",
        "cut.mp4",
        "frames",
        "garbage.mp4",
        "short.mkv",
    ]


def _data_cfg(root, tmp_path, **kw):
    d = ffs.get_config("smoke").data
    d.root, d.prepared_dir = str(root), str(tmp_path / "prepared")
    d.frames, d.frame_skip, d.batch_size, d.num_threads, d.prefetch = 4, 2, 2, 1, 2
    d.update(kw)
    return d


def test_prepare_records_and_train_clips(tmp_path):
    root = tmp_path / "videos"
    for i in range(3):
        _write_video(root / "train" / f"{i}.mp4", _frames(10, tag=i))
    _write_video(root / "test" / "0.webm", _frames(9, tag=5), "libvpx")
    d = _data_cfg(root, tmp_path)
    out = loader.ensure_prepared(d)
    assert out["train"] == {"count": 3, "skipped": 0} and out["test"]["count"] == 1
    src = records.RecordSource(tmp_path / "prepared", "train")
    assert src.lengths.tolist() == [10, 10, 10] and src[1]["video"].shape == (10, 32, 32, 3)
    b = next(loader.make_train_iterator(d, seed=0))
    assert b["video"].shape == (2, 4, 32, 32, 3) and b["video"].dtype == np.uint8
    for k in range(2):
        red = _red(b["video"][k])
        assert np.allclose(np.diff(red), 24, atol=4)  # frame_skip 2: every other frame, in order
        assert abs(b["video"][k, ..., 2].mean() - 40 * b["index"][k]) < 4  # record i = i-th sorted file
    stamp = (tmp_path / "prepared" / "train.json").stat().st_mtime_ns
    loader.prepare_data(_cfg_with(d), None)
    assert (tmp_path / "prepared" / "train.json").stat().st_mtime_ns == stamp  # unchanged source: no rebuild
    _write_video(root / "train" / "3.mp4", _frames(10, tag=3))
    assert loader.ensure_prepared(d)["train"]["count"] == 4  # a new file: rebuilt

    _write_video(root / "train" / "4.mp4", _frames(3, tag=4))  # too short for 4 frames x skip 2 = 7
    with pytest.raises(DataError, match="4.mp4"):
        loader.ensure_prepared(d)
    out = loader.ensure_prepared(_data_cfg(root, tmp_path, skip_corrupt=True))
    assert out["train"] == {"count": 4, "skipped": 1}
    meta = records.read_metadata(tmp_path / "prepared", "train")
    assert [Path(p).name for p in meta["skipped"]] == ["4.mp4"]


def _cfg_with(data_cfg):
    cfg = ffs.get_config("smoke")
    cfg.data = data_cfg
    return cfg


def _load_script():
    spec = importlib.util.spec_from_file_location("preprocess_ffs", ROOT / "scripts" / "preprocess_ffs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _faceforensics(src, n=8):
    """A FaceForensics-v1-like split: 64x48 originals, a red 'face' of 16x12 moving right 2 px per
    frame on a blue background, and mask videos white exactly over the face."""
    for i in range(2):
        orig, mask = np.zeros((n, 48, 64, 3), np.uint8), np.zeros((n, 48, 64, 3), np.uint8)
        orig[..., 2] = 200
        for t in range(n):
            x = 8 + 16 * i + 2 * t
            orig[t, 16:32, x : x + 16] = (220, 30, 30)  # 16x16 so 4:2:0 chroma stays clean
            mask[t, 16:32, x : x + 16] = 255
        _write_video(src / "train" / "original" / f"vid{i}.avi", orig, "mjpeg", fps=30)
        _write_video(src / "train" / "mask" / f"vid{i}.avi", mask, "mjpeg", fps=30)
    (src / "train" / "original" / "broken.avi").write_bytes(b"not a video")
    _write_video(src / "train" / "mask" / "broken.avi", np.zeros((n, 48, 64, 3), np.uint8), "mjpeg")


def test_preprocess_ffs_script(tmp_path, capsys):
    script = _load_script()
    assert script.square_box((10, 5, 30, 15), 64, 48, 1.0) == (10, 0, 20)  # centred, shifted inside
    assert script.square_box((0, 0, 64, 48), 64, 48, 1.5) == (8, 0, 48)  # at most the shorter side
    assert script.fill_empty([None, (1, 1, 2, 2), None, None, (3, 3, 4, 4)])[::2] == [
        (1, 1, 2, 2),
        (1, 1, 2, 2),
        (3, 3, 4, 4),
    ]
    src, out = tmp_path / "FaceForensics", tmp_path / "ffs"
    _faceforensics(src)
    code = script.main(["--src", str(src), "--out", str(out), "--size", "32"])
    assert code == 1  # broken.avi is reported and counted
    text = capsys.readouterr()
    assert "train/broken" in text.err and "train: 2 videos" in text.out and "1 failed" in text.out
    split = video_folder.VideoFolderSplit(out, "train")
    assert [c.name for c in split.clips] == ["train/vid0.mp4", "train/vid1.mp4"]
    for clip in split:
        v = clip["video"]
        assert v.shape == (8, 32, 32, 3)
        assert v[..., 0].mean() > 180 and v[..., 2].mean() < 60  # per-frame box: all face, no background
    script.main(["--src", str(src), "--out", str(tmp_path / "stable"), "--size", "32", "--stable"])
    v = video_folder.VideoFolderSplit(tmp_path / "stable", "train")[0]["video"]
    assert v.shape == (8, 32, 32, 3)
    left, right = v[:, 12:20, 2, 0].mean(axis=1), v[:, 12:20, -3, 0].mean(axis=1)
    assert left[0] > 150 and left[-1] < 100 and right[0] < 100 and right[-1] > 150  # one box: the face moves


def test_ffs_smoke_trains_from_raw_videos(tmp_path):
    from maskflow_jax.parallel.mesh import make_mesh  # noqa: PLC0415
    from maskflow_jax.tokenizer import train as tok_train  # noqa: PLC0415
    from maskflow_jax.train import loop  # noqa: PLC0415

    root = tmp_path / "videos"
    for i in range(4):
        _write_video(root / "train" / f"{i}.mp4", _frames(12, tag=i, h=36, w=64))
    _write_video(root / "test" / "0.mp4", _frames(16, tag=2, h=36, w=64))
    cfg = ffs.get_config("smoke")
    assert cfg.mode == "pipeline" and (cfg.data.frames, cfg.data.resize_to) == (8, 32)
    cfg.data.root, cfg.data.num_threads, cfg.data.prefetch = str(root), 1, 2
    cfg.tokenizer.train.steps = cfg.tokenizer.train.ckpt_every = 2
    cfg.train.steps, cfg.train.log_every, cfg.train.ckpt_every = 2, 1, 2
    cfg.mesh.shape = (1, 1, 1)
    config_validation.validate(cfg, num_devices=1)
    workdir = str(tmp_path / "run")
    mesh = make_mesh(cfg.mesh, devices=jax.devices()[:1])
    out = loader.prepare_data(cfg, workdir)
    assert out["train"]["count"] == 4 and out["test"]["count"] == 1
    assert tok_train.train_tokenizer(cfg, workdir, mesh=mesh)["heldout_psnr"] > 0
    tok = tok_train.load_tokenizer(cfg, workdir)
    meta = tokens.tokenize_split(cfg, workdir, cfg.data.train_split, tok.encode, progress=False)
    assert meta["count"] == 4 and meta["keys"]["video"] == ["<i4", [None, 16, 16]]
    state = loop.train_denoiser(cfg, workdir, batches=tokens.make_token_iterator(cfg, workdir), mesh=mesh)
    assert int(state.step) == 2
    lines = (Path(workdir) / "train_metrics.jsonl").read_text().splitlines()
    assert lines and all(math.isfinite(json.loads(x)["loss"]) for x in lines if "loss" in json.loads(x))
