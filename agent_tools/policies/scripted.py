"""A policy that replays a script: deterministic turns for tests and examples.

:class:`ScriptedPolicy` returns the next item of its script on every call; an item is
a string or a callable ``(messages) -> str`` that can look at the conversation (the
callables see frames already resolved to PIL images when ``resolve_images`` is on). Every
call is recorded in :attr:`ScriptedPolicy.calls`, so a test can check what the policy saw.

Usage::

    call = '{"name": "seek_video_frames", "arguments": {"query": "red"}}'
    policy = ScriptedPolicy([
        f"<think>look</think><tool_call>{call}</tool_call>",
        "<think>seen</think><answer>red</answer>",
    ])
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

from agent_tools.errors import InvalidArgumentError
from agent_tools.policies.base import ChatMessage, FrameResolver, Generation, Policy, to_chat_messages

__all__ = ["ScriptedPolicy", "ScriptItem"]

ScriptItem = Union[str, Callable[[list[ChatMessage]], str]]


class ScriptedPolicy(Policy):
    """Replays scripted replies in order.

    Args:
        script: Replies, strings or callables taking the prepared conversation.
        resolve_images: Fetch frames through the resolver like a real backend would (so
            tests exercise the lazy image path); off, references pass through untouched.
        repeat_last: After the script ends, keep returning its last item instead of failing.
        name: Display name.
        **policy_kwargs: ``max_new_tokens``, ``max_side``, ``tool_role``.

    Attributes:
        calls: One dict per call: ``messages`` (the conversation as given, frames as
            references), ``num_images``, ``image_sizes``, ``max_new_tokens``, ``reply``.
    """

    def __init__(
        self,
        script: Sequence[ScriptItem],
        *,
        resolve_images: bool = True,
        repeat_last: bool = False,
        name: str = "scripted",
        **policy_kwargs: Any,
    ):
        super().__init__(**policy_kwargs)
        if not script:
            raise InvalidArgumentError("ScriptedPolicy needs at least one scripted reply")
        self.script = list(script)
        self.resolve_images = resolve_images
        self.repeat_last = repeat_last
        self.name = name
        self.calls: list[dict[str, Any]] = []
        self._given: list[ChatMessage] = []

    @property
    def remaining(self) -> int:
        """Scripted replies not used yet."""
        return max(0, len(self.script) - len(self.calls))

    def prepare(self, messages: Sequence[ChatMessage], frames: Optional[FrameResolver]) -> list[ChatMessage]:
        self._given = to_chat_messages(messages)
        if self.resolve_images:
            return super().prepare(messages, frames)
        return self._given

    def _generate(self, messages: list[ChatMessage], max_new_tokens: int) -> Generation:
        i = len(self.calls)
        if i >= len(self.script):
            if not self.repeat_last:
                raise InvalidArgumentError(
                    f"ScriptedPolicy ran out of replies after {len(self.script)} calls; add replies "
                    "or pass repeat_last=True"
                )
            item = self.script[-1]
        else:
            item = self.script[i]
        reply = item(messages) if callable(item) else item
        images = [
            b["image"]
            for m in messages
            if isinstance(m.get("content"), list)
            for b in m["content"]
            if b.get("type") == "image"
        ]
        self.calls.append(
            {
                "messages": self._given,
                "num_images": len(images),
                "image_sizes": [getattr(im, "size", None) for im in images],
                "max_new_tokens": max_new_tokens,
                "reply": reply,
            }
        )
        return Generation(text=reply, finish_reason="stop")  # no tokenizer: token counts unknown
