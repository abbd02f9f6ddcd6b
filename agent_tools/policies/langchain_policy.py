"""Policy backend over any LangChain chat model (``BaseChatModel``).

The model follows our text protocol from the system prompt, so it needs no native tool
calling; tool results go back as human turns. Frames become standard image content blocks
(``{"type": "image", "base64": ..., "mime_type": "image/jpeg"}``) only while the call's
input is built.

Names: :class:`LangChainPolicy`, :func:`to_langchain_messages`.

Usage::

    from langchain_openai import ChatOpenAI
    policy = LangChainPolicy(ChatOpenAI(model="gpt-4o-mini"))
"""

from __future__ import annotations

from typing import Any, Optional

from agent_tools.policies.base import (
    ChatMessage,
    Generation,
    Policy,
    api_blocks,
    image_to_base64,
    user_tool_role,
)
from agent_tools.protocol import STOP_STRINGS, close_open_block

__all__ = ["LangChainPolicy", "to_langchain_messages"]


def to_langchain_messages(messages: list[ChatMessage], *, jpeg_quality: int = 85) -> list[Any]:
    """Prepared chat messages (images resolved, no tool turns) -> LangChain messages."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    def image(img: Any) -> dict[str, Any]:
        encoded = image_to_base64(img, quality=jpeg_quality)
        return {"type": "image", "base64": encoded, "mime_type": "image/jpeg"}

    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = api_blocks(content, image)
        role = m["role"]
        if role == "system":
            text = content if isinstance(content, str) else "".join(b.get("text", "") for b in content)
            out.append(SystemMessage(content=text))
        elif role == "assistant":
            text = content if isinstance(content, str) else "".join(b.get("text", "") for b in content)
            out.append(AIMessage(content=text))
        else:
            out.append(HumanMessage(content=content))
    return out


class LangChainPolicy(Policy):
    """Wraps a LangChain chat model as a policy.

    Args:
        model: Any ``BaseChatModel`` (or runnable taking messages and returning a message).
        max_tokens_kwarg: Name of the model's per-call token limit argument, bound on each call
            (``"max_tokens"`` for most providers); None to not bind one.
        use_stop: Pass ``stop=["</tool_call>", "</answer>"]`` on each call.
        jpeg_quality: JPEG quality of the frames sent.
        **policy_kwargs: ``max_new_tokens``, ``max_side`` (``tool_role`` is always ``"user"``;
            another value raises :class:`~agent_tools.errors.InvalidArgumentError`).
    """

    def __init__(
        self,
        model: Any,
        *,
        max_tokens_kwarg: Optional[str] = "max_tokens",
        use_stop: bool = True,
        jpeg_quality: int = 85,
        **policy_kwargs: Any,
    ):
        policy_kwargs["tool_role"] = user_tool_role(policy_kwargs.get("tool_role"), "LangChainPolicy")
        super().__init__(**policy_kwargs)
        self.model = model
        self.max_tokens_kwarg = max_tokens_kwarg
        self.use_stop = use_stop
        self.jpeg_quality = jpeg_quality
        self.name = (
            getattr(model, "model_name", None) or getattr(model, "model", None) or type(model).__name__
        )
        if not isinstance(self.name, str):
            self.name = type(model).__name__

    def _generate(self, messages: list[ChatMessage], max_new_tokens: int) -> Generation:
        runnable = self.model
        if self.max_tokens_kwarg:
            runnable = runnable.bind(**{self.max_tokens_kwarg: max_new_tokens})
        kwargs = {"stop": list(STOP_STRINGS)} if self.use_stop else {}
        msg = runnable.invoke(to_langchain_messages(messages, jpeg_quality=self.jpeg_quality), **kwargs)
        text = getattr(msg, "text", msg.content)
        text = str(text() if callable(text) and not isinstance(text, str) else text)
        usage = getattr(msg, "usage_metadata", None) or {}
        return Generation(
            text=close_open_block(text),
            prompt_tokens=usage.get("input_tokens"),
            completion_tokens=usage.get("output_tokens"),
            finish_reason=(getattr(msg, "response_metadata", None) or {}).get("finish_reason"),
        )
