"""Shared pieces of the reward functions: reading completions, dataset columns, weighting.

- :func:`message_text_parts` / :func:`assistant_turns` - the text an assistant message holds,
  as the model produced it (TRL's parsed ``tool_calls`` / ``reasoning_content`` are rendered
  back into ``<tool_call>`` / ``<think>`` text).
- :func:`trl_reward` - the calling convention every reward function accepts.
- :func:`column` - one value per completion from a TRL keyword column.
- :func:`normalize_text` - SQuAD-style normalisation for the exact-match fallback.
- :func:`weighted_rewards` - the weighted sum TRL's ``reward_weights`` computes (``None`` is
  skipped, as TRL's ``nansum``).
"""

from __future__ import annotations

import functools
import json
import math
import re
import string
from typing import Any, Callable, Optional, Sequence

from training.errors import TrainingDataError

__all__ = [
    "RewardFunc",
    "Judge",
    "trl_reward",
    "message_text_parts",
    "assistant_messages",
    "assistant_turns",
    "column",
    "normalize_text",
    "weighted_rewards",
]

#: TRL's reward-function contract: ``fn(completions, **kwargs) -> list[float | None]``.
RewardFunc = Callable[..., list[Optional[float]]]
#: ``judge(question, prediction, truth) -> score in [0, 1]`` for open-ended answers
#: (:mod:`training.judge` builds them).
Judge = Callable[[str, str, str], float]


def trl_reward(fn: Callable[..., list[Optional[float]]]) -> RewardFunc:
    """Make ``fn(completions, **kwargs)`` callable the ways its callers call it.

    TRL calls ``f(prompts=..., completions=..., **columns)``; the project's older callers call
    ``f(prompts, completions, **columns)`` and TRL's docs ``f(completions, **kwargs)``. All
    three reach ``fn`` as ``fn(completions, prompts=..., **columns)``.

    Args:
        fn: The reward function proper.

    Returns:
        The wrapper (same ``__name__``, which TRL logs the reward under).

    Raises:
        TypeError: With more than two positional arguments or no completions.
    """

    @functools.wraps(fn)
    def reward(*args: Any, **kwargs: Any) -> list[Optional[float]]:
        if len(args) == 2:
            kwargs["prompts"], completions = args
        elif len(args) == 1:
            completions = args[0]
        elif not args and "completions" in kwargs:
            completions = kwargs.pop("completions")
        else:
            raise TypeError(
                f"{fn.__name__} takes (completions, **columns) or (prompts, completions, **columns)"
            )
        return fn(completions, **kwargs)

    return reward


def _render_tool_call(call: Any) -> str:
    fn = call.get("function", call) if isinstance(call, dict) else {}
    args = fn.get("arguments", {})
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            pass
    body = json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False)
    return f"<tool_call>\n{body}\n</tool_call>"


def message_text_parts(message: Any) -> list[str]:
    """The text parts of one chat message, in order.

    A string content is one part; a list content gives one part per ``{"type": "text"}``
    block (TimeSearch-R checks each block on its own). When TRL has parsed the generation
    (``tool_calls``, ``reasoning_content``), those are rendered back into the text the model
    wrote: ``<think>...</think>`` before the first part and ``<tool_call>{json}</tool_call>``
    after the last, so the format checks see the generated tags.

    Args:
        message: A chat message dict (a LangChain message with ``.content`` also works).

    Returns:
        The text parts (possibly empty).
    """
    content = message.get("content") if isinstance(message, dict) else getattr(message, "content", None)
    if isinstance(content, str):
        parts = [content]
    elif isinstance(content, list):
        parts = [b.get("text") or "" for b in content if isinstance(b, dict) and b.get("type") == "text"]
    else:
        parts = []
    if not isinstance(message, dict):
        return parts
    reasoning = message.get("reasoning_content") or message.get("thinking")
    if isinstance(reasoning, str) and reasoning and not any("<think>" in p for p in parts):
        think = f"<think>\n{reasoning.strip()}\n</think>\n\n"
        parts = [think + parts[0]] + parts[1:] if parts else [think]
    calls = message.get("tool_calls") or []
    if calls and not any("<tool_call>" in p for p in parts):
        rendered = "\n".join(_render_tool_call(c) for c in calls)
        if parts:
            parts[-1] = (parts[-1] + "\n" if parts[-1] else "") + rendered
        else:
            parts = [rendered]
    return parts


def assistant_messages(completion: Any) -> list[Any]:
    """The assistant messages of one completion.

    Args:
        completion: A string (one assistant turn), a message dict, or a list of chat messages
            (TRL's conversational completion; ``tool`` / ``user`` messages are skipped).

    Returns:
        The assistant messages, as dicts.
    """
    if isinstance(completion, str):
        return [{"role": "assistant", "content": completion}]
    if isinstance(completion, dict):
        completion = [completion]
    out = []
    for m in completion or []:
        role = m.get("role") if isinstance(m, dict) else getattr(m, "type", None)
        if role in ("assistant", "ai"):
            out.append(m)
    return out


def assistant_turns(completion: Any) -> list[str]:
    """The assistant turns of one completion, each as one text (its parts concatenated).

    Args:
        completion: As in :func:`assistant_messages`.

    Returns:
        One string per assistant turn, in order.
    """
    return ["".join(message_text_parts(m)) for m in assistant_messages(completion)]


def column(kwargs: dict[str, Any], name: str, n: int, default: Any = None) -> list[Any]:
    """One value per completion from a dataset column (a scalar is broadcast).

    Args:
        kwargs: The reward function's keyword arguments.
        name: Column name.
        n: Number of completions.
        default: Value when the column is absent.

    Returns:
        ``n`` values.

    Raises:
        TrainingDataError: If the column is a list of another length.
    """
    value = kwargs.get(name, default)
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise TrainingDataError(
                f"column {name!r} has {len(value)} values for {n} completions; give one per completion"
            )
        return list(value)
    return [value] * n


_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_text(text: Optional[str]) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace (SQuAD-style)."""
    t = (text or "").lower().replace("\u2019", "'")
    t = "".join(ch if ch not in string.punctuation else " " for ch in t)
    t = _ARTICLES.sub(" ", t)
    return " ".join(t.split())


def weighted_rewards(
    funcs: Sequence[RewardFunc],
    weights: Sequence[float],
    prompts: Sequence[Any],
    completions: Sequence[Any],
    **kwargs: Any,
) -> tuple[list[float], dict[str, list[float]]]:
    """Weighted sum of reward functions, as TRL's ``reward_weights`` computes it.

    Each function is called as TRL calls it: ``f(prompts=..., completions=..., **kwargs)``.
    A ``None`` reward counts as NaN in the per-function values and is skipped in the total
    (TRL's ``nansum``).

    Args:
        funcs: Reward functions.
        weights: One weight per function.
        prompts: Passed through as ``prompts=``.
        completions: Passed through as ``completions=``.
        **kwargs: Dataset columns.

    Returns:
        ``(totals, per_function)``: totals per completion, and each function's raw values by name.

    Raises:
        TrainingDataError: If the weights do not match the functions, or a function returns
            the wrong number of rewards.
    """
    if len(funcs) != len(weights):
        raise TrainingDataError(
            f"{len(weights)} reward weights for {len(funcs)} reward functions; give one each"
        )
    totals = [0.0] * len(completions)
    parts: dict[str, list[float]] = {}
    for f, w in zip(funcs, weights):
        name = getattr(f, "__name__", repr(f))
        raw = list(f(prompts=prompts, completions=completions, **kwargs))
        if len(raw) != len(completions):
            raise TrainingDataError(
                f"reward function {name!r} returned {len(raw)} rewards for {len(completions)} completions"
            )
        values = [math.nan if v is None else float(v) for v in raw]
        parts[name] = values
        totals = [t if math.isnan(v) else t + float(w) * v for t, v in zip(totals, values)]
    return totals, parts
