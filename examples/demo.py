"""``make demo``: a temporal search end to end, with contact sheets of the chosen frames.

1. Makes a 2-minute synthetic video (or uses ``--video``).
2. Loads the configured encoder (``VIDEOSEEK_ENCODER``, default ``siglip-b16``). When its
   weights are not on this machine the demo says so and uses the *untrained* test encoder
   ``tiny-untrained`` instead; it prints which encoder ran and whether it is trained.
3. Embeds the video at 2 fps (progress bar), then runs
   - an image query (a frame taken from the video: the search must find its moment), and
   - a text query (meaningful only with a trained encoder),
   and writes a contact sheet for each into ``demo_out/``.
4. Corpus search: indexes three short synthetic videos plus the sample into ``demo_out/index``
   and asks which video and which moment match a frame taken from one of them.

Run: ``make demo`` or ``python examples/demo.py [--video FILE] [--query TEXT] [--encoder NAME]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import agent_tools._tvshim  # noqa: F401
from rich.console import Console

from agent_tools.cli import progress_bar
from agent_tools.config import get_settings
from agent_tools.encoders import get_spec, load_encoder, weights_status
from agent_tools.errors import VideoseekError
from agent_tools.render import contact_sheet
from agent_tools.synthetic import write_indexed_video
from agent_tools.temporal import TemporalSearcher

console = Console()


def pick_encoder(name: str):
    spec = get_spec(name)
    ok, detail = weights_status(spec)
    if ok:
        return load_encoder(name), None
    reason = f"weights for {name!r} are not on this machine ({detail})"
    return load_encoder("tiny-untrained"), reason


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, help="Use this video instead of a synthetic one.")
    ap.add_argument("--query", default="a red ring pattern", help="Text query.")
    ap.add_argument("--encoder", default=None, help="Encoder name (default: VIDEOSEEK_ENCODER or siglip-b16).")
    ap.add_argument("--out", type=Path, default=Path("demo_out"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    settings = get_settings(encoder=args.encoder, cache_dir=args.out / "cache")

    video = args.video
    if video is None:
        video = args.out / "sample_2min.mp4"
        if not video.exists():
            console.print(f"making a 2-minute synthetic video: {video}")
            write_indexed_video(video, duration=120, fps=25, size=(320, 240), scene_seconds=10, seed=7)

    encoder, fallback = pick_encoder(settings.encoder)
    if fallback:
        console.print(f"[yellow]{fallback}[/]")
        console.print("[yellow]using the UNTRAINED test encoder 'tiny-untrained' instead: image queries work, text scores are not semantic[/]")
    console.print(f"encoder: [bold]{encoder.name}[/] ({'trained' if encoder.trained else 'UNTRAINED, random weights'})")

    searcher = TemporalSearcher(encoder, settings=settings)
    try:
        info = searcher.info(video)
        console.print(f"video: {video} ({info.duration:.1f}s, {info.fps:g} fps, {info.width}x{info.height})")
        with progress_bar(f"embedding at {settings.sample_fps:g} fps", enabled=not searcher.store.has(video)) as cb:
            searcher.embeddings(video, progress=cb)

        probe_t = round(info.duration * 0.62, 1)
        probe = searcher.frames(video, [probe_t])[0]
        by_image = searcher.seek(video, probe, num_frames=8, with_images=True)
        best = max(by_image.frames, key=lambda h: h.score)
        console.print(f"image query (frame at {probe_t:.1f}s) → best match at {best.timestamp:.1f}s, chosen: {by_image.timestamps}")
        sheet = contact_sheet(
            by_image.images, by_image.timestamps, title=f"query: frame at {probe_t:.1f}s | {encoder.name}",
            captions=[f"{h.score:.3f}" for h in by_image.frames],
        )
        sheet.save(args.out / "sheet_image_query.png")

        by_text = searcher.seek(video, args.query, start_time=0, end_time=info.duration, num_frames=8, with_images=True)
        console.print(f"text query {args.query!r} → {by_text.timestamps}")
        sheet = contact_sheet(
            by_text.images, by_text.timestamps, title=f"query: {args.query} | {encoder.name}" + ("" if encoder.trained else " (UNTRAINED)"),
            captions=[f"{h.score:.3f}" for h in by_text.frames],
        )
        sheet.save(args.out / "sheet_text_query.png")
        (args.out / "result_text_query.json").write_text(by_text.model_dump_json(indent=2))
    except VideoseekError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    ok, how = image_match_ok(searcher, video, probe, probe_t, best.timestamp)
    console.print(f"contact sheets: {args.out / 'sheet_image_query.png'}, {args.out / 'sheet_text_query.png'}")
    console.print(("[green]" if ok else "[red]") + f"image query found its moment: {ok} ({how})")
    corpus_ok = corpus_demo(args.out, encoder, settings, video)
    return 0 if ok and corpus_ok else 1


def image_match_ok(searcher, video: Path, probe, probe_t: float, found_t: float, tol_s: float = 0.5,
                   max_pixel_diff: float = 3.0) -> tuple[bool, str]:
    """Did the image query find the probe's moment?

    Right when the best frame is within ``tol_s`` of the probe's time, and also when it is elsewhere
    but shows the same picture (a static stretch: slides, a paused shot, black frames): then the probe
    has several equally right answers. "Same picture" is judged on pixels (mean absolute difference
    of at most ``max_pixel_diff`` on 0-255), not on the encoder, so an untrained encoder cannot pass it.
    """
    import numpy as np

    if abs(found_t - probe_t) <= tol_s:
        return True, f"{abs(found_t - probe_t):.2f}s from the probe"
    found = searcher.frames(video, [found_t])[0]
    a = np.asarray(probe.convert("RGB"), dtype=np.float32)
    b = np.asarray(found.convert("RGB").resize(probe.size), dtype=np.float32)
    diff = float(np.abs(a - b).mean())
    if diff <= max_pixel_diff:
        return True, f"{found_t:.1f}s shows the same picture as {probe_t:.1f}s (mean pixel difference {diff:.2f})"
    return False, f"{found_t:.1f}s is {abs(found_t - probe_t):.1f}s away and looks different (mean pixel difference {diff:.1f})"


def corpus_demo(out: Path, encoder, settings, sample: Path) -> bool:
    """Index a small corpus and find the video and moment of a frame taken from one video."""
    from agent_tools.corpus import CorpusIndex, MomentSearcher

    videos = [sample]
    for seed in (11, 12, 13):
        path = out / f"corpus_{seed}.mp4"
        if not path.exists():
            write_indexed_video(path, duration=40, fps=25, size=(320, 240), scene_seconds=8, seed=seed)
        videos.append(path)
    index = CorpusIndex.open(out / "index", encoder, store=TemporalSearcher(encoder, settings=settings).store)
    with progress_bar("indexing the demo corpus") as cb:

        def on_event(ev) -> None:
            if ev.stage in ("done", "failed"):
                cb(ev.position + 1, ev.total)  # position counts from 0

        report = index.update(videos, progress=on_event)
    console.print(f"corpus index: {report.model_dump_json()}")
    target, t = videos[2], 21.0
    probe = TemporalSearcher(encoder, settings=settings).frames(target, [t])[0]
    result = MomentSearcher(index, encoder).search(probe, top_k=3)
    for m in result.moments:
        console.print(f"  {Path(m.path).name}: {m.start:.1f}-{m.end:.1f}s (score {m.score:.3f})")
    top = result.moments[0] if result.moments else None
    ok = top is not None and Path(top.path).name == target.name and top.start <= t <= top.end
    console.print(("[green]" if ok else "[red]") + f"corpus query found {target.name} around {t:.0f}s: {ok}")
    return ok


if __name__ == "__main__":
    sys.exit(main())
