"""``videoseek eval``: run baselines (and a policy) over a benchmark file, write the report.

- :func:`eval_command` - the command.
- :func:`register` - attach it to the ``videoseek`` Typer app (called by ``agent_tools.cli``).

Usage::

    videoseek eval lvb_val.json --videos LongVideoBench/videos --out runs/lvb --encoder siglip-so400m-384
    videoseek eval lv_haystack.json --videos videos/ --out runs/hay --policy http://localhost:8000/v1 --model qwen
    videoseek eval world/test/tvr.jsonl --videos world/videos --out runs/world-tvr --encoder world-tiny
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["eval_command", "register"]


def eval_command(
    annotation: Path = typer.Argument(..., help="Benchmark annotation file (JSON, JSONL, TXT or parquet)."),
    videos: Path = typer.Option(..., "--videos", help="Folder holding the benchmark's videos."),
    out: Path = typer.Option(Path("eval_out"), "--out", help="Output folder (predictions.jsonl, metrics.json, report.md, *.png)."),
    fmt: Optional[str] = typer.Option(
        None, "--format", help="longvideobench, videomme, lv_haystack, open_qa, tvr, charades_sta, activitynet_captions, didemo (default: detect)."
    ),
    methods: str = typer.Option("uniform,topk,dpp,retrieval", "--methods", help="Comma-separated baselines ('' for none); dpp-legacy is also available."),
    policy: Optional[str] = typer.Option(None, "--policy", help="Policy checkpoint dir or OpenAI-compatible URL (vLLM)."),
    model: Optional[str] = typer.Option(None, "--model", help="Served model name (URL policies)."),
    max_turns: Optional[int] = typer.Option(None, "--max-turns", min=1, help="The policy's turn budget (default: as trained, else 8)."),
    observation: Optional[str] = typer.Option(
        None, "--observation", help="images or text: how frames reach the policy (default: as its manifest says; text for text-only models)."
    ),
    vocabulary: Optional[str] = typer.Option(
        None, "--vocabulary", help="Text observations: zero-shot tag vocabulary, a file with one tag per line, or 'world' (the synthetic world's captions). Default: the manifest's."
    ),
    tags: Optional[int] = typer.Option(None, "--tags", min=1, help="Text observations: tags per frame (default: as trained, else 1)."),
    k: int = typer.Option(8, "-k", "--frames", min=1, help="Frames per baseline selection."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder registry name (default: VIDEOSEEK_ENCODER)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Frame-embedding cache directory."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N items."),
    threshold: float = typer.Option(5.0, "--threshold", min=0.0, help="LV-Haystack temporal threshold (seconds)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars."),
) -> None:
    """Evaluate baselines (and a policy) on a benchmark; resumable (reruns skip finished items)."""
    from rich.console import Console

    from agent_tools.agent_cli import read_vocabulary
    from agent_tools.errors import VideoseekError

    from .runner import run_eval

    err = Console(stderr=True)
    try:
        if observation is not None and observation not in ("images", "text"):
            from agent_tools.errors import InvalidArgumentError

            raise InvalidArgumentError(f"--observation must be 'images' or 'text', got {observation!r}")
        vocab = read_vocabulary(vocabulary) if vocabulary is not None else None
        result = run_eval(
            annotation, videos, out, fmt=fmt, encoder=encoder,
            methods=[m.strip() for m in methods.split(",") if m.strip()], policy=policy, policy_model=model,
            max_turns=max_turns, observation=observation, vocabulary=vocab, tag_top_k=tags, k=k, cache_dir=cache_dir, device=device, limit=limit, threshold=threshold,
            progress=not no_progress,
        )
    except VideoseekError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    typer.echo(result["files"]["markdown"].read_text())
    typer.echo(f"wrote {result['files']['json']}, {result['files']['markdown']} and {len(result['files']['plots'])} plot(s) to {out}")


def register(app: typer.Typer) -> None:
    """Add ``eval`` to the ``videoseek`` app."""
    app.command("eval")(eval_command)
