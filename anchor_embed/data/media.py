"""Frames from image files and videos: a missing or corrupt file is a missing frame, never a crash."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".flv", ".ts", ".m4v"}


@dataclass
class MediaReport:
    """Counts of frames read and missing, with a few examples of why."""

    frames_ok: int = 0
    missing: int = 0
    corrupt: int = 0
    outside: int = 0
    examples: list[str] = field(default_factory=list)

    def fail(self, kind: str, path: Path | str, why: str) -> None:
        """Count a frame that cannot be used: kind 'missing', 'corrupt' or 'outside' (the media root)."""
        if kind == "missing":
            self.missing += 1
        elif kind == "outside":
            self.outside += 1
        else:
            self.corrupt += 1
        if len(self.examples) < 5:
            self.examples.append(f"{path}: {why}")

    def lines(self) -> list[str]:
        """The frames that could not be used, by path and why (the first five), for the status lines."""
        left = self.missing + self.corrupt + self.outside - len(self.examples)
        return [f"  frame not read: {e}" for e in self.examples] + ([f"  ... and {left} more"] if left > 0 else [])

    def to_dict(self) -> dict:
        return {"frames_ok": self.frames_ok, "frames_missing": self.missing, "frames_corrupt": self.corrupt,
                "frames_outside_root": self.outside, "examples": self.examples}


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def sample_positions(n_total: int, k: int) -> list[int]:
    """k frame indices spread evenly over n_total (centre of each of k equal spans)."""
    if n_total <= 0 or k <= 0:
        return []
    k = min(k, n_total)
    return [int((i + 0.5) * n_total / k) for i in range(k)]


def load_image(path: Path, report: MediaReport) -> Image.Image | None:
    """An RGB image, or None (counted) when the file is missing or cannot be decoded."""
    if not path.is_file():
        report.fail("missing", path, "no such file")
        return None
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except Exception as exc:
        report.fail("corrupt", path, f"cannot decode image ({type(exc).__name__})")
        return None


def load_video_frames(path: Path, k: int, report: MediaReport) -> list[Image.Image | None]:
    """k frames sampled evenly from a video with PyAV; k Nones (counted once each) when it cannot be read."""
    if not path.is_file():
        report.fail("missing", path, "no such file")
        return [None] * k
    try:
        import av

        with av.open(str(path)) as container:
            n_total = container.streams.video[0].frames
        if n_total <= 0:  # container does not say: count by decoding once
            with av.open(str(path)) as container:
                n_total = sum(1 for _ in container.decode(video=0))
        wanted = sample_positions(n_total, k)
        picked: dict[int, Image.Image] = {}
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i in wanted:
                    picked[i] = frame.to_image().convert("RGB")
                if i >= wanted[-1] if wanted else True:
                    break
    except Exception as exc:
        report.fail("corrupt", path, f"cannot decode video ({type(exc).__name__})")
        return [None] * k
    if not picked:
        report.fail("corrupt", path, "video has no frames")
        return [None] * k
    frames = [picked.get(i) for i in wanted]
    return frames + [None] * (k - len(frames))


def inside_root(rel_path: str, media_root: Path) -> Path | None:
    """The file a frame path names, or None when it leads outside the media root (by '..', an absolute path
    or a symlink): records must not make the job read files the operator did not hand over."""
    root = Path(media_root).resolve()
    try:
        p = (root / rel_path).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None
    return p if p.is_relative_to(root) else None


def frame_problem(rel_path: str, media_root: Path) -> str | None:
    """Why a frame path cannot be read ('not found under ROOT', 'leads outside the media root ROOT'), or None
    when it names a file under the root (whether that file decodes shows only when it is read)."""
    p = inside_root(rel_path, media_root)
    if p is None:
        return f"leads outside the media root {media_root}"
    try:
        found = p.is_file()
    except OSError:
        found = False
    return None if found else f"not found under {media_root}"


def say_if_under_other_root(frames: list[str], media_root: Path, model_root: str | Path | None) -> None:
    """One line when frames missing under `media_root` exist under the model's media root (the one its features
    were built from, the server's default): a relative path meant for that root, read from the records' folder,
    dropped the frame and changed the vector without a word beyond 'frame not read'."""
    if not model_root or Path(model_root).resolve() == Path(media_root).resolve():
        return
    there = [f for f in dict.fromkeys(frames) if frame_problem(f, media_root) and not frame_problem(f, Path(model_root))]
    if there:
        from anchor_embed.progress import say

        say(f"[yellow]frames[/]: {len(there)} frame(s) not under {Path(media_root).resolve()} are under the model's "
            f"media root {model_root} (e.g. {there[0]}): give that media root (--media-root, media_root= in Python) "
            "to read them")


def frame_keys(rel_path: str, media_root: Path, video_frames: int, report: MediaReport | None = None) -> list[str]:
    """Cache keys of the frames a path yields, by the file's content: its digest for an image, 'digest#i' for
    each video frame (a file replaced by another, even of the same size, is a new frame; the same file under
    two paths is one). A missing file keeps a 'missing:path' key (counted when it is read); a path outside the
    media root yields none (counted in `report`)."""
    from anchor_embed.fingerprint import file_digest

    p = inside_root(rel_path, media_root)
    if p is None:
        if report is not None:
            report.fail("outside", rel_path, f"outside the media root {media_root}: refused")
        return []
    try:
        key = file_digest(p) if p.is_file() else f"missing:{rel_path}"
    except OSError:
        key = f"missing:{rel_path}"
    if is_video(rel_path):
        return [f"{key}#{i}" for i in range(video_frames)]
    return [key]
