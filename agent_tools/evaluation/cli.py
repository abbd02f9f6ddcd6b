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
    max_turns: int = typer.Option(8, "--max-turns", min=1, help="The policy's turn budget."),
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

    from agent_tools.errors import VideoseekError

    from .runner import run_eval

    err = Console(stderr=True)
    try:
        result = run_eval(
            annotation, videos, out, fmt=fmt, encoder=encoder,
            methods=[m.strip() for m in methods.split(",") if m.strip()], policy=policy, policy_model=model,
            max_turns=max_turns, k=k, cache_dir=cache_dir, device=device, limit=limit, threshold=threshold,
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
