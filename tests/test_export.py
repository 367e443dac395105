"""Export: a Hub-ready weights folder from a training checkpoint, loadable locally and from a Hub cache,
with a model card whose front matter carries the evaluation; the upload checked with a fake HfApi."""

import json
import shutil

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save_file

from sfd import SFDModel, SFDPipeline
from sfd.errors import SFDError, WeightsError
from sfd.evaluation import COLUMNS
from sfd.export import export, find_model_folder, main, push_to_hub
from sfd.face import RETINAFACE_FILENAME

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    head, _, _ = card[4:].partition("\n---\n")
    return yaml.safe_load(head)


def evaluation_results() -> dict:
    """An evaluation.json as `python -m sfd.evaluation` writes it, with LPIPS not computed."""
    values = {"l1": 0.0512, "psnr": 22.5, "ssim": 0.713, "akd": 1.87, "aed": 0.142, "id_sim": 0.83,
              "motion_error": 3.4}
    results = {"format": "sfd-evaluation", "method": "SFD (tiny)",
               "dataset": {"name": "voxceleb", "split": "test", "videos": 2},
               "protocol": {"size": 64, "crop": False}, "networks": {"landmarks": "FAN", "identity": "ArcFace"},
               "same_identity": {"frames": 10}, "cross_identity": {"pairs": 2, "frames": 8}}
    for column in COLUMNS:
        metric = ({"value": values[column.key], "frames": 10} if column.key in values
                  else {"value": None, "reason": "no LPIPS weights given"})
        results[column.section][column.key] = metric
    return results


def write_config(folder, class_name="SFDModel"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": class_name}))
    return folder


def test_find_model_folder_takes_a_weights_folder_or_prefers_ema_in_a_checkpoint(tmp_path):
    plain = write_config(tmp_path / "plain")
    assert find_model_folder(plain) == plain
    ckpt = tmp_path / "ckpt"
    write_config(ckpt / "discriminator", "Discriminator")
    write_config(ckpt / "model")
    write_config(ckpt / "ema")
    assert find_model_folder(ckpt) == ckpt / "ema"
    shutil.rmtree(ckpt / "ema")
    assert find_model_folder(ckpt) == ckpt / "model"
    nested = tmp_path / "nested"
    write_config(nested / "a" / "deep")
    write_config(nested / "b")
    assert find_model_folder(nested) == nested / "b"  # the shallowest first
    with pytest.raises(WeightsError, match="holds no SFD model"):
        find_model_folder(write_config(tmp_path / "other" / "d", "Discriminator").parent)
    with pytest.raises(WeightsError, match="no checkpoint folder"):
        find_model_folder(tmp_path / "absent")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A training checkpoint as the trainer may lay it out: raw and EMA weights, plus other state."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(1)
    SFDModel.from_preset("tiny").save_pretrained(root / "model")
    torch.manual_seed(2)
    SFDModel.from_preset("tiny").save_pretrained(root / "ema")
    (root / "trainer_state.json").write_text("{}")
    return root


@pytest.fixture(scope="module")
def detector_weights(tmp_path_factory):
    """RetinaFace-shaped random weights when facexlib is here (the file is checked against the network)."""
    from sfd.face.retinaface import build_retinaface_network

    try:
        net = build_retinaface_network()
    except WeightsError as error:
        pytest.skip(str(error))
    path = tmp_path_factory.mktemp("detector") / "retinaface.safetensors"
    save_file({k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory, checkpoint, detector_weights):
    folder = tmp_path_factory.mktemp("export")
    (folder / "evaluation.json").write_text(json.dumps(evaluation_results()))
    (folder / "calibration.json").write_text(json.dumps({"motion": {"mean": [0.0] * 20, "std": [1.0] * 20}}))
    out = export(checkpoint, folder / "sfd-tiny", eval_json=folder / "evaluation.json",
                 detector_weights=detector_weights, calibration=folder / "calibration.json",
                 license="cc-by-nc-4.0", datasets=["voxceleb2", "own-clips=CC0-1.0"])
    return out


def test_export_writes_a_hub_ready_folder_of_the_ema_weights(exported, checkpoint):
    files = sorted(p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file())
    assert files == ["README.md", "calibration.json", "config.json", RETINAFACE_FILENAME,
                     "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.safetensors",
                     "evaluation.json"]
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")]  # no staging folder left
    ema = SFDModel.from_pretrained(checkpoint / "ema")
    model = SFDModel.from_pretrained(exported)
    for (name, a), b in zip(ema.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name
    with safe_open(str(exported / "diffusion_pytorch_model.fp16.safetensors"), framework="pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    half = SFDModel.from_pretrained(exported, variant="fp16")  # the float16 file, loaded into the model
    for (name, a), b in zip(ema.state_dict().items(), half.state_dict().values()):
        assert torch.equal(a.half().float(), b.float()), name
    assert json.loads((exported / "calibration.json").read_text())["motion"]["std"] == [1.0] * 20


def test_fp16_only_export_with_an_atlas_loads_without_naming_the_variant(checkpoint, tmp_path):
    atlas_dir = tmp_path / "atlas-source"
    (atlas_dir / "atlas").mkdir(parents=True)
    (atlas_dir / "atlas" / "direction_00.png").write_bytes(b"png")
    directions = [{"index": 0, "name": "yaw", "group": "Head", "measurements": {}, "preview": "atlas/direction_00.png"}]
    (atlas_dir / "atlas.json").write_text(json.dumps({"version": 1, "directions": directions}))
    results = evaluation_results()
    results["weights"], results["dataset"]["root"] = "/home/me/runs/tiny", "/data/voxceleb"
    (tmp_path / "evaluation.json").write_text(json.dumps(results))
    out = export(checkpoint, tmp_path / "small", fp16_only=True, atlas=atlas_dir / "atlas.json",
                 eval_json=tmp_path / "evaluation.json")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["README.md", "atlas.json", "atlas/direction_00.png", "config.json",
                     "diffusion_pytorch_model.fp16.safetensors", "evaluation.json"]
    # Nothing about the exporting machine's folders is published.
    published = json.loads((out / "evaluation.json").read_text())
    assert published["weights"] == "tiny" and published["dataset"]["root"] == "voxceleb"
    assert published["same_identity"] == results["same_identity"]
    assert "_name_or_path" not in json.loads((out / "config.json").read_text())
    card = (out / "README.md").read_text()
    assert "float16 only" in card and "float32 weights" not in card and "`atlas.json`" in card
    ema = SFDModel.from_pretrained(checkpoint / "ema")
    model = SFDModel.from_pretrained(out)  # no variant named: the float16 file is what there is
    assert model.dtype == torch.float32
    for (name, a), b in zip(ema.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a.half().float(), b), name
    assert SFDPipeline.from_pretrained(out, device="cpu").size == 64
    with pytest.raises(SFDError, match="would store no weights"):
        export(checkpoint, tmp_path / "none", fp16_only=True, fp16=False)
    (atlas_dir / "atlas" / "direction_00.png").unlink()
    with pytest.raises(SFDError, match="names the preview atlas/direction_00.png"):
        export(checkpoint, tmp_path / "broken", atlas=atlas_dir / "atlas.json")
    assert not (tmp_path / "broken").exists()


def test_sharded_export_keeps_every_file_under_the_cap_and_loads_the_same_weights(checkpoint, tmp_path):
    """`--max-shard-size`: for transfers that cap a file's size (a GPU lease's way back)."""
    out = export(checkpoint, tmp_path / "sharded", max_shard_size="2MB")
    weights = sorted(out.glob("diffusion_pytorch_model*.safetensors"))
    assert len([w for w in weights if ".fp16" not in w.name]) >= 3  # 7 MB of float32 in 2 MB shards
    assert all(w.stat().st_size <= 2_000_000 for w in weights)
    assert (out / "diffusion_pytorch_model.safetensors.index.json").is_file()
    ema = SFDModel.from_pretrained(checkpoint / "ema")
    for variant, cast in ((None, lambda t: t), ("fp16", lambda t: t.half().float())):
        model = SFDModel.from_pretrained(out, variant=variant)
        for (name, a), b in zip(ema.state_dict().items(), model.state_dict().values()):
            assert torch.equal(cast(a), b.float()), name
    assert "diffusion_pytorch_model-00001-of-" in (out / "README.md").read_text()


def test_card_title_and_model_index_name_come_from_the_model_not_the_last_file_copied(checkpoint, tmp_path):
    atlas_dir = tmp_path / "atlas-source"
    (atlas_dir / "atlas").mkdir(parents=True)
    directions = []
    for i in range(3):
        (atlas_dir / "atlas" / f"direction_{i:02d}.png").write_bytes(b"png")
        directions.append({"index": i, "name": "subtle", "group": "Other", "measurements": {},
                           "preview": f"atlas/direction_{i:02d}.png"})
    (atlas_dir / "atlas.json").write_text(json.dumps({"version": 1, "directions": directions}))
    (tmp_path / "evaluation.json").write_text(json.dumps(evaluation_results()))
    for model_name, title in [(None, "sfd-atlas"), ("SFD tiny demo", "SFD tiny demo")]:
        out = export(checkpoint, tmp_path / "sfd-atlas", atlas=atlas_dir / "atlas.json", model_name=model_name,
                     eval_json=tmp_path / "evaluation.json", fp16=False, overwrite=True)
        assert (out / "atlas" / "direction_02.png").is_file()
        card = (out / "README.md").read_text(encoding="utf-8")
        (entry,) = front_matter(card)["model-index"]
        assert entry["name"] == title
        assert f"\n# {title}\n" in card and "# atlas/" not in card


def test_exported_folder_loads_in_the_pipeline_with_its_detector(exported):
    pipe = SFDPipeline.from_pretrained(exported, device="cpu")
    assert pipe.face_detector.name.lower().startswith("retinaface")
    assert pipe.size == 64


def test_exported_folder_loads_from_a_prefilled_hub_cache_offline(exported, tmp_path):
    """The Hub's cache layout (models--org--name/snapshots/<commit>/, refs/main), filled by copying
    the export in; HF_HUB_OFFLINE=1 (conftest) so nothing is fetched. cache_dir is passed
    explicitly because huggingface_hub reads HF_HUB_CACHE once, at import."""
    from huggingface_hub import constants, hf_hub_download

    assert constants.HF_HUB_OFFLINE
    repo = tmp_path / "hub" / "models--org--sfd-tiny"
    shutil.copytree(exported, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    cache = tmp_path / "hub"
    model = SFDModel.from_pretrained("org/sfd-tiny", cache_dir=cache)
    reference = SFDModel.from_pretrained(exported)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
    half = SFDModel.from_pretrained("org/sfd-tiny", cache_dir=cache, variant="fp16")
    assert all(torch.equal(a.half().float(), b.float())
               for a, b in zip(reference.state_dict().values(), half.state_dict().values()))
    card = hf_hub_download("org/sfd-tiny", "README.md", cache_dir=cache)
    assert front_matter(open(card, encoding="utf-8").read())["pipeline_tag"] == "image-to-video"
    assert hf_hub_download("org/sfd-tiny", RETINAFACE_FILENAME, cache_dir=cache)


def test_model_card_front_matter_is_valid_yaml_with_the_evaluation_metrics(exported):
    card = (exported / "README.md").read_text(encoding="utf-8")
    meta = front_matter(card)
    assert meta["license"] == "cc-by-nc-4.0"
    assert meta["pipeline_tag"] == "image-to-video" and meta["library_name"] == "sfd"
    assert meta["datasets"] == ["voxceleb2", "own-clips"]
    assert "face-animation" in meta["tags"]
    (entry,) = meta["model-index"]
    assert entry["name"] == "sfd-tiny"
    (result,) = entry["results"]
    assert result["task"]["type"] == "image-to-video" and result["dataset"]["split"] == "test"
    reported = {m["type"]: m["value"] for m in result["metrics"]}
    expected = evaluation_results()
    wanted = {c.key: expected[c.section][c.key]["value"] for c in COLUMNS if expected[c.section][c.key]["value"]}
    assert reported == wanted  # the same numbers, and no number for LPIPS, which was not computed
    for section in ("## Model description", "## Training data", "## Intended use", "## Limitations",
                    "## Misuse, consent and deepfakes", "## Evaluation", "## How to use"):
        assert section in card
    assert "consent" in card and "SFDPipeline.from_pretrained(" in card
    assert "| SFD (tiny) | 0.0512 | 22.50 | 0.713 | n/c [1] | 1.87 | 0.142 | n/c [1] | n/c [1] | n/c [1] | 0.830 | 3.40 |" in card
    assert "CC BY 4.0" in card and "own-clips**: CC0-1.0" in card  # the datasets' licences
    assert "| parameters | 1.7 M |" in card


def test_export_pushes_with_create_repo_and_upload_folder(checkpoint, tmp_path):
    """The Hub cannot be reached here: a fake HfApi records the two calls that `--push` makes."""

    class FakeHfApi:
        def __init__(self):
            self.calls = []

        def create_repo(self, **kwargs):
            self.calls.append(("create_repo", kwargs))

        def upload_folder(self, **kwargs):
            self.calls.append(("upload_folder", kwargs))
            return "https://huggingface.co/org/sfd-tiny/commit/abc"

    api = FakeHfApi()
    out = export(checkpoint, tmp_path / "release", push="org/sfd-tiny", private=True, api=api, fp16=False)
    (create, kwargs), (upload, upload_kwargs) = api.calls
    assert create == "create_repo" and kwargs == {"repo_id": "org/sfd-tiny", "repo_type": "model",
                                                  "private": True, "exist_ok": True}
    assert upload == "upload_folder" and upload_kwargs["repo_id"] == "org/sfd-tiny"
    assert upload_kwargs["folder_path"] == str(out) and upload_kwargs["repo_type"] == "model"
    card = (out / "README.md").read_text(encoding="utf-8")
    assert 'SFDPipeline.from_pretrained("org/sfd-tiny")' in card
    assert "model-index" not in front_matter(card) and "No evaluation results" in card
    assert not (out / "diffusion_pytorch_model.fp16.safetensors").exists()
    assert push_to_hub(out, "org/x", api=FakeHfApi()).endswith("/commit/abc")

    class UnreachableHfApi(FakeHfApi):
        def create_repo(self, **kwargs):
            raise OSError("no network")

    with pytest.raises(SFDError, match="was written, but uploading it to org/sfd-tiny failed: OSError"):
        export(checkpoint, tmp_path / "kept", push="org/sfd-tiny", api=UnreachableHfApi(), fp16=False)
    assert (tmp_path / "kept" / "config.json").is_file()  # ready for a retry


def test_export_refuses_bad_inputs_and_leaves_nothing_behind(checkpoint, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "file.txt").write_text("keep me")
    with pytest.raises(SFDError, match="not empty"):
        export(checkpoint, taken)
    assert (taken / "file.txt").read_text() == "keep me"
    (tmp_path / "model.pth").write_bytes(b"not really")
    with pytest.raises(WeightsError, match="convert_retinaface"):
        export(checkpoint, tmp_path / "a", detector_weights=tmp_path / "model.pth")
    (tmp_path / "other.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        export(checkpoint, tmp_path / "b", detector_weights=tmp_path / "other.safetensors")
    (tmp_path / "eval.json").write_text("[1, 2]")
    with pytest.raises(SFDError, match="JSON object"):
        export(checkpoint, tmp_path / "c", eval_json=tmp_path / "eval.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json", "model.pth", "other.safetensors", "taken"]


def test_export_checks_the_detector_file_against_retinaface(checkpoint, detector_weights, tmp_path):
    save_file({"x": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(WeightsError, match="RetinaFace"):
        export(checkpoint, tmp_path / "out", detector_weights=tmp_path / "other.safetensors")
    assert not (tmp_path / "out").exists()


def test_cli_exports_and_reports_errors(checkpoint, tmp_path, capsys):
    assert main([str(checkpoint), str(tmp_path / "out"), "--datasets", "celebv-hq", "--license", "mit",
                 "--no-fp16"]) == 0
    assert "README.md" in capsys.readouterr().out
    meta = front_matter((tmp_path / "out" / "README.md").read_text(encoding="utf-8"))
    assert meta["license"] == "mit" and meta["datasets"] == ["celebv-hq"]
    assert main([str(tmp_path / "absent"), str(tmp_path / "out2")]) == 2
    assert "error:" in capsys.readouterr().err


def test_notes_about_the_weights_go_near_the_top_of_the_card(checkpoint, tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("A small demo model, trained for 500 steps on 13 clips.\n")
    out = export(checkpoint, tmp_path / "out", notes=notes)
    card = (out / "README.md").read_text(encoding="utf-8")
    about = card.index("## About these weights")
    assert about < card.index("## Model description")
    assert "trained for 500 steps on 13 clips" in card[about:card.index("## Model description")]
    assert "## About these weights" not in (export(checkpoint, tmp_path / "plain").joinpath("README.md")).read_text()
