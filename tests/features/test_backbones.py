import json

import numpy as np
import pytest
from PIL import Image

from anchor_embed.errors import AnchorEmbedError
from anchor_embed.features.backbones import load_image_backbone, load_text_backbone


def test_use_is_multilingual():
    m = load_text_backbone("use")
    e = m.encode(["唱歌主播，每晚点歌", "a singer taking song requests every night", "川菜麻辣，美食分享"])
    assert e.shape == (3, 512) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-4)
    assert e[0] @ e[1] > e[0] @ e[2]   # Chinese singing is nearer English singing than Chinese cooking


def test_minilm_bundled():
    m = load_text_backbone("minilm")
    e = m.encode(["hello", "world"])
    assert e.shape == (2, 384)


def test_unknown_text_backbone_is_clear():
    with pytest.raises(AnchorEmbedError, match="text backbone '/no/such/model': cannot load"):
        load_text_backbone("/no/such/model")


def test_a_hub_name_offline_fails_at_once(monkeypatch, capsys):
    """A hub name neither local nor cached, with the hub unreachable: one error saying so, not a minute of the
    hub client's retries and warnings (HF_ENDPOINT at a port nothing listens on stands for no network)."""
    monkeypatch.setenv("HF_ENDPOINT", "https://localhost.invalid")
    with pytest.raises(AnchorEmbedError, match="text backbone 'nosuchmodel': cannot load .*localhost.invalid is "
                                               "unreachable"):
        load_text_backbone("nosuchmodel")
    assert "Retrying" not in capsys.readouterr().err


def test_efficientnet_lite0():
    m = load_image_backbone("efficientnet-lite0")
    e = m.encode([Image.new("RGB", (90, 120), "red"), Image.new("RGB", (64, 64), "blue")])
    assert e.shape == (2, 1280) and abs(e[0] @ e[1]) < 0.999


def test_tiny_open_clip_saved_and_loaded_by_path(tmp_path):
    import open_clip
    import torch

    cfg = {"embed_dim": 24,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
           "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 16, "heads": 1, "layers": 1}}
    cfg_path = tmp_path / "tiny-clip.json"
    cfg_path.write_text(json.dumps(cfg))
    open_clip.add_model_config(cfg_path)
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip", pretrained=None)
    torch.save(model.state_dict(), tmp_path / "tiny.pt")
    backbone = load_image_backbone(f"open_clip:{cfg_path}:{tmp_path / 'tiny.pt'}")
    images = [Image.new("RGB", (40, 40), c) for c in ("red", "green")]
    got = backbone.encode(images)
    assert got.shape == (2, 24)
    with torch.inference_mode():
        want = model.eval().encode_image(torch.stack([backbone.preprocess(im) for im in images])).numpy()
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-5)   # the saved weights, not fresh random ones
    with pytest.raises(AnchorEmbedError, match="checkpoint .* not found"):
        load_image_backbone(f"open_clip:{cfg_path}:{tmp_path / 'missing.pt'}")
