"""GRPO-CSV on TRL's ``GRPOTrainer``: the video-search environment, the CSV re-answer, the glue.

TRL runs the rollouts (``GRPOTrainer(environment_factory=...)``: its ``_tool_call_loop`` samples a
turn, parses the tool call, runs the environment's tool, appends the tool result's tokens and
images, masks them out of the loss with ``tool_mask`` and samples again). Everything else is
TRL too: advantages, the DAPO loss, KL, vLLM, DeepSpeed, LoRA, checkpoints, logging. This module
holds only what TRL cannot do, each for the reason given:

- :class:`SeekVideoEnv` - the environment. ``reset(**row)`` returns the first user turn (preview
  frames + prompt) and its one public tool, ``seek_video_frames``, runs the ``TemporalSearcher``
  with the inference graph's own node code (:func:`agent_tools.graphs.temporal.preview_turn` /
  :func:`~agent_tools.graphs.temporal.seek_turn`) and records the frames it returned. TRL has
  no video tool.
- :class:`FramesOnlyVerifier` + :func:`csv_reward_funcs` - completeness self-verification
  (TimeSearch-R ``time_r1/trainer/grpo_trainer_env.py``: ``get_visual_trace`` /
  ``use_counterfactual_reasoning``): after an episode, the policy being trained re-answers the
  question from the frames the environment returned, alone, with "I don't know" as the way out
  (:func:`~agent_tools.graphs.temporal.verify_frames`, the graph's ``verify`` node). The
  reward functions of :mod:`training.rewards` then get it as their ``verification`` column.
  TRL has no re-answer hook; reward functions receive ``environments``, which is where it hooks in.
- :func:`with_tool_call_rendering` - TRL refuses a chat template that does not render an
  assistant message's ``tool_calls`` (``supports_tool_calling``); the Qwen2.5-VL template (and
  the tiny one) render only ``content``. Our protocol's assistant turns carry the call as text
  in ``content`` already, so the wrapper renders ``tool_calls`` only for a message whose content
  is empty (TRL's probe and its tool-suffix dummy) and leaves every real conversation's
  rendering, hence its token ids, unchanged.
- :data:`PROTOCOL_RESPONSE_TEMPLATE` - a transformers ``response_template`` that parses our
  protocol's ``<think>...</think><tool_call>{json}</tool_call>`` turns. TRL knows one for
  Qwen3-VL, none for Qwen2.5-VL, and the Qwen3 one anchors on ``<|im_start|>assistant\\n``.
- :class:`CSVGRPOTrainer` - ``GRPOTrainer`` whose completions reach the reward functions as the
  raw text of each sampled turn (cut after its first closing tag, as the graph does), split by
  ``tool_mask``. TRL hands rewards the *parsed* message (``<think>`` and ``<tool_call>`` moved into
  other fields), on which TimeSearch-R's format reward cannot be computed. With a
  ``replay_buffer`` (:mod:`training.replay`, set by :func:`training.grpo.build_trainer`), a
  generation batch whose advantages are all zero trains on a stored batch instead, as
  TimeSearch-R's trainer does (logged as ``replay/replayed``).

Text observations (``observation="text"``, for text-only policies such as SmolLM2): the
environment returns the preview turn and each tool result as one string of text lines
(:func:`agent_tools.observations.text_blocks` with the run's tagger: timestamp, search score,
zero-shot tags), exactly what the graph's ``observation="text"`` mode shows the policy, and the
CSV re-answer renders the recorded frames as text lines too (a ``text_only`` policy with the
same tagger, as the graph's ``verify`` node does with a text-only policy). TRL then takes the
policy's plain tokenizer as ``processing_class``.

Known differences from the graph (documented, not hidden): TRL ends a turn at EOS, not at the
graph's stop strings (the trained policy emits ``</tool_call><|im_end|>`` either way); a reply
with no parsable tool call ends the episode in TRL, whereas the graph sends a corrective message
and continues (TRL's loop has no corrective turn); tool-call JSON is parsed strictly in TRL,
leniently (``protocol.repair_json``) in the graph.

Usage::

    env_factory = make_env_factory(searcher, max_turns=8, preview_frames=8, max_side=448)
    verifier = FramesOnlyVerifier(max_side=448, max_new_tokens=256)
    # text-only policy: make_env_factory(..., observation="text", tagger=tagger) and
    # FramesOnlyVerifier(..., observation="text", tagger=tagger)
    funcs = csv_reward_funcs(R.TIMESEARCH_REWARDS, verifier)
    trainer = CSVGRPOTrainer(model=..., args=trl_args, reward_funcs=funcs, train_dataset=rows,
                             processing_class=prepare_processing_class(processor),
                             environment_factory=env_factory)
    verifier.bind(trainer)
"""

from __future__ import annotations

import functools
import json
from typing import Any, Callable, Optional, Sequence

from agent_tools import protocol
from agent_tools.errors import InvalidArgumentError
from agent_tools.graphs.temporal import preview_turn, seek_turn, verify_frames
from agent_tools.policies.base import CachingResolver, resolve_frames

__all__ = [
    "OBSERVATIONS",
    "text_observation",
    "PROTOCOL_RESPONSE_TEMPLATE",
    "TOOL_CALL_PRELUDE_MARK",
    "with_tool_call_rendering",
    "prepare_processing_class",
    "SeekVideoEnv",
    "make_env_factory",
    "COLUMNS_JSON",
    "prompt_row",
    "rows_dataset",
    "decode_columns",
    "raw_turn_messages",
    "FramesOnlyVerifier",
    "csv_reward_funcs",
    "CSVGRPOTrainer",
]

#: transformers ``response_template`` for the protocol's turns: ``<think>`` -> ``reasoning_content``,
#: each ``<tool_call>{json}</tool_call>`` -> ``tool_calls`` (OpenAI function shape), the rest -> ``content``.
PROTOCOL_RESPONSE_TEMPLATE: dict[str, Any] = {
    "defaults": {"role": "assistant"},
    "start_anchor_pattern": r"<\|im_start\|>assistant\n?",
    "fields": {
        "reasoning_content": {"open": "<think>", "close_pattern": r"</think>\s*", "content": "text"},
        "tool_calls": {
            "open": "<tool_call>",
            "close_pattern": r"</tool_call>\s*",
            "repeats": True,
            "content": "json",
            "transform": {"type": "function", "function": "{content}"},
        },
        "content": {"close_pattern": r"<\|im_end\|>\s*", "content": "text"},
    },
}

#: How frames reach the policy: ``images`` (pixels in the conversation) or ``text`` (one line per frame).
OBSERVATIONS = ("images", "text")


def _check_observation(observation: str) -> str:
    if observation not in OBSERVATIONS:
        raise InvalidArgumentError(f"observation must be 'images' or 'text', got {observation!r}")
    return observation


def text_observation(blocks: Any, tagger: Any = None) -> str:
    """Content blocks as the text a text-only policy reads: :func:`~agent_tools.observations.text_blocks`
    lines joined by newlines (what :func:`~agent_tools.observations.to_text_messages` makes of the
    graph's text-mode messages); a string (a search error) passes through."""
    if isinstance(blocks, str):
        return blocks
    from agent_tools.observations import text_blocks

    return "\n".join(b["text"] for b in text_blocks(blocks, tagger))


#: First line of the Jinja prelude :func:`with_tool_call_rendering` adds (makes the wrap idempotent).
TOOL_CALL_PRELUDE_MARK = "{#- videoseek: tool_calls rendered as protocol text when content is empty -#}"

_PRELUDE = (
    TOOL_CALL_PRELUDE_MARK
    + "{%- set _vs = namespace(msgs=[]) -%}"
    "{%- for _m in messages -%}"
    "{%- if _m['role'] == 'assistant' and _m['tool_calls'] is defined and _m['tool_calls'] -%}"
    "{%- set _c = _m['content'] if _m['content'] is defined else '' -%}"
    "{%- if _c is not string and _c is not none -%}"
    "{%- set _c = _c | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('') -%}"
    "{%- endif -%}"
    "{%- if _c -%}{%- set _vs.msgs = _vs.msgs + [_m] -%}{%- else -%}"
    "{%- set _t = namespace(text='') -%}"
    "{%- for _call in _m['tool_calls'] -%}"
    "{%- set _f = _call['function'] if _call['function'] is defined else _call -%}"
    "{%- set _t.text = _t.text + '<tool_call>' + ({'name': _f['name'], 'arguments': _f['arguments']} | tojson)"
    " + '</tool_call>' -%}"
    "{%- endfor -%}"
    "{%- if _m['content'] is string or _m['content'] is not defined or _m['content'] is none -%}"
    "{%- set _vs.msgs = _vs.msgs + [{'role': 'assistant', 'content': _t.text}] -%}"
    "{%- else -%}"
    "{%- set _vs.msgs = _vs.msgs + [{'role': 'assistant', 'content': [{'type': 'text', 'text': _t.text}]}] -%}"
    "{%- endif -%}{%- endif -%}"
    "{%- else -%}{%- set _vs.msgs = _vs.msgs + [_m] -%}{%- endif -%}"
    "{%- endfor -%}"
    "{%- set messages = _vs.msgs -%}"
    # the protocol's system prompt already states the tool schema (protocol.system_prompt); a
    # template's own tool block (Qwen3's) would make training prompts differ from the graph's
    "{%- set tools = none -%}"
)


def with_tool_call_rendering(template: str) -> str:
    """``template`` preceded by a prelude that renders native ``tool_calls`` as protocol text.

    Only an assistant message with ``tool_calls`` and *empty* content is rewritten (to
    ``<tool_call>{"name", "arguments"}</tool_call>`` as its content); every other message reaches
    the original template untouched, and ``tools=`` is ignored (our system prompt states the
    schema), so conversations of our protocol render to the same ids as in the graph. Idempotent.
    """
    if template.startswith(TOOL_CALL_PRELUDE_MARK):
        return template
    return _PRELUDE + template


def prepare_processing_class(processor: Any) -> Any:
    """Make a policy's processor usable by TRL's tool loop (in place; returned for chaining).

    Wraps its chat template with :func:`with_tool_call_rendering` (processor and tokenizer) and
    sets :data:`PROTOCOL_RESPONSE_TEMPLATE` on the tokenizer, where ``parse_response`` reads it.
    """
    tok = getattr(processor, "tokenizer", processor)
    for obj in {id(processor): processor, id(tok): tok}.values():
        if getattr(obj, "chat_template", None):
            obj.chat_template = with_tool_call_rendering(obj.chat_template)
    tok.response_template = PROTOCOL_RESPONSE_TEMPLATE
    tok.padding_side = "left"
    return processor


#: Dataset column holding the row's other columns (``answer`` and extras) as JSON: their types
#: differ from row to row (a letter, a ``{"start_time", "end_time"}`` window...), which an Arrow
#: table cannot hold in one column. :func:`csv_reward_funcs` decodes it for the reward functions.
COLUMNS_JSON = "columns_json"


def prompt_row(row: Any) -> dict[str, Any]:
    """A TRL dataset row from a :class:`training.data.Trajectory` prompt.

    ``prompt`` is the protocol's system turn plus an empty user turn; the environment's
    ``reset`` fills the user turn (preview frames and the question) from ``question``, ``video``
    and ``window``. ``answer`` and any extra columns travel as JSON in :data:`COLUMNS_JSON`.
    """
    cols = {"answer": row.answer}
    for k, v in row.extra.items():
        cols.setdefault(k, v)
    return {
        "prompt": [
            {"role": "system", "content": protocol.system_prompt([protocol.SEEK_TOOL])},
            {"role": "user", "content": ""},
        ],
        "question": row.question,
        "video": row.video,
        "problem_type": row.problem_type,
        "window": [float(x) for x in row.window] if row.window else None,
        COLUMNS_JSON: json.dumps(cols),
    }


def rows_dataset(rows: Sequence[Any]):
    """A ``datasets.Dataset`` of :func:`prompt_row` rows (what ``GRPOTrainer`` accepts)."""
    from datasets import Dataset

    return Dataset.from_list([prompt_row(r) for r in rows])


def decode_columns(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Reward keyword arguments with :data:`COLUMNS_JSON` expanded into one list per column."""
    encoded = kwargs.pop(COLUMNS_JSON, None)
    if encoded is None:
        return kwargs
    decoded = [json.loads(x) for x in encoded]
    for key in sorted({k for d in decoded for k in d}):
        kwargs.setdefault(key, [d.get(key) for d in decoded])
    return kwargs


class SeekVideoEnv:
    """One rollout's video-search environment (TRL ``environment_factory`` contract).

    Public methods other than ``reset`` are tools for TRL; there is exactly one,
    :meth:`seek_video_frames`. Attributes (read by :class:`FramesOnlyVerifier` and tests):
    ``question``, ``video``, ``duration``, ``frames_seen`` (the frames every search returned, as
    the graph's ``FrameRef`` dicts, each distinct frame once), ``calls`` (tool calls made) and
    ``verification`` (set once the CSV re-answer ran).

    Args:
        searcher: The ``TemporalSearcher``.
        max_turns: Turn budget stated in the prompt (the trainer allows ``max_turns - 1`` tool calls).
        preview_frames: Preview frames in the first user turn.
        max_side: Longest side of the frames given to the model (the policy's ``max_side``).
        frames: Frame resolver (default ``searcher.frames`` with an LRU cache).
        observation: ``"images"`` (frames as PIL images) or ``"text"`` (the preview turn and each
            tool result as one string of text lines, :func:`text_observation`).
        tagger: Zero-shot frame tagger of text observations (None: timestamps and scores only).

    Raises:
        InvalidArgumentError: On an unknown ``observation``.
    """

    def __init__(
        self,
        searcher: Any,
        *,
        max_turns: int,
        preview_frames: int,
        max_side: Optional[int],
        frames: Any = None,
        observation: str = "images",
        tagger: Any = None,
    ):
        self._observation = _check_observation(observation)
        self._tagger = tagger
        self._searcher = searcher
        self._max_turns = int(max_turns)
        self._preview_frames = int(preview_frames)
        self._max_side = max_side
        self._frames = frames if frames is not None else CachingResolver(searcher.frames)
        self.question = ""
        self.video = ""
        self.duration: Optional[float] = None
        self.frames_seen: list[dict[str, Any]] = []
        self.calls = 0
        self.verification: Optional[dict[str, Any]] = None

    def _resolve(self, blocks: list[dict[str, Any]]) -> Any:
        """Frame references -> PIL image blocks, exactly as the policy resolves them in the graph
        (text mode: the graph's text lines, one string)."""
        if self._observation == "text":
            return text_observation(blocks, self._tagger)
        return resolve_frames([{"role": "user", "content": blocks}], self._frames, self._max_side)[0]["content"]

    def reset(self, **row: Any) -> Any:
        """Start an episode on ``row`` (``question``, ``video``, optional ``window``).

        Returns:
            The first user turn's blocks (preview frames, each after its timestamp, then the
            prompt; in text mode one string of their text lines), which TRL appends to the
            dataset prompt's empty user turn.
        """
        self.question, self.video = row.get("question"), row.get("video")
        window = row.get("window")
        win = (float(window[0]), float(window[1])) if window else None
        self.duration, blocks = preview_turn(
            self._searcher,
            self.video,
            self.question,
            max_turns=self._max_turns,
            preview_frames=self._preview_frames,
            window=win,
        )
        self.frames_seen, self.calls, self.verification = [], 0, None
        return self._resolve(blocks)

    def seek_video_frames(
        self,
        query: str = "",
        start_time: Optional[float] = None,
        end_time: Optional[float] = None,
        num_frames: Optional[int] = None,
    ) -> Any:
        """Find the frames of the video that best match a text description, inside an optional time window.

        Args:
            query: What to look for: the object, person, scene or event, described concretely and in full.
            start_time: Window start in seconds (default 0).
            end_time: Window end in seconds (default: the end of the video).
            num_frames: How many frames to return, 1 to 8 (default 8).

        Returns:
            The frames with their times (in text mode: one line per frame), then a short
            instruction; or the text of a search error.
        """
        given = {"query": query, "start_time": start_time, "end_time": end_time, "num_frames": num_frames}
        args = {k: v for k, v in given.items() if v is not None}
        self.calls += 1
        content, refs, _ = seek_turn(self._searcher, self.video, args, self.duration, turn=self.calls)
        seen = {(f["video"], round(float(f["timestamp"]), 3)) for f in self.frames_seen}
        for f in refs:  # the graph's merge_frames reducer: each distinct frame once, in discovery order
            key = (f["video"], round(float(f["timestamp"]), 3))
            if key not in seen:
                seen.add(key)
                self.frames_seen.append(f)
        return content if isinstance(content, str) else self._resolve(content)


def make_env_factory(
    searcher: Any,
    *,
    max_turns: int,
    preview_frames: int,
    max_side: Optional[int],
    observation: str = "images",
    tagger: Any = None,
) -> Callable[[], SeekVideoEnv]:
    """A zero-argument ``environment_factory`` for TRL; all environments share one frame cache.

    ``observation`` and ``tagger`` as :class:`SeekVideoEnv`.
    """
    cache = CachingResolver(searcher.frames, max_items=512)
    return functools.partial(
        SeekVideoEnv,
        searcher,
        max_turns=max_turns,
        preview_frames=preview_frames,
        max_side=max_side,
        frames=cache,
        observation=_check_observation(observation),
        tagger=tagger,
    )


def raw_turn_messages(
    tokenizer: Any, completion_ids: Sequence[int], tool_mask: Sequence[int], parsed: Sequence[dict]
) -> list[dict[str, Any]]:
    """A TRL completion as the graph's conversation: raw assistant turns and the tool turns.

    The runs of ``tool_mask == 1`` are the sampled turns; each is decoded without special
    tokens and cut after its first closing tag (:func:`agent_tools.protocol.cleanup_response`),
    which is exactly what the graph keeps. Tool messages are TRL's own (``parsed``), in order.
    """
    runs: list[list[int]] = []
    prev = 0
    for tok_id, m in zip(completion_ids, tool_mask):
        if m and (not prev or not runs):
            runs.append([])
        if m:
            runs[-1].append(int(tok_id))
        prev = m
    tools = [m for m in parsed if m.get("role") == "tool"]
    out: list[dict[str, Any]] = []
    for i, ids in enumerate(runs):
        text = protocol.cleanup_response(tokenizer.decode(ids, skip_special_tokens=True))
        out.append({"role": "assistant", "content": text})
        if i < len(tools):
            out.append({"role": "tool", "name": tools[i].get("name"), "content": tools[i].get("content")})
    return out


def _episode_answer(completion: Sequence[dict[str, Any]]) -> Optional[str]:
    """The answer the graph would record: the first turn that parses as an answer."""
    for m in completion:
        if m.get("role") == "assistant":
            action = protocol.parse_action(m.get("content") or "")
            if action.kind == "answer":
                return action.answer
    return None


class FramesOnlyVerifier:
    """The CSV re-answer, run by the policy being trained, from an environment's frames alone.

    Call :meth:`bind` with the trainer once it exists. Results are cached on each environment
    (``env.verification``) so every reward function of a step sees the same re-answer.

    Args:
        max_side: Frame size (the policy's ``max_side``).
        max_new_tokens: Tokens of the re-answer.
        observation: ``"text"``: the recorded frames reach the policy as text lines (a
            ``text_only`` policy with ``tagger``, as the graph's verify node renders them).
        tagger: Zero-shot frame tagger of text observations.
    """

    def __init__(
        self,
        *,
        max_side: Optional[int],
        max_new_tokens: int,
        observation: str = "images",
        tagger: Any = None,
    ):
        self.max_side = max_side
        self.max_new_tokens = int(max_new_tokens)
        self.observation = _check_observation(observation)
        self.tagger = tagger
        self.trainer: Any = None

    def bind(self, trainer: Any) -> "FramesOnlyVerifier":
        """Use ``trainer``'s model (unwrapped for generation, as TRL generates) for the re-answers."""
        self.trainer = trainer
        return self

    def __call__(self, environments: Sequence[SeekVideoEnv], completions: Sequence[Any]) -> list[dict]:
        """The ``verification`` column: one dict per rollout (see :func:`verify_frames`)."""
        todo = [i for i, env in enumerate(environments) if env.verification is None]
        if todo:
            if self.trainer is None:
                raise RuntimeError("FramesOnlyVerifier.bind(trainer) must be called before training")
            import torch
            from trl.models import unwrap_model_for_generation

            from agent_tools.policies.transformers_policy import TransformersPolicy

            tr = self.trainer
            with unwrap_model_for_generation(tr.model_wrapped, tr.accelerator) as model, torch.no_grad():
                was_training = model.training
                model.eval()
                policy = TransformersPolicy(
                    model,
                    tr.processing_class,
                    do_sample=False,
                    max_new_tokens=self.max_new_tokens,
                    max_side=self.max_side,
                    text_only=self.observation == "text",
                    tagger=self.tagger,
                )
                # greedy re-answers of the same question from the same frames are the same: rollouts of
                # one group often search alike, so each distinct conversation is generated once per step
                replies: dict[str, Any] = {}
                generate = policy.generate_details

                def generate_once(messages: Any, **kw: Any) -> Any:
                    key = json.dumps([messages, kw.get("max_new_tokens")], sort_keys=True, default=str)
                    if key not in replies:
                        replies[key] = generate(messages, **kw)
                    return replies[key]

                policy.generate_details = generate_once
                try:
                    for i in todo:
                        env = environments[i]
                        env.verification = verify_frames(
                            policy,
                            env.question,
                            env.frames_seen,
                            _episode_answer(completions[i]),
                            frames=env._frames,
                            max_new_tokens=self.max_new_tokens,
                        )
                finally:
                    model.train(was_training)
        return [env.verification for env in environments]


def csv_reward_funcs(
    funcs: Sequence[Callable[..., list[float]]], verifier: Optional[FramesOnlyVerifier]
) -> list[Callable[..., list[float]]]:
    """Wrap reward functions (TRL's ``fn(completions, **kwargs)``, called by keyword) for this trainer's rows and environments.

    Each wrapper keeps its function's ``__name__`` (TRL logs rewards under it), expands the
    JSON columns (:func:`decode_columns`) and, with a ``verifier``, computes (or reuses) the
    frames-only re-answers of the step's ``environments`` and passes them as ``verification``.
    """

    def wrap(fn: Callable[..., list[float]]) -> Callable[..., list[float]]:
        @functools.wraps(fn)
        def reward(completions: Any, **kwargs: Any) -> list[float]:
            kwargs = decode_columns(dict(kwargs))
            envs = kwargs.get("environments")
            if verifier is not None and envs is not None and "verification" not in kwargs:
                kwargs["verification"] = verifier(envs, completions)
            return fn(completions=completions, **kwargs)

        return reward

    return [wrap(f) for f in funcs]


def _trainer_class():
    from trl import GRPOTrainer

    class CSVGRPOTrainer(GRPOTrainer):
        """``GRPOTrainer`` whose reward functions see each sampled turn's raw text (see module doc)."""

        def _generate(self, prompts: list):
            out = list(super()._generate(prompts))
            completion_ids, tool_mask, completions = out[1], out[2], out[3]
            if tool_mask is not None:
                out[3] = [
                    raw_turn_messages(self._tokenizer, ids, mask, parsed)
                    for ids, mask, parsed in zip(completion_ids, tool_mask, completions)
                ]
            return tuple(out)

        def _generate_and_score_completions(self, inputs: Any) -> Any:
            batch = super()._generate_and_score_completions(inputs)
            buffer = getattr(self, "replay_buffer", None)  # training.replay: set by training.grpo.build_trainer
            if buffer is None or not self.model.training:
                return batch
            drawn = buffer.replayed
            used = buffer.step(batch)
            self._metrics["train"]["replay/replayed"].append(float(buffer.replayed > drawn))
            return used

    return CSVGRPOTrainer


def __getattr__(name: str) -> Any:
    # the trainer class subclasses trl's, which imports torch: built on first use only
    if name == "CSVGRPOTrainer":
        cls = _trainer_class()
        globals()["CSVGRPOTrainer"] = cls
        return cls
    raise AttributeError(f"module 'training.csv_env' has no attribute {name!r}")
