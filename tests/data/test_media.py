import numpy as np
from PIL import Image

from anchor_embed.data.media import MediaReport, load_image, load_video_frames, sample_positions


def _video(path, n=12):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=12)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(n):
            img = np.full((48, 64, 3), i * 20, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def test_images_and_failures(tmp_path):
    Image.new("RGB", (10, 10), "red").save(tmp_path / "a.webp")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    rep = MediaReport()
    assert load_image(tmp_path / "a.webp", rep).size == (10, 10)
    assert load_image(tmp_path / "bad.jpg", rep) is None
    assert load_image(tmp_path / "gone.png", rep) is None
    assert (rep.missing, rep.corrupt) == (1, 1) and len(rep.examples) == 2


def test_video_frames_sampled_evenly(tmp_path):
    rep = MediaReport()
    frames = load_video_frames(_video(tmp_path / "v.mp4"), 3, rep)
    assert len(frames) == 3 and all(f is not None for f in frames)
    brightness = [np.asarray(f).mean() for f in frames]
    assert brightness == sorted(brightness) and brightness[0] < brightness[-1]
    assert sample_positions(12, 3) == [2, 6, 10]
    (tmp_path / "bad.mp4").write_bytes(b"garbage")
    assert load_video_frames(tmp_path / "bad.mp4", 2, rep) == [None, None]
    assert rep.corrupt == 1


def test_frames_outside_the_media_root_are_refused_and_counted(tmp_path):
    """'..', an absolute path and a symlink out of the root all name files the records may not reach."""
    from anchor_embed.data.media import frame_keys

    root, outside = tmp_path / "root", tmp_path / "secret"
    root.mkdir()
    outside.mkdir()
    Image.new("RGB", (8, 8), "red").save(outside / "x.png")
    Image.new("RGB", (8, 8), "blue").save(root / "ok.png")
    (root / "link.png").symlink_to(outside / "x.png")
    (root / "sub").mkdir()
    (root / "sub" / "up").symlink_to(outside, target_is_directory=True)
    rep = MediaReport()
    assert frame_keys("ok.png", root, 4, rep) and rep.outside == 0
    for bad in ("../secret/x.png", str(outside / "x.png"), "/etc/passwd", "link.png", "sub/up/x.png",
                "sub/../../secret/x.png"):
        assert frame_keys(bad, root, 4, rep) == [], bad
    assert rep.outside == 6 and rep.to_dict()["frames_outside_root"] == 6
    assert frame_keys("sub/../ok.png", root, 4, rep)          # '..' that stays inside is fine
