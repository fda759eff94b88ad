"""Balancing with generated faces (paper 004): planner, prompts, a tiny local diffusers pipeline, face
post-processing, merging into a new dataset version and training with ``synthetic_weight``.

No model is downloaded: the pipeline is a randomly initialised Stable Diffusion 1.5-shaped pipeline built
from small configs (and a character-level CLIP tokenizer whose files the test writes) in a temp folder.
"""

from __future__ import annotations

import hashlib
import json
import string

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

import ferlab
from ferlab import labels as L
from ferlab.cli import main
from ferlab.data.balance import draw_weights
from ferlab.data.cache import load_cached, save_dataset
from ferlab.errors import ConfigError, DataError
from ferlab.generate import (
    FaceFilter,
    GenerationPlan,
    GenerationSettings,
    PromptGenerator,
    generate_images,
    is_blank,
    load_pipeline,
    mark_synthetic,
    merge_synthetic,
    plan_generation,
    real_only,
    write_dataset,
)
from ferlab.generate.postprocess import SyntheticFaces
from ferlab.generate.prompts import WORD_SLOTS, template_slots

FER_TRAIN = {
    "angry": 3995,
    "disgust": 436,
    "fear": 4097,
    "happy": 7215,
    "sad": 4830,
    "surprise": 3171,
    "neutral": 4965,
}


# ---------------------------------------------------------------- planner


def test_plan_fer2013_matches_hand_counts(fer2013):
    plan = plan_generation(fer2013)
    counts = dict(zip(plan.classes, plan.split("train").counts.tolist()))
    assert counts == FER_TRAIN
    assert plan.needed == {c: 7215 - n for c, n in FER_TRAIN.items()}
    assert plan.total == 21796 and plan.generate == plan.needed
    # paper 004's 5,240 "test" images: PublicTest (val) + PrivateTest (test), each balanced to its own max
    assert int(plan.split("val").needed.sum()) == 2676 and int(plan.split("test").needed.sum()) == 2564
    notes = " ".join(plan.notes())
    assert "training split 'train' only: 21,796" in notes and "never filled" in notes and "5,240" in notes
    # a count and a ratio (hand-computed), overshoot rounds up
    assert plan_generation(fer2013, target=5000).needed == {c: max(5000 - n, 0) for c, n in FER_TRAIN.items()}
    half = plan_generation(fer2013, target="0.5").needed  # ceil(0.5 * 7215) = 3608
    assert half == {c: max(3608 - n, 0) for c, n in FER_TRAIN.items()} and half["disgust"] == 3172
    assert plan_generation(fer2013, overshoot=1.1).generate["disgust"] == 7457  # ceil(6779 * 1.1)
    with pytest.raises(DataError, match="training split"):
        plan_generation(fer2013, train_split="test")
    with pytest.raises(ConfigError, match="balance target"):
        plan_generation(fer2013, target="lots")


def test_plan_cli_prints_real_table_and_saves(tmp_path, capsys, data_root):
    out = tmp_path / "plan.json"
    assert (
        main(["generate", "plan", "--dataset", "fer2013", "--data-dir", str(data_root), "--out", str(out)])
        == 0
    )
    text = capsys.readouterr().out
    assert "disgust |   436 |         6779 |" in text and "TOTAL | 28709 |        21796 |" in text
    assert "training split 'train' only" in text
    plan = GenerationPlan.load(out)
    assert plan.generate["disgust"] == 6779 and plan.total == 21796
    assert (
        main(["generate", "plan", "--dataset", "fer2013", "--target", "x", "--data-dir", str(data_root)]) == 2
    )
    assert "balance target" in capsys.readouterr().err


# ---------------------------------------------------------------- prompts


def test_prompts_reproducible_seed_schedule_and_slots():
    a, b = PromptGenerator(start_seed=7), PromptGenerator(start_seed=7)
    jobs = a.jobs("disgust", 40)
    assert jobs == b.jobs("disgust", 40)
    assert [j.seed for j in jobs] == [7 + L.CANONICAL.index("disgust") + 200 * i for i in range(40)]
    assert np.all(np.diff([j.seed for j in jobs]) == 200)
    assert a.job("disgust", 13) == jobs[13]  # a prompt depends only on (emotion, index), not on the run
    assert PromptGenerator(start_seed=8).jobs("disgust", 3) != jobs[:3]
    # classes never share a seed
    seeds = [j.seed for e in L.CANONICAL for j in a.jobs(e, 5)]
    assert len(set(seeds)) == len(seeds)

    slots = template_slots(a.template)
    assert {"context", "gender", "state", "expression", "age", "nationality", "ancestry", *WORD_SLOTS} <= set(
        slots
    )
    seen = {s: set() for s in slots}
    for j in a.jobs("fear", 300):
        assert "{" not in j.prompt and j.prompt.startswith(j.slots["context"])
        assert "Focus on eyes, eyebrows, mouth" in j.prompt and j.negative_prompt
        assert len({j.slots[w] for w in WORD_SLOTS}) == 3  # three different emotion words
        for s in slots:
            assert j.slots[s] in a.pool("fear", s) and j.slots[s] in j.prompt
            seen[s].add(j.slots[s])
    for s in slots:  # every value of every pool is used
        assert seen[s] == set(a.pool("fear", s)), s
    assert set(a.pool("fear", "words")).isdisjoint(a.pool("happy", "words"))


def test_prompt_pools_from_yaml(tmp_path):
    p = tmp_path / "pools.yaml"
    p.write_text("shared:\n  gender: [robot]\nemotions:\n  Disgusted:\n    expression: [wrinkled nose]\n")
    gen = PromptGenerator(p)
    j = gen.job("disgust", 0)
    assert j.slots["gender"] == "robot" and j.slots["expression"] == "wrinkled nose"
    assert gen.job("happy", 0).slots["gender"] == "robot"  # shared override, default happy pools kept
    p.write_text("emotions:\n  sad:\n    words: [sad, sad]\n")
    with pytest.raises(ConfigError, match="3 different"):
        PromptGenerator(p)
    p.write_text("template: '{context} of {mood}'\n")
    with pytest.raises(ConfigError, match="no pool 'mood'"):
        PromptGenerator(p)


def test_prompts_cli(tmp_path, capsys):
    assert main(["generate", "prompts", "--counts", "disgust=2,fear=1", "--seed", "3"]) == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["emotion"], r["seed"]) for r in recs] == [("disgust", 8), ("disgust", 208), ("fear", 7)]
    assert all({"prompt", "negative_prompt", "file", "slots"} <= set(r) for r in recs)
    assert main(["generate", "prompts"]) == 2
    assert "say what to generate" in capsys.readouterr().err


# ---------------------------------------------------------------- post-processing


def test_postprocess_filter_on_real_faces():
    filt = FaceFilter(size=48)
    astro = skdata.astronaut()
    crop, reason, box = filt(astro)
    assert reason is None and crop.shape == (48, 48) and crop.dtype == np.uint8
    assert box[0] > 100 and box[2] < 320  # the face, not the whole picture
    assert filt(np.zeros((512, 512, 3), np.uint8))[1] == "blank"  # safety-checker black square
    assert filt(np.full((512, 512, 3), 128, np.uint8))[1] == "blank"
    assert filt(np.concatenate([astro, astro], axis=1))[1] == "several faces"
    assert FaceFilter(size=(40, 32), grayscale=False)(astro)[0].shape == (40, 32, 3)
    assert not is_blank(astro) and is_blank(np.full((64, 64), 5, np.uint8))


# ---------------------------------------------------------------- the tiny pipeline


def _tiny_pipeline(folder):
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tok_dir = folder / "tok"
    tok_dir.mkdir(parents=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase + string.digits + ".,'-":  # character-level BPE: every word splits
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(
        str(tok_dir / "vocab.json"),
        str(tok_dir / "merges.txt"),
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=77,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_attention_heads=4,
            num_hidden_layers=2, bos_token_id=0, eos_token_id=1, pad_token_id=1, projection_dim=32,
        )
    )  # fmt: skip
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8,
    )  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, sample_size=32,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    )  # fmt: skip
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1,
    )  # fmt: skip
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    out = folder / "tiny-sd"
    pipe.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("diffusers")
    return _tiny_pipeline(tmp_path_factory.mktemp("sd"))


@pytest.fixture(scope="module")
def small_fer(fer2013, tmp_path_factory):
    """A small real FER2013 version as HDF5: 20 train images per class but 18 fear and 5 disgust."""
    rng = np.random.default_rng(0)
    splits = {}
    for name, per in (("train", {"fear": 18, "disgust": 5}), ("val", {}), ("test", {})):
        sp = fer2013[name]
        idx = [
            rng.choice(
                np.flatnonzero(sp.labels == c), per.get(cls, 20 if name == "train" else 4), replace=False
            )
            for c, cls in enumerate(sp.classes)
        ]
        splits[name] = sp.subset(np.sort(np.concatenate(idx)))
    ds = ferlab.FERDataset("fer2013-small", fer2013.classes, splits, source="")
    path = tmp_path_factory.mktemp("small") / "small.h5"
    save_dataset(ds, path)
    return path


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_generate_images_resumable_with_manifest(tiny_model, tmp_path, capsys):
    out = tmp_path / "gen"
    base = ["generate", "images", "--model", str(tiny_model), "--out", str(out), "--counts", "disgust=3", "fear=2",
            "--size", "32", "--steps", "2", "--batch-size", "2", "--device", "cpu", "--seed", "5", "--quiet"]  # fmt: skip
    assert main([*base, "--limit", "3"]) == 0
    assert "3 generated, 0 already there" in capsys.readouterr().out
    assert main(base) == 0
    assert "2 generated, 3 already there" in capsys.readouterr().out
    files = sorted(out.glob("images/*/*.png"))
    stamps = {p: (p.stat().st_mtime_ns, _sha(p)) for p in files}
    assert main(base) == 0  # nothing new the second time round
    assert "0 generated, 5 already there" in capsys.readouterr().out
    assert {p: (p.stat().st_mtime_ns, _sha(p)) for p in files} == stamps
    assert [p.name for p in files] == sorted(
        ["disgust_000000_s10.png", "disgust_000001_s210.png", "disgust_000002_s410.png",
         "fear_000000_s9.png", "fear_000001_s209.png"]
    )  # fmt: skip
    recs = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(recs) == 5 and {r["file"] for r in recs} == {f"{p.parent.name}/{p.name}" for p in files}
    for r in recs:
        assert r["model"] == str(tiny_model) and r["steps"] == 2 and r["guidance"] == 5.5
        assert r["width"] == r["height"] == 32 and r["scheduler"] == "DDIMScheduler"
        assert r["prompt"] == PromptGenerator(start_seed=5).job(r["emotion"], r["index"]).prompt
        assert r["truncated"] == (r["tokens"] > 77)  # the tiny tokenizer splits words into characters
        assert r["negative_prompt"] and r["seed"] == 5 + L.CANONICAL.index(r["emotion"]) + 200 * r["index"]
    img = np.asarray(Image.open(files[0]))
    assert img.shape == (32, 32, 3) and img.std() > 5  # the random pipeline paints noise
    # a resumed run with other settings is refused; an image does not depend on its batch
    assert main([*base, "--steps", "3"]) == 2
    assert "other settings" in capsys.readouterr().err
    pipe = load_pipeline(tiny_model, device="cpu")
    job = PromptGenerator(start_seed=5).job("disgust", 1)
    settings = GenerationSettings(str(tiny_model), 32, 32, steps=2, batch_size=1)
    rep = generate_images([job], tmp_path / "alone", settings, pipeline=pipe, progress=False)
    assert rep.generated == 1
    alone = np.asarray(Image.open(tmp_path / "alone" / "images" / job.file), dtype=np.int16)
    assert np.abs(alone - np.asarray(Image.open(out / "images" / job.file), dtype=np.int16)).max() <= 1
    # not a pipeline folder: one line, exit 2
    assert main([*base[:3], str(tmp_path), "--out", str(tmp_path / "other"), *base[6:]]) == 2
    assert "not a diffusers pipeline folder" in capsys.readouterr().err


def test_pipeline_end_to_end_merge_and_train(tiny_model, small_fer, tmp_path, capsys):
    gen = tmp_path / "gen"
    args = ["generate", "images", "--model", str(tiny_model), "--out", str(gen), "--counts", "disgust=3,fear=2",
            "--size", "32", "--steps", "2", "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(args) == 0
    # stand-ins for what a real model returns: faces (two disgust, three fear), a black safety-checker
    # output and a two-person picture, recorded like generated images
    astro = skdata.astronaut()
    extra = [("disgust", astro), ("disgust", astro[:, ::-1]), ("fear", astro), ("fear", astro), ("fear", astro),
             ("angry", np.zeros_like(astro)), ("sad", np.concatenate([astro, astro], axis=1))]  # fmt: skip
    with open(gen / "manifest.jsonl", "a") as f:
        for k, (emo, img) in enumerate(extra):
            rec = {"file": f"{emo}/{emo}_{100 + k:06d}_s{k}.png", "emotion": emo, "index": 100 + k, "seed": k,
                   "prompt": f"a {emo} face", "negative_prompt": "cartoon", "model": "stand-in"}  # fmt: skip
            (gen / "images" / emo).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(gen / "images" / rec["file"])
            f.write(json.dumps(rec) + "\n")

    before = _sha(small_fer)
    out = tmp_path / "balanced.h5"
    faces_dir = tmp_path / "faces"
    cmd = ["generate", "merge", "--generated", str(gen), "--dataset", f"cache:{small_fer}", "--out", str(out),
           "--faces", str(faces_dir), "--quiet"]  # fmt: skip
    assert main(cmd) == 0
    text = capsys.readouterr().out
    # the tiny pipeline's noise has no face; black -> blank; two faces -> several faces
    assert "12 generated images -> 5 accepted; rejected: 1 blank, 5 no face, 1 several faces" in text
    assert _sha(small_fer) == before  # the original version is untouched
    assert len(list(faces_dir.glob("*/*.png"))) == 5 and (faces_dir / "decisions.jsonl").is_file()

    ds = load_cached(out)
    orig = load_cached(small_fer)
    tr = ds["train"]
    syn = tr.meta["synthetic"].astype(bool)
    # capped at the deficit: disgust needs 15 (both added), fear needs 2 (2 of 3 added)
    assert syn.sum() == 4 and len(tr) == len(orig["train"]) + 4
    added = {c: int((tr.labels[syn] == i).sum()) for i, c in enumerate(ds.classes)}
    assert added == {**dict.fromkeys(ds.classes, 0), "disgust": 2, "fear": 2}
    assert tr.images.shape[1:] == (48, 48) and np.array_equal(tr.images[~syn], orig["train"].images)
    assert set(tr.meta["gen_seed"][syn].tolist()) <= set(range(7)) and (tr.meta["gen_seed"][~syn] == -1).all()
    assert (tr.meta["row"][syn] == -1).all() and np.array_equal(
        tr.meta["row"][~syn], orig["train"].meta["row"]
    )
    for name in ("val", "test"):
        assert "synthetic" not in ds[name].meta and np.array_equal(ds[name].images, orig[name].images)
    prov = [json.loads(line) for line in (tmp_path / "balanced.synthetic.jsonl").read_text().splitlines()]
    assert len(prov) == 4 and all(p["prompt"] and p["face_box"] and p["split"] == "train" for p in prov)
    report = json.loads((tmp_path / "balanced.synthetic.report.json").read_text())
    assert report["postprocess"]["rejected"] == {
        "unreadable": 0,
        "blank": 1,
        "no face": 5,
        "several faces": 1,
    }

    # without the cap every accepted face goes in
    assert main([*cmd[:-3], "--out", str(tmp_path / "all.h5"), "--no-cap", "--quiet"]) == 0
    assert load_cached(tmp_path / "all.h5")["train"].meta["synthetic"].sum() == 5
    # refusals: a non-training split, the original's own file
    assert main([*cmd[:-3], "--split", "test"]) == 2
    assert "only training splits" in capsys.readouterr().err
    assert main([*cmd[:-5], "--out", str(small_fer), "--quiet"]) == 2
    assert "overwrite the original" in capsys.readouterr().err and _sha(small_fer) == before

    # training reads the synthetic flag: val/test real only, synthetic_weight 0 drops them
    from ferlab.engine import Trainer
    from ferlab.engine.config import from_dict
    from ferlab.engine.trainer import load_training_data
    from ferlab.models import model_info

    def cfg(**kw):
        base = {"model": "smallcnn_tiny", "dataset": f"cache:{out}", "epochs": 1, "batch_size": 16,
                "progress": False, "tensorboard": False, "output_dir": str(tmp_path / "runs"),
                "scheduler": "none", "test_splits": ["test"], "resume": False}  # fmt: skip
        return from_dict({**base, **kw})

    splits, _ = load_training_data(cfg(), model_info("smallcnn_tiny").data)
    assert splits["train"].meta["synthetic"].sum() == 4
    assert "synthetic" not in splits["val"].meta or not splits["val"].meta["synthetic"].any()
    carved, _ = load_training_data(cfg(val_split=None, val_fraction=0.2), model_info("smallcnn_tiny").data)
    assert carved["train"].meta["synthetic"].sum() == 4 and not carved["val"].meta["synthetic"].any()
    dropped = Trainer(cfg(name="w0", synthetic_weight=0.0))
    assert len(dropped.train_split) == len(orig["train"]) and dropped.synthetic_w is None
    res = Trainer(cfg(name="w05", synthetic_weight=0.5, limit_train_batches=2)).fit()
    assert 0 <= res["test_acc"] <= 1


def test_merge_guards_and_folder_version(small_fer, tmp_path):
    ds = load_cached(small_fer)
    astro = FaceFilter(size=48)(skdata.astronaut())[0]
    faces = SyntheticFaces(
        np.stack([astro, astro]), ["disgust", "contempt"], [{"file": "a.png"}, {"file": "b.png"}]
    )
    with pytest.raises(DataError, match="classes \\['contempt'\\]"):
        merge_synthetic(ds, faces)
    faces = SyntheticFaces(
        np.stack([astro] * 3), ["disgust"] * 3, [{"file": f"d/{i}.png", "seed": i} for i in range(3)]
    )
    with pytest.raises(DataError, match="only training splits"):
        merge_synthetic(ds, faces, split="val")
    with pytest.raises(DataError, match="shape"):
        merge_synthetic(ds, SyntheticFaces(np.zeros((1, 32, 32), np.uint8), ["disgust"], [{}]))
    merged = merge_synthetic(ds, faces, cap={"disgust": 2})
    assert merged["train"].meta["synthetic"].sum() == 2 and merged.name == "fer2013-small+synthetic"
    with pytest.raises(DataError, match="overwrite the original"):
        write_dataset(merged, small_fer, protect=[small_fer])
    with pytest.raises(DataError, match="already holds synthetic"):
        merge_synthetic(merged, faces)

    folder = write_dataset(merged, tmp_path / "v2")
    assert len(list(folder.glob("train/disgust/syn_*.png"))) == 2
    back = mark_synthetic(ferlab.load_dataset(f"folder:{folder}"))
    assert back["train"].meta["synthetic"].sum() == 2 and not back["test"].meta["synthetic"].any()
    assert len(back["train"]) == len(merged["train"]) and len(real_only(back["train"])) == len(ds["train"])


def test_synthetic_weight_in_the_sampler(tmp_path):
    from ferlab.engine import Trainer
    from ferlab.engine.config import from_dict

    rng = np.random.default_rng(0)
    n, n_syn = 160, 40
    labels = np.r_[np.zeros(100, int), np.ones(60, int)]  # 100 of class 0, 60 of class 1 (40 synthetic)
    syn = np.r_[np.zeros(120, bool), np.ones(n_syn, bool)]
    train = ferlab.Split("train", rng.integers(0, 255, (n, 48, 48), dtype=np.uint8), labels, L.SEVEN,
                         meta={"synthetic": syn})  # fmt: skip
    val = ferlab.Split("val", rng.integers(0, 255, (16, 48, 48), dtype=np.uint8), np.zeros(16, int), L.SEVEN)

    def trainer(**kw):
        cfg = {"model": "smallcnn_tiny", "epochs": 1, "batch_size": 16, "progress": False, "tensorboard": False,
               "output_dir": str(tmp_path), "name": "s", "scheduler": "none", "resume": False, **kw}  # fmt: skip
        return Trainer(from_dict(cfg), {"train": train, "val": val}, L.SEVEN)

    assert trainer().synthetic_w is None  # weight 1: the plain shuffle, unchanged
    assert sorted(trainer().epoch_indices(0)) == list(range(n))
    draws = np.concatenate([trainer(synthetic_weight=0.25).epoch_indices(e) for e in range(20)])
    frac = syn[draws].mean()  # expected 40 * 0.25 / (120 + 10) = 0.077
    assert 0.05 < frac < 0.11
    draws = np.concatenate(
        [trainer(synthetic_weight=0.25, sampler="weighted").epoch_indices(e) for e in range(20)]
    )
    assert 0.45 < (labels[draws] == 1).mean() < 0.55  # classes still balanced
    w = draw_weights(labels, 7, True, np.where(syn, 0.25, 1.0))
    assert np.isclose(w[labels == 0].sum(), w[labels == 1].sum())
    assert len(trainer(synthetic_weight=0.0).train_split) == 120
    with pytest.raises(ConfigError, match="synthetic_weight"):
        from_dict({"synthetic_weight": -1})
