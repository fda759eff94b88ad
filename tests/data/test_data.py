"""Dataset readers on tiny fixture files the tests build, and on the real FER2013 copy."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

import ferlab
from ferlab import labels as L
from ferlab.data import balance, splits
from ferlab.data.cache import load_cached, save_dataset
from ferlab.data.ferplus import votes_to_targets
from ferlab.errors import ConfigError, DataError, ImageReadError
from ferlab.io import SkipReport, read_image
from ferlab.transforms.expand import expand, expand_paper002, expand_per_class

# ---------------------------------------------------------------- real FER2013 (../shared/data)

PUBLISHED = {  # fer2013 README: angry, disgust, fear, happy, sad, surprise, neutral
    "train": [3995, 436, 4097, 7215, 4830, 3171, 4965],
    "val": [467, 56, 496, 895, 653, 415, 607],
    "test": [491, 55, 528, 879, 594, 416, 626],
}


def _native_order(counts):  # canonical counts -> FER2013 native order
    return [int(counts[L.SEVEN.index(L.FER2013[i])]) for i in range(7)]


def test_real_fer2013_sizes_and_counts(fer2013):
    assert fer2013.classes == L.SEVEN
    assert [len(fer2013[s]) for s in ("train", "val", "test")] == [28709, 3589, 3589]
    for s, want in PUBLISHED.items():
        assert _native_order(fer2013[s].class_counts()) == want
    tr = fer2013["train"]
    assert tr.images.shape == (28709, 48, 48) and tr.images.dtype == np.uint8
    # row 0 of fer2013.csv: label 0 (angry), pixels 70 80 82 72 58 58 60 63 ...
    assert tr.meta["row"][0] == 0 and L.SEVEN[tr.labels[0]] == "angry"
    assert tr.images[0, 0, :8].tolist() == [70, 80, 82, 72, 58, 58, 60, 63]
    assert [L.SEVEN[i] for i in tr.labels[:10]] == [L.FER2013[k] for k in (0, 0, 2, 4, 6, 2, 4, 3, 3, 2)]
    # the README lists 568 test rows byte-identical to a Training image
    assert (len(fer2013["val"]) - len(fer2013["val_dedup"])) + (
        len(fer2013["test"]) - len(fer2013["test_dedup"])
    ) == 568
    assert fer2013.split("PrivateTest") is fer2013["test"]


def test_real_ferplus(data_root):
    ds = ferlab.load_dataset("ferplus", data_root)
    assert ds.classes == L.EIGHT
    total = sum(len(ds[s]) for s in ("train", "val", "test"))
    assert 30000 < total < 35887  # majority drops ambiguous / unknown / not-a-face rows
    assert ds["train"].class_counts()[L.EIGHT.index("contempt")] > 0
    ds7 = ferlab.load_dataset("ferplus7", data_root, mode="probability")
    sl = ds7["train"].soft_labels
    assert sl.shape == (len(ds7["train"]), 7)
    np.testing.assert_allclose(sl.sum(1), 1.0, atol=1e-5)
    assert (sl.argmax(1) == ds7["train"].labels).mean() > 0.95


def test_cache_roundtrip_and_speed(fer2013, tmp_path):
    path = save_dataset(fer2013, tmp_path / "fer.h5", splits=["train", "test"])
    t = time.perf_counter()
    back = load_cached(path, splits=["train"])
    assert time.perf_counter() - t < 2.0  # loading FER2013 train from the cache must take under 2 s
    np.testing.assert_array_equal(back["train"].images, fer2013["train"].images)
    np.testing.assert_array_equal(back["train"].labels, fer2013["train"].labels)
    assert back.classes == L.SEVEN
    npz = save_dataset(fer2013, tmp_path / "fer.npz", splits=["test"])
    b2 = load_cached(npz)
    np.testing.assert_array_equal(b2["test"].meta["row"], fer2013["test"].meta["row"])
    assert ferlab.load_dataset(f"cache:{npz}")["test"].images.shape == (3589, 48, 48)


# ---------------------------------------------------------------- fixture files


def _write_csv(path, rows):
    with open(path, "w") as f:
        f.write("emotion,pixels,Usage\n")
        for r in rows:
            f.write(r + "\n")


def _px(v, n=2304):
    return " ".join([str(v)] * n)


def test_fer2013_csv_reader_and_bad_rows(tmp_path):
    p = tmp_path / "fer2013.csv"
    _write_csv(
        p,
        [
            f"0,{_px(10)},Training",
            f"3,{_px(20)},Training",
            f"6,{_px(30)},PublicTest",
            f"5,{_px(40)},PrivateTest",
            f"9,{_px(50)},Training",  # label out of range
            f"2,{_px(60, 2300)},Training",  # wrong pixel count
            f"2,{_px(300)},Training",  # value out of range
            f"x,{_px(1)},Training",  # non-integer label
            f"1,{_px(1)},Elsewhere",  # unknown usage
        ],
    )
    rep = SkipReport()
    ds = ferlab.data.fer2013.read_fer2013_csv(p, rep)
    assert [len(ds[s]) for s in ("train", "val", "test")] == [2, 1, 1]
    assert [L.SEVEN[i] for i in ds["train"].labels] == ["angry", "happy"]
    assert ds["val"].images[0, 0, 0] == 30
    assert ds["test"].meta["row"].tolist() == [3]
    assert rep.total == 5
    assert rep.counts["bad pixels"] == 2 and rep.counts["bad label"] == 2 and rep.counts["bad usage"] == 1
    assert any("row 5" in m and "2300 pixel values" in m for m in rep.examples)
    assert "skipped 5" in rep.summary()


def test_fer2013_csv_bad_header(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match="header"):
        ferlab.data.fer2013.read_fer2013_csv(p)


def test_ferplus_vote_modes():
    #            neu hap sur sad ang dis fea con unk NF
    votes = np.array(
        [
            [6, 4, 0, 0, 0, 0, 0, 0, 0, 0],  # clear neutral majority
            [4, 4, 1, 1, 0, 0, 0, 0, 0, 0],  # tie 4/4 after outlier removal -> no majority
            [0, 0, 0, 0, 0, 0, 0, 0, 10, 0],  # unknown wins -> dropped
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # not a face -> dropped
            [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],  # only single votes: nothing left -> dropped (majority)
            [0, 3, 0, 0, 0, 0, 0, 7, 0, 0],  # contempt majority
        ]
    )
    keep, hard, soft = votes_to_targets(votes, "majority", 8)
    assert keep.tolist() == [True, False, False, False, False, True]
    assert [L.EIGHT[h] for h in hard[keep]] == ["neutral", "contempt"]
    keep, hard, _ = votes_to_targets(votes, "plurality", 8)
    assert keep.tolist() == [True, True, False, False, True, True]
    assert L.EIGHT[hard[1]] == "neutral"  # tie -> first FER+ column
    keep, hard, soft = votes_to_targets(votes, "probability", 8)
    np.testing.assert_allclose(soft[0, [0, 1]], [0.6, 0.4])
    np.testing.assert_allclose(soft[5, [1, 7]], [0.3, 0.7])
    keep7, _, soft7 = votes_to_targets(votes, "probability", 7)
    np.testing.assert_allclose(soft7[0, [0, 1]], [0.6, 0.4])
    assert not keep7[5]  # contempt wins -> dropped from the 7-class variant
    with pytest.raises(DataError, match="mode"):
        votes_to_targets(votes, "vote")


def test_ferplus_reader_on_fixture(tmp_path):
    from ferlab.data.fer2013 import _from_arrays
    from ferlab.data.ferplus import read_ferplus

    pixels = np.arange(4 * 48 * 48, dtype=np.int64).reshape(4, 48, 48).astype(np.uint8)
    fer = _from_arrays(pixels, np.array([0, 3, 4, 6]), np.array([0, 0, 1, 2]), np.arange(4), "t")
    p = tmp_path / "fer2013new.csv"
    p.write_text(
        "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
        "Training,fer0000000.png,0,0,0,0,10,0,0,0,0,0\n"
        "Training,fer0000001.png,0,9,0,0,1,0,0,0,0,0\n"
        "PublicTest,fer0000002.png,0,0,0,0,0,0,0,0,0,10\n"
        "PrivateTest,fer0000003.png,8,0,0,2,0,0,0,0,0,0\n"
    )
    ds = read_ferplus(p, fer, "majority", 8)
    assert [L.EIGHT[i] for i in ds["train"].labels] == ["angry", "happy"]
    assert len(ds["val"]) == 0 and L.EIGHT[ds["test"].labels[0]] == "neutral"
    np.testing.assert_array_equal(ds["test"].images[0], pixels[3])


def _img(path, value=128, size=(48, 48), mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, value, value)).save(path)
    return path


def test_imagefolder_and_split_folders(tmp_path):
    for cls, n in (("angry", 2), ("happy", 3), ("Neutral", 1)):
        for i in range(n):
            _img(tmp_path / "train" / cls / f"{i}.png", 10 * i)
    _img(tmp_path / "test" / "happy" / "0.jpg", size=(64, 64), mode="RGB")
    ds = ferlab.load_dataset(f"folder:{tmp_path}", size=48)
    assert ds.classes == L.SEVEN
    assert ds["train"].images.shape == (6, 48, 48)
    assert sorted(L.SEVEN[i] for i in ds["train"].labels) == ["angry"] * 2 + ["happy"] * 3 + ["neutral"]
    assert ds["test"].images.shape == (1, 48, 48)
    single = ferlab.load_dataset(f"folder:{tmp_path / 'train'}")
    assert len(single["train"]) == 6 and not single["train"].in_memory


def test_imagefolder_unknown_class_names(tmp_path):
    _img(tmp_path / "happy" / "a.png")
    _img(tmp_path / "banana" / "b.png")
    _img(tmp_path / "misc" / "c.png")
    with pytest.raises(DataError, match=r"\['banana', 'misc'\]"):
        ferlab.load_dataset(f"folder:{tmp_path}")


def test_rafdb_reader(tmp_path):
    root = tmp_path / "rafdb"
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text(
        "train_00001.jpg 5\ntrain_00002.jpg 1\ntest_0001.jpg 7\n"
    )
    for n in ("train_00001", "train_00002", "test_0001"):
        _img(root / "Image" / "aligned" / f"{n}_aligned.jpg", size=(100, 100), mode="RGB")
    ds = ferlab.load_dataset("rafdb", tmp_path)
    assert [L.SEVEN[i] for i in ds["train"].labels] == ["sad", "surprise"]
    assert L.SEVEN[ds["test"].labels[0]] == "neutral"
    loaded = ds["train"].load(size=48)
    assert loaded.images.shape == (2, 48, 48)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 8\n")
    with pytest.raises(DataError, match="label 8"):
        ferlab.load_dataset("rafdb", tmp_path)


def test_affectnet_reader(tmp_path):
    root = tmp_path / "affectnet"
    root.mkdir()
    head = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"
    (root / "training.csv").write_text(
        head
        + "1/a.jpg,10,20,100,100,,1,0.5,0.2\n1/b.jpg,0,0,50,50,,7,0,0\n1/c.jpg,0,0,5,5,,9,0,0\n1/d.jpg,0,0,5,5,,10,0,0\n"
    )
    (root / "validation.csv").write_text(head + "2/e.jpg,0,0,8,8,,6,0,0\n")
    ds = ferlab.load_dataset("affectnet", tmp_path)
    assert [L.EIGHT[i] for i in ds["train"].labels] == ["happy", "contempt"]
    assert ds.info["dropped"]["train"] == 2
    assert ds["train"].meta["box"][0].tolist() == [10, 20, 110, 120]
    ds7 = ferlab.load_dataset("affectnet7", tmp_path)
    assert [L.SEVEN[i] for i in ds7["train"].labels] == ["happy"]
    assert L.SEVEN[ds7["test"].labels[0]] == "angry"


def test_ckplus_subject_folds(tmp_path):
    root = tmp_path / "ckplus"
    k = 0
    for cls in ("anger", "happy", "contempt"):
        for subj in range(6):
            _img(root / cls / f"S{subj:03d}_00{k % 3}_000000{k:02d}.png")
            k += 1
    ds = ferlab.load_dataset("ckplus", tmp_path)
    sp = ds["all"]
    assert ds.classes == L.EIGHT and len(sp) == 18
    for tr, te in splits.kfold(sp, k=3, group_key="subject"):
        assert not set(tr.meta["subject"]) & set(te.meta["subject"])
    ds7 = ferlab.load_dataset("ckplus7", tmp_path)
    assert len(ds7["all"]) == 12 and ds7.classes == L.SEVEN


def test_unknown_dataset_and_missing_root(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="fer2013"):
        ferlab.load_dataset("fer2014", tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        ferlab.load_dataset("fer2013", tmp_path / "nope")
    monkeypatch.delenv("FERLAB_DATA", raising=False)
    with pytest.raises(DataError, match="FERLAB_DATA"):
        ferlab.load_dataset("fer2013")
    with pytest.raises(DataError, match="not found under"):
        ferlab.load_dataset("rafdb", tmp_path)


# ---------------------------------------------------------------- bad image files


def test_bad_image_files(tmp_path):
    (tmp_path / "noise.jpg").write_bytes(np.random.default_rng(0).bytes(500))
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    (tmp_path / "trunc.jpg").write_bytes(good.read_bytes()[:300])
    (tmp_path / "text.png").write_text("hello")
    (tmp_path / "empty.png").write_bytes(b"")
    for name, msg in (
        ("noise.jpg", "not an image"),
        ("trunc.jpg", "corrupt or truncated"),
        ("text.png", "not an image"),
        ("empty.png", "empty file"),
        ("missing.png", "no such file"),
    ):
        with pytest.raises(ImageReadError, match=msg) as e:
            read_image(tmp_path / name)
        assert name in str(e.value) and "\n" not in str(e.value)


def test_image_modes_and_exif(tmp_path):
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (10, 8), (255, 0, 0, 255)).save(rgba)
    assert read_image(rgba).shape == (8, 10, 3)
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (10, 8), (0, 255, 255, 0)).save(cmyk)
    a = read_image(cmyk)
    assert a.shape == (8, 10, 3) and a[0, 0, 0] > 200 and a[0, 0, 1] < 50  # red
    i16 = tmp_path / "i16.png"
    Image.fromarray(np.full((8, 10), 65535, dtype=np.uint16)).save(i16)
    g = read_image(i16, grayscale=True)
    assert g.dtype == np.uint8 and g.max() == 255
    pal = tmp_path / "p.png"
    Image.new("P", (10, 8), 3).save(pal)
    assert read_image(pal, grayscale=True).shape == (8, 10)
    # EXIF orientation 6 (rotate 90 CW to display): a 10x8 stored image is shown 8 wide, 10 high
    ex = tmp_path / "exif.jpg"
    im = Image.new("RGB", (10, 8))
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(ex, exif=exif)
    assert read_image(ex).shape == (10, 8, 3)


def test_split_load_skips_and_counts_bad_files(tmp_path):
    a = _img(tmp_path / "a.png")
    (tmp_path / "b.png").write_text("nope")
    sp = ferlab.Split("train", [str(a), str(tmp_path / "b.png")], np.array([0, 1]), L.SEVEN)
    rep = SkipReport()
    out = sp.load(size=48, report=rep)
    assert len(out) == 1 and rep.total == 1 and "b.png" in rep.examples[0]


def test_split_label_out_of_range():
    with pytest.raises(DataError, match="label 9 at item 1"):
        ferlab.Split("train", np.zeros((2, 4, 4), np.uint8), np.array([0, 9]), L.SEVEN)


# ---------------------------------------------------------------- balance and splits


def test_balance_maths():
    counts = [3995, 436, 4097, 7215, 4830, 3171, 4965]
    assert balance.deficit(counts).tolist() == [3220, 6779, 3118, 0, 2385, 4044, 2250]
    assert balance.deficit(counts, 5000).tolist() == [1005, 4564, 903, 0, 170, 1829, 35]
    assert balance.deficit([10, 40], 0.5).tolist() == [10, 0]
    labels = np.repeat([0, 1, 2], [10, 30, 60])
    w = balance.class_weights(labels, 3)
    np.testing.assert_allclose(w * [10, 30, 60], (w * [10, 30, 60])[0])  # inverse frequency
    assert w.mean() == pytest.approx(1.0)
    we = balance.class_weights(labels, 3, "effective", beta=0.9)
    raw = (1 - 0.9) / (1 - 0.9 ** np.array([10, 30, 60]))
    np.testing.assert_allclose(we, raw / raw.mean(), rtol=1e-5)
    over = balance.oversample_indices(labels)
    assert np.bincount(labels[over]).tolist() == [60, 60, 60]
    under = balance.undersample_indices(labels)
    assert np.bincount(labels[under]).tolist() == [10, 10, 10]
    sampler = balance.weighted_sampler(labels, num_samples=30000)
    drawn = np.bincount(labels[np.array(list(sampler))], minlength=3) / 30000
    np.testing.assert_allclose(drawn, 1 / 3, atol=0.02)
    with pytest.raises(ConfigError):
        balance.class_weights(labels, method="sqrt")


def test_fer2013_deficit_table_and_chart(fer2013, tmp_path):
    d = balance.deficit(fer2013["train"].class_counts())
    assert d.sum() == 7215 * 7 - 28709
    png = balance.plot_class_counts(fer2013, tmp_path / "counts.png")
    assert png.stat().st_size > 10_000


def test_stratified_split_and_kfold(fer2013):
    tr = fer2013["train"]
    a, b = splits.stratified_split(tr, 0.2, seed=1)
    assert len(a) + len(b) == len(tr) and not set(a.meta["row"]) & set(b.meta["row"])
    np.testing.assert_allclose(b.class_counts() / len(b), tr.class_counts() / len(tr), atol=0.002)
    small = tr.subset(np.arange(2000))
    seen = []
    for ftr, fte in splits.kfold(small, k=5):
        assert not set(ftr.meta["row"]) & set(fte.meta["row"])
        assert abs(len(fte) - 400) <= 5
        np.testing.assert_allclose(fte.class_counts() / len(fte), small.class_counts() / 2000, atol=0.02)
        seen += fte.meta["row"].tolist()
    assert sorted(seen) == sorted(small.meta["row"].tolist())


# ---------------------------------------------------------------- offline expansion


def test_paper002_expansion_counts():
    sp = ferlab.Split(
        "train", np.random.default_rng(0).integers(0, 255, (4, 48, 48), dtype=np.uint8), np.arange(4), L.SEVEN
    )
    ex = expand_paper002(sp)
    assert len(ex) == 15 * 4
    assert ex.meta["augmented"].sum() == 14 * 4
    np.testing.assert_array_equal(ex.images[~ex.meta["augmented"]], sp.images)
    assert (ex.labels == sp.labels[ex.meta["origin"]]).all()
    assert len(expand(sp, "paper002_hflip")) == 10 * 4


def test_paper004_expansion_multipliers(fer2013):
    tr = fer2013["train"]
    ex = expand_per_class(tr, seed=0)
    c0, c1 = tr.class_counts(), ex.class_counts()
    ratio = c1 / c0
    dis = L.SEVEN.index("disgust")
    assert ratio[dis] == pytest.approx(2.16, abs=0.01)
    assert np.delete(ratio, dis) == pytest.approx(1.35, abs=0.01)


def test_expansion_never_leaks_test_images(fer2013):
    """Split first, expand the training part only; no augmented copy of a val/test image reaches training."""
    small = fer2013["train"].subset(np.arange(3000))
    tr, va = splits.stratified_split(small, 0.2, seed=0)
    ex = expand(tr, "paper004", seed=0)
    held_out = set(va.meta["row"]) | set(fer2013["test"].meta["row"]) | set(fer2013["val"].meta["row"])
    assert not set(ex.meta["row"]) & held_out
    assert set(ex.meta["row"]) <= set(tr.meta["row"])
    for bad in (va, fer2013["test"], fer2013["val"]):
        with pytest.raises(DataError, match="training splits only"):
            expand(bad, "paper002")
    with pytest.raises(ConfigError, match="paper004"):
        expand(tr, "paper999")


def test_one_sampler_weights():
    # class balance alone = the inverse class weights; synthetic items drawn synthetic_weight times as often
    from ferlab.data.balance import class_weights, draw_weights

    y = np.array([0, 0, 0, 1])
    np.testing.assert_allclose(draw_weights(y, 2), class_weights(y, 2)[y])
    w = draw_weights(y, 2, True, np.array([1.0, 1.0, 0.5, 1.0]))
    np.testing.assert_allclose(w, [0.4, 0.4, 0.2, 1.0])  # each class's draws sum to one
    np.testing.assert_allclose(draw_weights(y, 2, False), np.ones(4))


def test_split_real_only():
    from ferlab.data.base import Split

    sp = Split("train", np.zeros((4, 2, 2), np.uint8), np.array([0, 1, 0, 1]), ("a", "b"),
               meta={"synthetic": np.array([False, True, False, False])})  # fmt: skip
    assert len(sp.real_only()) == 3
    plain = Split("val", np.zeros((2, 2, 2), np.uint8), np.array([0, 1]), ("a", "b"))
    assert plain.real_only() is plain
