"""The text learning proof's tasks: the synthetic world, its colour questions, demonstrations and the held-out evaluation.

Split out of ``bench_learning_text.py``, which re-exports every name here and keeps the GRPO-CSV
phase, the encoder setup, the plots and ``main``; ``eval_learning_checkpoints.py`` and
``bench_batched_eval.py`` use these functions through it.

Map:

- World and questions: :func:`build_world` (a small world under ``work/world``, reused),
  :func:`load_questions` (a split's colour questions, open-ended or lettered, with the event
  window, search target and ``shape_shared`` flag), :func:`split_by_video` (SFT's videos, then
  GRPO-CSV's), :func:`write_open_colour_qa` (the questions as a ``videoseek eval`` open-QA file).
- Demonstrations: :func:`expert_turns` (search for the asked object, then answer),
  :func:`expert_trajectories` (that search replayed through the graph, then the answer read from
  the tool's best line; kept only when the line names the answer's colour), :func:`_answerable`.
- Evaluation: :func:`evaluate` (the text-mode graph on each question: valid-turn rate, accuracy,
  answered rate, search precision), :func:`accuracy_split` (accuracy split by ``shape_shared``),
  :func:`demonstrated_protocol` (the demonstrations' protocol with no policy: a reference),
  :func:`_correct` (the held-out answer rule).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

__all__ = ["accuracy_split", "build_world", "demonstrated_protocol", "evaluate", "expert_trajectories", "expert_turns",
           "load_questions", "split_by_video", "write_open_colour_qa", "_answerable", "_correct"]

_LETTERS = "ABCDE"


def build_world(work: Path, *, n_train: int, n_test: int, seed: int = 0) -> Path:
    """A small world (minute-long videos, no needle) under ``work/world``; reused if present."""
    from agent_tools.world import WorldConfig, make_world

    out = work / "world"
    if not (out / "world.json").is_file():
        cfg = WorldConfig(seed=seed, n_train=n_train, n_test=n_test, min_duration=60, max_duration=80,
                          needle_videos=0, events_per_minute=3.0, size=128)
        make_world(out, cfg)
    have = json.loads((out / "world.json").read_text())["config"]
    if (have["n_train"], have["n_test"], have["seed"]) != (n_train, n_test, seed):
        raise SystemExit(f"{out} holds a world of {have['n_train']} train / {have['n_test']} test videos (seed "
                         f"{have['seed']}), not {n_train} / {n_test} (seed {seed}): give another --work folder")
    return out


def split_by_video(questions: list[dict[str, Any]], n_first: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The questions of the first ``n_first`` videos that have questions (by path), and the others'.

    SFT learns from the first videos' questions and GRPO-CSV trains on the others': prompts the
    SFT policy has not memorised, whose rollouts still differ (TimeSearch-R's RL data is likewise
    apart from its SFT data).
    """
    videos = sorted({q["video"] for q in questions})
    first = set(videos[:n_first])
    return [q for q in questions if q["video"] in first], [q for q in questions if q["video"] not in first]


def load_questions(world: Path, split: str, limit: int | None = None, *, answers: str = "word") -> list[dict[str, Any]]:
    """The split's colour questions: question, video path, answer, problem type, event window, search target.

    ``shape_shared`` marks a question whose video holds another event of the asked shape: one
    frame's tag then shows a shape of the right kind that may be the other event's (only the
    action, which one frame cannot show, tells them apart).

    ``answers="letter"``: the multiple-choice item as written (lettered options, the answer is the
    letter; TimeSearch-R's ``multiple_choice``). ``answers="word"``: the same question asked
    open-ended, the answer is the colour word (``open_ended``, scored by normalised exact match,
    the reward's offline rule).
    """
    from agent_tools.world import load_manifest

    videos = load_manifest(world)["videos"]
    events = {e.event_id: e for v in videos for e in v["events"]}
    shapes_in = {e.event_id: [o.shape for o in v["events"]] for v in videos for e in v["events"]}
    items = json.loads((world / split / "longvideobench.json").read_text())
    out = []
    for it in items:
        ev = events[it["id"]]
        if answers == "letter":
            opts = "\n".join(f"{_LETTERS[i]}) {c}" for i, c in enumerate(it["candidates"]))
            question, answer, ptype = f"{it['question']}\n{opts}", _LETTERS[int(it["correct_choice"])], "multiple_choice"
        else:
            question, answer, ptype = f"{it['question']} Answer with one word.", ev.colour, "open_ended"
        out.append({
            "question": question,
            "video": str(world / "videos" / it["video_path"]),
            "answer": answer,
            "colour": ev.colour,
            "problem_type": ptype,
            "window": [ev.start, ev.end],
            "target": f"a {ev.shape} that {ev.action}",
            # another event of the asked shape in the video: only the action (motion, over several
            # frames) tells them apart, and one frame's tag cannot show it
            "shape_shared": shapes_in[ev.event_id].count(ev.shape) > 1,
        })
    return out[:limit] if limit else out


def write_open_colour_qa(world: Path, split: str, questions: list[dict[str, Any]]) -> Path:
    """The ``answers="word"`` questions as an ActivityNet-QA-style file ``videoseek eval`` reads (``open_qa``).

    Each item keeps the zero-shot fields the baselines answer with (``answer_space``: the world's
    colours; ``hypothesis_template``: the event's caption with the colour left open).
    """
    from agent_tools.world import COLOURS

    rows = []
    for i, q in enumerate(questions):
        shape_action = q["target"].removeprefix("a ").replace(" that ", " ", 1)
        rows.append({"question_id": f"{Path(q['video']).stem}-colour{i}", "video_name": Path(q["video"]).stem,
                     "question": q["question"], "answer": q["answer"], "type": "colour",
                     "answer_space": list(COLOURS), "hypothesis_template": "a {} " + shape_action})
    path = world / split / "open_colour_qa.json"
    path.write_text(json.dumps(rows, indent=1))
    return path


def expert_turns(q: dict[str, Any], num_frames: int) -> list[str]:
    """A fixed demonstration: one search for the asked object, then the answer.

    :func:`expert_trajectories` keeps the search and writes the answer turn from what it returned.
    """
    call = {"name": "seek_video_frames", "arguments": {"query": q["target"], "num_frames": num_frames}}
    return [
        f"<think>I look for {q['target']}.</think><tool_call>{json.dumps(call)}</tool_call>",
        f"<think>The frames show it.</think><answer>{q['answer']}</answer>",
    ]


_LINE = re.compile(r"^(\d+(?:\.\d+)?)s \(score (-?[\d.]+)\): (.+?) (-?[\d.]+)$")


def expert_trajectories(questions: list[dict[str, Any]], searcher: Any, tagger: Any, *, num_frames: int,
                        max_turns: int, preview_frames: int) -> tuple[list[Any], list[list[dict[str, Any]]], int]:
    """Demonstrations that read the tool's result: search for the asked object, then name what the best frame shows.

    Turn 1 is :func:`expert_turns`'s search; it is replayed through the graph so the second turn can
    quote the real observation: ``<think>37.0s shows a cyan cross appears.</think><answer>cyan</answer>``
    (the highest-scored line's top tag, then the answer: the colour word, or the option letter).
    A demonstration is kept only when that tag names the answer's colour (rejection sampling on
    correctness, as TimeSearch-R built its SFT set from trajectories that answer right); a wrong
    tag would teach the policy to answer against what it reads.

    Each kept demonstration also yields the completeness check's re-answer (TimeSearch-R's CSV:
    the question asked again over the searched frames alone, :func:`verify_messages`) with the
    same reply, so the CSV reward can score what the policy re-answers.

    Returns:
        ``(trajectories, re_answers, dropped)``: the kept :class:`training.data.Trajectory` rows,
        the re-answer conversations and how many questions were dropped.
    """
    from agent_tools.graphs.temporal import verify_messages
    from agent_tools.observations import to_text_messages
    from training.data import Trajectory, replay_trajectory

    kept, re_answers, dropped = [], [], 0
    for q in questions:
        first = expert_turns(q, num_frames)[0]
        probe = Trajectory(question=q["question"], video=q["video"], turns=[first, "<answer>A</answer>"])
        rollout = replay_trajectory(probe, searcher, max_turns=max_turns, preview_frames=preview_frames)
        tool = next(m for m in to_text_messages(rollout.messages, tagger) if m["role"] == "tool")
        lines = [m for m in (_LINE.match(x) for x in tool["content"].splitlines()) if m]
        best = max(lines, key=lambda m: float(m.group(2)))
        if q["colour"] not in best.group(3).split():
            dropped += 1
            continue
        second = f"<think>{best.group(1)}s shows {best.group(3)}.</think><answer>{q['answer']}</answer>"
        kept.append(Trajectory(question=q["question"], video=q["video"], turns=[first, second], answer=q["answer"],
                               problem_type=q["problem_type"]))
        re_answers.append(verify_messages(q["question"], rollout.frames) + [{"role": "assistant", "content": second}])
    return kept, re_answers, dropped


def _correct(answer: str | None, q: dict[str, Any]) -> bool:
    """The held-out rule: the option letter (lenient about ``(B)`` / ``B.``), or the colour word exactly."""
    if q["problem_type"] == "multiple_choice":
        m = re.match(r"^\s*\(?([A-E])(?:[).:\s]|$)", answer or "")
        return bool(m) and m.group(1) == q["answer"]
    return re.sub(r"[^a-z]", "", (answer or "").lower()) == q["answer"]


def evaluate(policy: Any, searcher: Any, questions: list[dict[str, Any]], *, max_turns: int, preview_frames: int,
             batch: int = 1, keep_turns: bool = False) -> dict[str, Any]:
    """Run the text-mode graph on each question; valid-turn rate, accuracy, answered rate, search precision.

    Also each question's correctness (``correct``) and the accuracy split by ``shape_shared``
    (``accuracy_shape_unique`` / ``accuracy_shape_shared``; ``None`` where a side has no question).

    ``batch > 1``: that many episodes at a time, their turns generated as one batch per round
    (:func:`agent_tools.policies.run_batched`; greedy, so the same turns as one by one).
    ``keep_turns``: also return every episode's turns (``all_turns``), not only two samples.
    """
    from agent_tools.graphs import AgentRunner, build_temporal_graph
    from agent_tools.policies import BatchedPolicy, run_batched

    t0 = time.perf_counter()
    if batch > 1 and hasattr(policy, "generate_batch"):
        batched = BatchedPolicy(policy)
        graph = build_temporal_graph(batched, searcher, max_turns=max_turns, preview_frames=preview_frames, observation="text")
        runner = AgentRunner(graph, max_turns=max_turns)
        runs = run_batched(batched, lambda q: runner.run(q["question"], q["video"]), questions, workers=batch)
    else:
        graph = build_temporal_graph(policy, searcher, max_turns=max_turns, preview_frames=preview_frames, observation="text")
        runner = AgentRunner(graph, max_turns=max_turns)
        runs = [runner.run(q["question"], q["video"]) for q in questions]
    turns = valid = answered = hits = searched = 0
    samples, right = [], []
    for q, r in zip(questions, runs):
        turns += len(r.turns)
        valid += sum(t.action in ("tool_call", "answer") for t in r.turns)
        answered += r.status == "answered"
        right.append(_correct(r.answer, q))
        lo, hi = q["window"]
        for f in r.frames:
            searched += 1
            hits += lo <= float(f["timestamp"]) < hi
        samples.append([t.text[:160] for t in r.turns])
    n = max(1, len(questions))
    return {
        "valid_turn_rate": valid / max(1, turns),
        **accuracy_split(right, questions),
        "answered": answered / n,
        "search_precision": hits / searched if searched else 0.0,
        "turns": turns,
        "seconds": time.perf_counter() - t0,
        "samples": samples[:2],
        **({"all_turns": [[t.text for t in r.turns] for r in runs]} if keep_turns else {}),
    }


def accuracy_split(right: list[bool], questions: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy, each question's result, and the accuracy split by ``shape_shared`` (see :func:`load_questions`).

    Returns:
        ``accuracy``, ``correct``, ``accuracy_shape_unique`` / ``accuracy_shape_shared`` (``None``
        where a side has no question) and ``questions_shape_shared``.
    """
    shared = [ok for ok, q in zip(right, questions) if q.get("shape_shared")]
    single = [ok for ok, q in zip(right, questions) if not q.get("shape_shared")]
    return {
        "accuracy": sum(right) / max(1, len(questions)),
        "correct": list(right),
        "accuracy_shape_unique": sum(single) / len(single) if single else None,
        "accuracy_shape_shared": sum(shared) / len(shared) if shared else None,
        "questions_shape_shared": len(shared),
    }


def demonstrated_protocol(questions: list[dict[str, Any]], searcher: Any, tagger: Any, *, num_frames: int,
                          max_turns: int, preview_frames: int) -> dict[str, Any]:
    """The SFT demonstrations' protocol on ``questions``, with no policy: a reference for the policies' accuracy.

    Search for the asked object with the question's own target words and answer the colour the
    best-scored line names (:func:`expert_trajectories`' test). A policy that searched and read
    exactly as demonstrated would score this; its misses are the questions the encoder's tags
    answer wrongly.
    """
    kept = _answerable(questions, searcher, tagger, num_frames=num_frames, max_turns=max_turns, preview_frames=preview_frames)
    return accuracy_split([(q["question"], q["video"]) in kept for q in questions], questions)


def _answerable(questions: list[dict[str, Any]], searcher: Any, tagger: Any, **kw: int) -> set[tuple[str, str]]:
    """``(question, video)`` of the questions whose demonstrated search's best line names the answer's colour."""
    return {(t.question, t.video) for t in expert_trajectories(questions, searcher, tagger, **kw)[0]}
