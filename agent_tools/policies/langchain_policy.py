"""Policy backend over any LangChain chat model (``BaseChatModel``), in one of two tool-calling modes.

- ``tool_calling="text"`` (default; what RL-trained checkpoints such as ``vllm serve``'d
  videoseek policies speak): the model follows our text protocol from the system prompt
  (``<think>`` then ``<tool_call>{...}</tool_call>`` or ``<answer>``) and needs no native tool
  calling; tool results go back as human turns.
- ``tool_calling="native"`` (hosted chat models: ``ChatOpenAI``, ``ChatAnthropic``, ...): the
  tool schemas the conversation was set up with (the ``<tools>`` block of the protocol's system
  prompt, or ``tools=``) are bound with ``model.bind_tools``; the protocol's system prompt is
  swapped for :data:`NATIVE_SYSTEM_PROMPT`; earlier calls travel as ``AIMessage.tool_calls`` and
  their results as text-only ``ToolMessage`` s followed by one user message with the frames
  (what chat-completions APIs accept, see
  :func:`agent_tools.langchain_tools.tool_images_to_user`). The reply's first
  ``AIMessage.tool_calls`` entry is written back as the protocol's ``<tool_call>`` text, and a
  plain-text reply without tags is taken as the final ``<answer>``, so the graphs, the parser
  and the trainer see one protocol either way.

Frames become standard image content blocks (``{"type": "image", "base64": ...,
"mime_type": "image/jpeg"}``) only while the call's input is built.

Names: :class:`LangChainPolicy`, :func:`to_langchain_messages` (text mode),
:func:`to_native_messages`, :func:`native_reply_text` and :func:`tools_in_system_prompt` (native mode),
:data:`NATIVE_SYSTEM_PROMPT`, :data:`TOOL_CALLING_MODES`.

Usage::

    from langchain_openai import ChatOpenAI
    policy = LangChainPolicy(ChatOpenAI(model="gpt-4o-mini"), tool_calling="native")
    policy = LangChainPolicy(ChatOpenAI(base_url="http://localhost:8000/v1", model="videoseek-7b",
                                        api_key="none"))               # a served RL checkpoint: text
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional, Sequence

from agent_tools import protocol
from agent_tools.errors import InvalidArgumentError
from agent_tools.policies.base import (
    ChatMessage,
    Generation,
    Policy,
    api_blocks,
    image_to_base64,
    text_block,
    user_tool_role,
)
from agent_tools.protocol import STOP_STRINGS, close_open_block

__all__ = [
    "LangChainPolicy",
    "to_langchain_messages",
    "to_native_messages",
    "native_reply_text",
    "tools_in_system_prompt",
    "NATIVE_SYSTEM_PROMPT",
    "TOOL_CALLING_MODES",
]

#: ``tool_calling`` values of :class:`LangChainPolicy`.
TOOL_CALLING_MODES = ("text", "native")

#: System prompt of native mode (replaces a system prompt that embeds ``<tools>`` schemas).
NATIVE_SYSTEM_PROMPT = (
    "You answer questions about a long video that you cannot watch in full. You see a few preview "
    "frames; to look closer, call the tool you are given, which returns the frames of a time window "
    "that best match a description, each labelled with its time in seconds. Call one tool at a "
    "time. When the frames you have seen support an answer, reply without a tool call and put the "
    "final answer inside <answer></answer>."
)

_TOOLS_BLOCK = re.compile(r"<tools>\n?(.*?)\n?</tools>", re.DOTALL)
_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.IGNORECASE | re.DOTALL)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content or [] if isinstance(b, dict))


def _image_block(jpeg_quality: int):
    def image(img: Any) -> dict[str, Any]:
        return {
            "type": "image",
            "base64": image_to_base64(img, quality=jpeg_quality),
            "mime_type": "image/jpeg",
        }

    return image


def _has_bind_tools(model: Any) -> bool:
    """True when ``model`` implements ``bind_tools`` (``BaseChatModel``'s own only raises)."""
    method = getattr(type(model), "bind_tools", None)
    if not callable(method):
        return False
    try:
        from langchain_core.language_models.chat_models import BaseChatModel
    except ImportError:  # pragma: no cover - langchain-core is a dependency
        return True
    return method is not BaseChatModel.bind_tools


def to_langchain_messages(messages: list[ChatMessage], *, jpeg_quality: int = 85) -> list[Any]:
    """Prepared chat messages (images resolved, no tool turns) -> LangChain messages (text mode)."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    image = _image_block(jpeg_quality)
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = api_blocks(content, image)
        role = m["role"]
        if role == "system":
            out.append(SystemMessage(content=_text_of(content)))
        elif role == "assistant":
            out.append(AIMessage(content=_text_of(content)))
        else:
            out.append(HumanMessage(content=content))
    return out


def tools_in_system_prompt(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """Tool schemas listed in the ``<tools>`` block of the conversation's system prompt (may be empty)."""
    for m in messages:
        if m.get("role") != "system":
            continue
        found = _TOOLS_BLOCK.search(_text_of(m.get("content")))
        if found:
            tools = []
            for line in found.group(1).splitlines():
                line = line.strip()
                if line:
                    try:
                        tools.append(json.loads(line))
                    except ValueError:
                        continue
            return tools
    return []


def to_native_messages(
    messages: list[ChatMessage],
    *,
    jpeg_quality: int = 85,
    system_prompt: Optional[str] = NATIVE_SYSTEM_PROMPT,
) -> list[Any]:
    """Prepared chat messages (images resolved, tool turns kept) -> LangChain messages with native tool calls.

    An assistant turn whose text holds a protocol ``<tool_call>`` becomes an ``AIMessage`` with
    that call in ``tool_calls`` (id ``call_<n>``; its reasoning as content); the ``tool`` turn
    that follows becomes a ``ToolMessage`` answering it, text only, followed by a user message
    with its frames. A tool turn that answers no call (a corrective message after an unusable
    reply) becomes a user turn. A system prompt embedding ``<tools>`` is replaced by
    ``system_prompt`` (None keeps it).

    Args:
        messages: Prepared chat messages.
        jpeg_quality: JPEG quality of the frames.
        system_prompt: Replacement for a text-protocol system prompt.

    Returns:
        LangChain messages.
    """
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    from agent_tools.langchain_tools import tool_images_to_user

    image = _image_block(jpeg_quality)
    names = tuple(protocol.TOOLS)
    out: list[Any] = []
    open_call: Optional[tuple[str, str]] = None  # (id, name) of a call still unanswered
    n_calls = 0
    for m in messages:
        role, content = m["role"], m.get("content")
        blocks = api_blocks(content, image) if isinstance(content, list) else content
        if role == "system":
            text = _text_of(blocks)
            if system_prompt is not None and _TOOLS_BLOCK.search(text):
                text = system_prompt
            out.append(SystemMessage(content=text))
        elif role == "assistant":
            text = _text_of(blocks)
            action = protocol.parse_action(text, tool_names=names)
            if action.kind == "tool_call":
                n_calls += 1
                open_call = (f"call_{n_calls}", str(action.name))
                call = {
                    "name": action.name,
                    "args": action.arguments,
                    "id": open_call[0],
                    "type": "tool_call",
                }
                out.append(AIMessage(content=action.think or "", tool_calls=[call]))
            else:
                open_call = None
                out.append(AIMessage(content=text))
        elif role == "tool" and open_call is not None:
            out.append(
                ToolMessage(
                    content=blocks if isinstance(blocks, list) else str(blocks or ""),
                    tool_call_id=open_call[0],
                    name=m.get("name") or open_call[1],
                )
            )
            open_call = None
        elif role == "tool":
            label = text_block(f"[{m.get('name') or 'tool'} result]\n")
            rest = blocks if isinstance(blocks, list) else [text_block(str(blocks or ""))]
            out.append(HumanMessage(content=[label] + list(rest)))
        else:
            open_call = None
            out.append(HumanMessage(content=blocks if blocks is not None else ""))
    return tool_images_to_user(out)


def native_reply_text(message: Any) -> str:
    """A native reply as protocol text.

    The first ``tool_calls`` entry becomes ``<think>{content}</think><tool_call>{...}</tool_call>``
    (further calls in the same reply are dropped: the protocol makes one call per turn); a call
    whose arguments the provider could not parse (``invalid_tool_calls``) keeps its raw
    arguments for the protocol's lenient parser. Text that already is a protocol turn stays as it
    is; other text becomes the final ``<answer>`` (its ``<think>`` part kept).

    Args:
        message: The model's ``AIMessage``.

    Returns:
        The protocol text of the turn.
    """
    text = getattr(message, "text", message.content)
    text = str(text() if callable(text) and not isinstance(text, str) else text)
    calls = list(getattr(message, "tool_calls", None) or [])
    if calls:
        body = json.dumps(
            {"name": calls[0]["name"], "arguments": calls[0].get("args") or {}}, ensure_ascii=False
        )
        return f"<think>{text.strip()}</think><tool_call>{body}</tool_call>"
    invalid = list(getattr(message, "invalid_tool_calls", None) or [])
    if invalid:
        raw = invalid[0].get("args") or "{}"
        body = '{"name": ' + json.dumps(invalid[0].get("name") or "") + ', "arguments": ' + raw + "}"
        return f"<think>{text.strip()}</think><tool_call>{body}</tool_call>"
    text = close_open_block(text)
    if protocol.parse_action(text, tool_names=tuple(protocol.TOOLS)).kind != "invalid":
        return text
    think_m = _THINK.search(text)
    rest = (text[: think_m.start()] + text[think_m.end() :]).strip() if think_m else text.strip()
    if not rest:
        return text
    think = think_m.group(1).strip() if think_m else ""
    return f"<think>{think}</think><answer>{rest}</answer>"


class LangChainPolicy(Policy):
    """Wraps a LangChain chat model as a policy.

    Args:
        model: Any ``BaseChatModel`` (or runnable taking messages and returning a message);
            native mode needs ``bind_tools``.
        tool_calling: ``"text"`` (our text protocol; RL-trained checkpoints) or ``"native"``
            (``bind_tools``; hosted chat models). See the module docstring.
        tools: Native mode: the tool schemas to bind on every call (OpenAI ``function`` format);
            default: those listed in the conversation's system prompt, and none when it lists none
            (the completeness check and corpus verdicts offer no tool).
        max_tokens_kwarg: Name of the model's per-call token limit argument, bound on each call
            (``"max_tokens"`` for most providers); None to not bind one.
        use_stop: Pass ``stop=["</tool_call>", "</answer>"]`` on each call.
        jpeg_quality: JPEG quality of the frames sent.
        native_system_prompt: Native mode: replacement for a text-protocol system prompt (None
            keeps the conversation's).
        **policy_kwargs: ``max_new_tokens``, ``max_side``, ``manifest``. ``tool_role`` is
            ``"user"`` in text mode and ``"tool"`` in native mode; another value raises.

    Raises:
        InvalidArgumentError: On an unknown ``tool_calling``, a ``tool_role`` the mode cannot
            use, or native mode on a model without ``bind_tools``.
    """

    def __init__(
        self,
        model: Any,
        *,
        tool_calling: str = "text",
        tools: Optional[Sequence[dict[str, Any]]] = None,
        max_tokens_kwarg: Optional[str] = "max_tokens",
        use_stop: bool = True,
        jpeg_quality: int = 85,
        native_system_prompt: Optional[str] = NATIVE_SYSTEM_PROMPT,
        **policy_kwargs: Any,
    ):
        if tool_calling not in TOOL_CALLING_MODES:
            raise InvalidArgumentError(
                f"tool_calling must be one of {', '.join(TOOL_CALLING_MODES)}, got {tool_calling!r}"
            )
        asked = policy_kwargs.get("tool_role")
        if tool_calling == "native":
            if asked not in (None, "tool"):
                raise InvalidArgumentError(
                    f"LangChainPolicy(tool_calling='native') answers tool calls with tool messages; "
                    f"tool_role must be 'tool' or left out, got {asked!r}"
                )
            if not _has_bind_tools(model):
                raise InvalidArgumentError(
                    f"tool_calling='native' needs a chat model with bind_tools; {type(model).__name__} "
                    "has none (use tool_calling='text')"
                )
            policy_kwargs["tool_role"] = "tool"
        else:
            policy_kwargs["tool_role"] = user_tool_role(asked, "LangChainPolicy")
        super().__init__(**policy_kwargs)
        self.model = model
        self.tool_calling = tool_calling
        self.tools = [dict(t) for t in tools] if tools is not None else None
        self.max_tokens_kwarg = max_tokens_kwarg
        self.use_stop = use_stop
        self.jpeg_quality = jpeg_quality
        self.native_system_prompt = native_system_prompt
        self.name = (
            getattr(model, "model_name", None) or getattr(model, "model", None) or type(model).__name__
        )
        if not isinstance(self.name, str):
            self.name = type(model).__name__

    def _runnable(self, messages: list[ChatMessage], max_new_tokens: int) -> Any:
        runnable = self.model
        if self.tool_calling == "native":
            tools = self.tools or tools_in_system_prompt(messages)
            if tools:  # none for prompts that offer no tool (completeness check, corpus verdicts)
                runnable = runnable.bind_tools(tools)
        if self.max_tokens_kwarg:
            runnable = runnable.bind(**{self.max_tokens_kwarg: max_new_tokens})
        return runnable

    def _generate(self, messages: list[ChatMessage], max_new_tokens: int) -> Generation:
        runnable = self._runnable(messages, max_new_tokens)
        kwargs = {"stop": list(STOP_STRINGS)} if self.use_stop else {}
        if self.tool_calling == "native":
            lc_messages = to_native_messages(
                messages, jpeg_quality=self.jpeg_quality, system_prompt=self.native_system_prompt
            )
        else:
            lc_messages = to_langchain_messages(messages, jpeg_quality=self.jpeg_quality)
        msg = runnable.invoke(lc_messages, **kwargs)
        if self.tool_calling == "native":
            text = native_reply_text(msg)
        else:
            raw = getattr(msg, "text", msg.content)
            text = close_open_block(str(raw() if callable(raw) and not isinstance(raw, str) else raw))
        usage = getattr(msg, "usage_metadata", None) or {}
        return Generation(
            text=text,
            prompt_tokens=usage.get("input_tokens"),
            completion_tokens=usage.get("output_tokens"),
            finish_reason=(getattr(msg, "response_metadata", None) or {}).get("finish_reason"),
        )
