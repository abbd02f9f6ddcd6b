"""A tiny, offline, end-to-end training setup: synthetic video, toy data, untrained tiny policy.

It exists so the recipes in ``training/configs/*_tiny.json`` run on a laptop CPU in seconds
and exercise every real code path (tool replay, masking, rollouts through the graph,
rewards, InfoNCE, checkpoints). The data are toy data: nothing trained on them is useful.

``python -m training.demo runs/demo`` writes::

    runs/demo/clip.mp4                 # 20 s synthetic video (frames paint their index)
    runs/demo/tiny-untrained-policy/   # UNTRAINED tiny Qwen2.5-VL + manifest
    runs/demo/sft.jsonl                # scripted search trajectories (question, video, turns), incl.
                                       # demonstrations of the two GRPO prompts (the cold start)
    runs/demo/grpo.jsonl               # prompts (question, video, answer, problem_type)
    runs/demo/sqr.jsonl                # refinement rows (query, shown, positive, negatives)

- :func:`write_demo` - write them; returns the paths.

The SFT file also demonstrates the two GRPO prompts (search, then the answer), as a cold start
does: SFT'd on it (``sft_tiny.json``, 120 steps), the tiny policy's sampled episodes in
``grpo_tiny.json`` are sometimes well-formed, so rewards differ inside a group and the
advantages are not all zero (measured: 4-7 of 8 steps with reward std > 0 over seeds 0-2;
SFT'd on the other three trajectories alone: 0 of 8, every advantage 0, weights unchanged).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["write_demo"]


def _call(query: str, start: float, end: float, k: int, think: str) -> str:
    args = {"query": query, "start_time": start, "end_time": end, "num_frames": k}
    return f"<think>{think}</think><tool_call>{json.dumps({'name': 'seek_video_frames', 'arguments': args})}</tool_call>"


def _answer(text: str, think: str) -> str:
    return f"<think>{think}</think><answer>{text}</answer>"


def write_demo(directory: str | Path) -> dict[str, Path]:
    """Write the demo video, tiny policy and the three JSONL files into ``directory``.

    Returns:
        Paths by name: ``video``, ``policy``, ``sft``, ``grpo``, ``sqr``.
    """
    from agent_tools.policies.tiny import build_tiny_policy_dir
    from agent_tools.synthetic import write_indexed_video

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    video = d / "clip.mp4"
    if not video.is_file():
        write_indexed_video(video, duration=20.0, fps=10.0, size=(160, 120), scene_seconds=2.0, seed=1)
    policy = d / "tiny-untrained-policy"
    if not (policy / "videoseek_policy.json").is_file():
        # 96 tokens per turn: the demo's tool-call turns are 61-75 tokens with the tiny tokenizer
        build_tiny_policy_dir(policy, max_new_tokens=96)
    sft = [
        {
            "question": "What colour is the square?",
            "video": "clip.mp4",
            "turns": [
                _call("a square", 0, 10, 3, "The preview is too coarse; search the first half."),
                _answer("red", "The frames at the start show a red square."),
            ],
        },
        {
            "question": "What happens at the end?",
            "video": "clip.mp4",
            "turns": [
                _call("the last scene", 14, 20, 2, "Look at the end."),
                _call("a moving square", 16, 20, 2, "Closer."),
                _answer("the square moves right", "It moves right across the frames."),
            ],
        },
        {
            "question": "Is there a dog?",
            "video": "clip.mp4",
            "turns": [_answer("no", "The preview shows only coloured patterns.")],
        },
        # the cold start: the GRPO prompts below, demonstrated (a letter; a grounding window as JSON)
        {
            "question": "Which option shows the first scene? (A) red (B) green",
            "video": "clip.mp4",
            "turns": [
                _call("the first scene", 0, 4, 2, "Look at the start."),
                _answer("A", "The first scene is red."),
            ],
        },
        {
            "question": "When does the second scene start?",
            "video": "clip.mp4",
            "turns": [
                _call("the second scene", 0, 6, 3, "Find the cut."),
                _answer('{"start_time": 2.0, "end_time": 4.0}', "The second scene spans 2 to 4 s."),
            ],
        },
    ]
    grpo = [
        {
            "question": "Which option shows the first scene? (A) red (B) green",
            "video": "clip.mp4",
            "answer": "A",
            "problem_type": "multiple_choice",
        },
        {
            "question": "When does the second scene start?",
            "video": "clip.mp4",
            "answer": {"start_time": 2.0, "end_time": 4.0},
            "problem_type": "grounding",
        },
    ]
    scenes = [{"video": "clip.mp4", "start": 2.0 * i, "end": 2.0 * i + 1.5} for i in range(6)]
    queries = ["a red square", "a green field", "a blue sky", "a dog runs"]
    sqr = [
        {
            "query": q,
            "shown": scenes[(i + 3) % 6],
            "positive": scenes[i],
            "negatives": [s for j, s in enumerate(scenes) if j != i],
        }
        for i, q in enumerate(queries)
    ]
    paths = {"video": video, "policy": policy}
    for name, rows in (("sft", sft), ("grpo", grpo), ("sqr", sqr)):
        p = d / f"{name}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths[name] = p
    return paths


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - convenience
    args = argv if argv is not None else sys.argv[1:]
    for name, path in write_demo(args[0] if args else "runs/demo").items():
        print(f"{name}: {path}")


if __name__ == "__main__":  # pragma: no cover
    main()
