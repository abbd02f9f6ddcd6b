"""A toy task on which GRPO visibly learns in seconds on a CPU, through the real GRPO-CSV trainer.

The tiny policy (:mod:`agent_tools.policies.tiny`) has random weights and a 1000-token
vocabulary, so none of TimeSearch-R's rewards is ever non-zero for it: every advantage would be
0 and nothing would move. The toy task keeps everything of :func:`training.grpo.train_grpo`
(environment, preview frames, TRL's ``GRPOTrainer``, loss, optimiser, checkpoint, manifest) and
changes only what the policy may say and how it is scored:

- the question is a multiple-choice one whose answer is always :data:`TOY_ANSWER`;
- sampling is restricted to the option letters and EOS (TRL's ``generation_kwargs`` with
  ``suppress_tokens``; the loss still uses the full softmax) and to one token per turn, so a
  random policy answers right one time in five;
- :func:`letter_reward` scores the reply with TimeSearch-R's strict letter rule
  (``time_r1/reward/v7.py`` ``extract_characters_regex(strict=True)``, here
  :func:`training.rewards.extract_choice_letter`): 1 for the right letter, else 0.

Names: :data:`TOY_QUESTION`, :data:`TOY_ANSWER`, :data:`TOY_LETTERS`, :func:`letter_reward`,
:func:`toy_rows`, :func:`toy_config`, :func:`toy_generation_kwargs`.

Usage::

    paths = training.demo.write_demo("runs/demo")
    cfg = toy_config(paths["policy"], "runs/demo/cache", "runs/toy", seed=0, max_steps=30)
    result = train_grpo(cfg, rows=toy_rows(paths["video"]), reward_funcs=[letter_reward],
                        trl_overrides={"generation_kwargs": toy_generation_kwargs(tokenizer)})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from training.rewards import assistant_turns, extract_choice_letter

__all__ = [
    "TOY_QUESTION",
    "TOY_ANSWER",
    "TOY_LETTERS",
    "letter_reward",
    "toy_rows",
    "toy_generation_kwargs",
    "toy_config",
]

TOY_QUESTION = "Which colour fills the most frames? A. red B. green C. blue D. yellow"
TOY_ANSWER = "B"
TOY_LETTERS = ("A", "B", "C", "D")


def letter_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 when the episode's last reply is the right option letter (strict rule), else 0.0.

    Column: ``answer`` (the letter; default :data:`TOY_ANSWER`).
    """
    answers = kwargs.get("answer") or [TOY_ANSWER] * len(completions)
    out = []
    for completion, truth in zip(completions, answers):
        turns = assistant_turns(completion)
        letter = extract_choice_letter(turns[-1] if turns else "")
        out.append(1.0 if letter and letter == str(truth) else 0.0)
    return out


def toy_rows(video: str | Path, n: int = 2) -> list[Any]:
    """``n`` prompt rows of the toy question over ``video`` (:class:`training.data.Trajectory`)."""
    from training.data import Trajectory

    return [
        Trajectory(question=TOY_QUESTION, video=str(video), answer=TOY_ANSWER, problem_type="multiple_choice")
        for _ in range(n)
    ]


def toy_generation_kwargs(tokenizer: Any) -> dict[str, Any]:
    """TRL ``generation_kwargs`` that let the policy sample only the option letters and EOS, one token a turn."""
    allowed = {tokenizer.convert_tokens_to_ids(t) for t in TOY_LETTERS}
    allowed.add(tokenizer.eos_token_id)
    return {
        "max_new_tokens": 1,
        "suppress_tokens": [i for i in range(len(tokenizer)) if i not in allowed],
    }


def toy_config(model: str | Path, cache_dir: str | Path, output_dir: str | Path, **overrides: Any):
    """The :class:`training.grpo.GRPOConfig` of the toy run (CPU, one turn, 8 rollouts, no KL)."""
    from training.grpo import GRPOConfig

    fields: dict[str, Any] = dict(
        model=str(model),
        data="<rows given in code>",
        output_dir=str(output_dir),
        encoder="tiny-untrained",
        cache_dir=str(cache_dir),
        device="cpu",
        max_turns=1,
        max_new_tokens=1,
        preview_frames=1,
        max_completion_length=8,
        num_generations=8,
        temperature=1.0,
        beta=0.0,
        learning_rate=0.03,
        lr_scheduler_type="constant",
        max_steps=30,
        save_steps=1000,
        logging_steps=1,
        seed=0,
    )
    fields.update(overrides)
    return GRPOConfig(**fields)
