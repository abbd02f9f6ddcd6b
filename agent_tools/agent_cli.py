"""``videoseek ask``: run a search policy over one video and show every turn.

    videoseek ask VIDEO "question" --policy DIR|URL [--encoder NAME] [--max-turns N]
                  [--max-new-tokens N] [--preview-frames N] [--verify] [--force-answer]
                  [--model NAME] [--json] [--observation images|text] [--vocabulary FILE|world]

- ``--policy`` is a policy checkpoint directory (``save_pretrained`` files +
  ``videoseek_policy.json``) or the base URL of an OpenAI-compatible server (``vllm serve``).
  There is no default policy.
- The encoder is ``--encoder``, else the one the manifest names, else ``VIDEOSEEK_ENCODER``.
- The turn budget, tokens per turn and preview frames are the flags, else the values the
  policy was trained with (its manifest's ``max_turns``, ``max_new_tokens``,
  ``preview_frames``), else 8 turns, the policy's default tokens and 8 preview frames
  (:func:`episode_settings`).
- Frames reach the policy as its manifest says: images, or for a text-only policy
  (``observation: "text"``) text lines tagged over its ``tag_vocabulary`` by the encoder;
  ``--observation text`` / ``--vocabulary`` set that for a bare URL (:func:`read_vocabulary`).
- Each turn prints its thought, the searched window, query and returned timestamps, or the
  answer; ``--json`` prints the whole :class:`~agent_tools.graphs.Rollout` instead.

Names: :func:`register` (adds ``ask`` to a Typer app), :func:`ask`, :func:`format_turn` (the
lines printed for one turn), :func:`episode_settings`, :func:`read_vocabulary`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from agent_tools.errors import VideoseekError

__all__ = ["register", "ask", "format_turn", "episode_settings", "read_vocabulary"]

DEFAULT_MAX_TURNS = 8
DEFAULT_PREVIEW_FRAMES = 8


def episode_settings(
    manifest,
    *,
    max_turns: Optional[int] = None,
    max_new_tokens: Optional[int] = None,
    preview_frames: Optional[int] = None,
) -> dict:
    """Turn budget, tokens per turn and preview frames for one episode.

    Args:
        manifest: The policy's :class:`~agent_tools.policies.manifest.PolicyManifest` (or None).
        max_turns: ``--max-turns`` (wins when given).
        max_new_tokens: ``--max-new-tokens`` (wins when given).
        preview_frames: ``--preview-frames`` (wins when given).

    Returns:
        ``{"max_turns", "max_new_tokens", "preview_frames"}``; ``max_new_tokens`` None means
        the policy's own default (which a transformers checkpoint takes from its manifest).
    """

    def pick(flag, key, default):
        if flag is not None:
            return flag
        value = getattr(manifest, key, None) if manifest is not None else None
        return value if value is not None else default

    return {
        "max_turns": pick(max_turns, "max_turns", DEFAULT_MAX_TURNS),
        "max_new_tokens": pick(max_new_tokens, "max_new_tokens", None),
        "preview_frames": pick(preview_frames, "preview_frames", DEFAULT_PREVIEW_FRAMES),
    }


def read_vocabulary(spec: str) -> list[str]:
    """``world`` (the synthetic world's captions) or a file holding one tag per line.

    Raises:
        InvalidArgumentError: If the file is missing or holds no tag.
    """
    from agent_tools.errors import InvalidArgumentError

    if spec == "world":
        from agent_tools.observations import world_vocabulary

        return world_vocabulary()
    path = Path(spec)
    if not path.is_file():
        raise InvalidArgumentError(f"--vocabulary {spec!r}: no such file; give a file with one tag per line, or 'world'")
    tags = list(dict.fromkeys(line.strip() for line in path.read_text().splitlines() if line.strip()))
    if not tags:
        raise InvalidArgumentError(f"--vocabulary {spec!r} holds no tag; write one tag per line")
    return tags


def format_turn(turn) -> list[str]:
    """Human-readable lines for one :class:`~agent_tools.graphs.Turn`."""
    from agent_tools.protocol import format_timestamps

    lines = [f"turn {turn.index}"]
    if turn.think:
        thought = " ".join(turn.think.split())
        lines.append(f"  thought: {thought[:300]}{'…' if len(thought) > 300 else ''}")
    if turn.action == "tool_call":
        args = turn.arguments
        lines.append(f"  search:  {args.get('query', '')!r}")
        if turn.window is not None:
            lines.append(f"  window:  {turn.window[0]:.1f}s - {turn.window[1]:.1f}s")
        if turn.timestamps:
            lines.append(f"  frames:  {format_timestamps(turn.timestamps)}")
        if turn.error:
            lines.append(f"  error:   {turn.error}")
    elif turn.action == "answer":
        lines.append(f"  answer:  {turn.answer}")
    else:
        raw = " ".join(turn.text.split())
        lines.append(f"  invalid: {turn.error} -- reply was {raw[:120]!r}")
    return lines


def ask(
    video: Path = typer.Argument(..., help="Video file."),
    question: str = typer.Argument(..., help="Question about the video."),
    policy: str = typer.Option(
        ..., "--policy", help="Policy directory (with videoseek_policy.json) or server URL."
    ),
    model: Optional[str] = typer.Option(None, "--model", help="Served model name (URL policies)."),
    encoder: Optional[str] = typer.Option(
        None, "--encoder", help="Encoder (default: the policy manifest's)."
    ),
    max_turns: Optional[int] = typer.Option(
        None, "--max-turns", min=1, help="Turn budget, searches included (default: as trained, else 8)."
    ),
    max_new_tokens: Optional[int] = typer.Option(
        None, "--max-new-tokens", min=1, help="Tokens per turn (default: as trained)."
    ),
    preview_frames: Optional[int] = typer.Option(
        None, "--preview-frames", min=0, help="Frames in the first turn (default: as trained, else 8)."
    ),
    verify: bool = typer.Option(False, "--verify", help="Re-answer from the searched frames alone."),
    force_answer: bool = typer.Option(
        False, "--force-answer", help="Ask for an answer when the budget runs out."
    ),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Frame-embedding cache directory."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N."),
    json_out: bool = typer.Option(False, "--json", help="Print the rollout as JSON."),
    speech: bool = typer.Option(
        False, "--speech", help="Let the policy also read what is said near the frames it sees (transcribes once)."
    ),
    observation: Optional[str] = typer.Option(
        None, "--observation", help="images or text: how frames reach the policy (default: as its manifest says; text for text-only models)."
    ),
    vocabulary: Optional[str] = typer.Option(
        None, "--vocabulary", help="Text observations: zero-shot tag vocabulary, a file with one tag per line, or 'world'. Default: the manifest's."
    ),
    tags: Optional[int] = typer.Option(None, "--tags", min=1, help="Text observations: tags per frame (default: as trained, else 1)."),
) -> None:
    """Answer a question about VIDEO with a search policy, printing each turn."""
    from rich.console import Console

    from agent_tools.graphs import AgentRunner, build_temporal_graph

    err = Console(stderr=True)
    try:
        if observation is not None and observation not in ("images", "text"):
            from agent_tools.errors import InvalidArgumentError

            raise InvalidArgumentError(f"--observation must be 'images' or 'text', got {observation!r}")
        agent, searcher = _load(policy, model, encoder, cache_dir, device, video, err, text_only=observation == "text")
        tagger = None
        if vocabulary is not None:
            from agent_tools.observations import EncoderTagger

            manifest = getattr(agent, "manifest", None)
            top_k = tags or (manifest.tag_top_k if manifest is not None else 1)
            tagger = EncoderTagger(searcher, read_vocabulary(vocabulary), top_k=top_k)
        episode = episode_settings(
            getattr(agent, "manifest", None),
            max_turns=max_turns,
            max_new_tokens=max_new_tokens,
            preview_frames=preview_frames,
        )
        hearing = None
        if speech:
            from agent_tools.config import get_settings
            from agent_tools.speech.searcher import SpeechSearcher

            hearing = SpeechSearcher.from_settings(get_settings(cache_dir=cache_dir, device=device))
        graph = build_temporal_graph(
            agent, searcher, verify=verify, force_answer=force_answer, speech=hearing,
            observation=observation, tagger=tagger, **episode,
        )
        runner = AgentRunner(graph, max_turns=episode["max_turns"])
        _print_events(runner.stream(question, str(video)), json_out)
    except VideoseekError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


def _load(policy_src, model, encoder, cache_dir, device, video, err, text_only=False):
    """The policy, and a ``TemporalSearcher`` over the right encoder with ``video`` embedded.

    Warns (on ``err``) about an untrained policy or encoder and an encoder the policy was not trained with.
    """
    from agent_tools.config import get_settings
    from agent_tools.encoders import load_encoder
    from agent_tools.policies import load_policy
    from agent_tools.temporal import TemporalSearcher

    policy = load_policy(policy_src, model=model, device=device or "auto", **({"text_only": True} if text_only else {}))
    manifest = policy.manifest
    if manifest is not None and not manifest.trained:
        err.print(
            f"[yellow]warning:[/] policy {policy.name!r} is UNTRAINED (random weights); its turns are noise",
            soft_wrap=True,
        )
    wanted = encoder or (manifest.encoder if manifest is not None else None)
    if encoder and manifest is not None and manifest.encoder and encoder != manifest.encoder:
        err.print(
            f"[yellow]warning:[/] the policy was trained with encoder {manifest.encoder!r}, not {encoder!r}",
            soft_wrap=True,
        )
    settings = get_settings(encoder=wanted, cache_dir=cache_dir, device=device)
    enc = load_encoder(settings.encoder, device=settings.device)
    if not getattr(enc, "trained", True):
        err.print(
            f"[yellow]warning:[/] encoder {enc.name!r} is untrained; search scores are not semantic",
            soft_wrap=True,
        )
    searcher = TemporalSearcher(enc, settings=settings)
    if not searcher.store.has(video):
        from agent_tools.cli import progress_bar

        with progress_bar(f"embedding {Path(video).name} at {settings.sample_fps:g} fps") as cb:
            searcher.embeddings(video, progress=cb)
    return policy, searcher


def _print_events(events, json_out: bool) -> None:
    """Each turn as it completes, then the answer (or, with ``json_out``, only the rollout as JSON)."""
    from agent_tools.graphs import Rollout

    out = sys.stdout
    for event in events:
        if isinstance(event, Rollout):
            if json_out:
                out.write(json.dumps(event.to_dict(), indent=2, default=str) + "\n")
                return
            out.write(f"answer: {event.answer if event.answer is not None else '(none)'}  [{event.status}]\n")
            if event.verification is not None:
                v = event.verification
                verdict = "sufficient" if v["sufficient"] else "INSUFFICIENT"
                out.write(
                    f"verification: {verdict} evidence ({v['num_frames']} frames); "
                    f"re-answer: {v['answer'] if v['answer'] is not None else '(none)'}\n"
                )
        elif not json_out:
            out.write("\n".join(format_turn(event)) + "\n")
            out.flush()


def register(app: typer.Typer) -> None:
    """Add the ``ask`` command to a Typer app."""
    app.command("ask")(ask)
