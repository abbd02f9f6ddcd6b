"""The policy interface: a conversation in, the next assistant turn out, as text.

A *conversation* is a list of plain dicts (the "chat" format every backend starts from)::

    {"role": "system" | "user" | "assistant" | "tool", "content": str | [block, ...], "name": ...}

with content blocks

- ``{"type": "text", "text": "..."}``
- ``{"type": "frame", "video": "/abs/clip.mp4", "timestamp": 12.5}`` - a *reference* to a
  video frame. Conversations, graph state and checkpoints hold only these.
- ``{"type": "image", "image": <PIL.Image>}`` - what a reference becomes, only inside
  :meth:`Policy.generate_details`, right before the backend builds its model input.

Names:

- :class:`Policy` - the abstract interface (``generate`` / ``generate_details``).
- :class:`Generation` - one generated turn: text plus token counts/ids when the backend has them
  (what a GRPO trainer needs).
- :class:`FrameResolver` - ``(video, timestamps, max_side) -> list[PIL.Image]``;
  ``TemporalSearcher.frames`` is one.
- :class:`CachingResolver` - a resolver with an LRU cache, so frames a conversation re-sends
  every turn are decoded once.
- :func:`frame_block`, :func:`text_block`, :func:`iter_frame_refs`, :func:`resolve_frames`,
  :func:`tool_turns_as_user`, :func:`to_chat_messages` (LangChain messages -> chat dicts),
  :func:`image_to_base64`; for the API backends :func:`api_blocks` (content blocks with
  images encoded their way) and :func:`user_tool_role` (their check of ``tool_role``).

Usage::

    policy.generate(messages, frames=searcher.frames, max_new_tokens=256)   # -> str
"""

from __future__ import annotations

import base64
import copy
import io
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Protocol, Sequence

from agent_tools.errors import InvalidArgumentError

__all__ = [
    "ChatMessage",
    "FrameResolver",
    "Generation",
    "Policy",
    "frame_block",
    "text_block",
    "iter_frame_refs",
    "resolve_frames",
    "tool_turns_as_user",
    "to_chat_messages",
    "image_to_base64",
    "api_blocks",
    "user_tool_role",
    "CachingResolver",
]

ChatMessage = dict[str, Any]


class FrameResolver(Protocol):
    """Fetches frames of a video as PIL images (e.g. ``TemporalSearcher.frames``)."""

    def __call__(self, video: str, timestamps: Sequence[float], max_side: Optional[int] = None) -> list: ...


@dataclass
class Generation:
    """One generated assistant turn.

    Attributes:
        text: Decoded text (special tokens removed).
        completion_ids: Generated token ids, when the backend exposes them.
        prompt_tokens: Prompt length in tokens, when known.
        completion_tokens: Generated length in tokens, when known.
        finish_reason: ``"stop"``, ``"length"`` or None.
        seconds: Wall time of the call.
    """

    text: str
    completion_ids: Optional[list[int]] = None
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    finish_reason: Optional[str] = None
    seconds: float = 0.0


def text_block(text: str) -> dict[str, Any]:
    """A text content block."""
    return {"type": "text", "text": text}


def frame_block(video: str, timestamp: float) -> dict[str, Any]:
    """A frame *reference* content block (no pixels)."""
    return {"type": "frame", "video": str(video), "timestamp": float(timestamp)}


def iter_frame_refs(messages: Sequence[ChatMessage]) -> Iterator[dict[str, Any]]:
    """Every frame reference block in the conversation, in order."""
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") == "frame":
                    yield block


def resolve_frames(
    messages: Sequence[ChatMessage],
    resolver: Optional[FrameResolver],
    max_side: Optional[int] = None,
) -> list[ChatMessage]:
    """Copy of the conversation with frame references replaced by PIL image blocks.

    Frames are fetched with one resolver call per video, in conversation order.

    Args:
        messages: Conversation in the chat format.
        resolver: Frame fetcher; required when the conversation holds frame references.
        max_side: Longest side the images are fetched at.

    Returns:
        A new list; the input is not modified.

    Raises:
        InvalidArgumentError: If there are frame references but no resolver.
    """
    refs = list(iter_frame_refs(messages))
    if not refs:
        return [dict(m) for m in messages]
    if resolver is None:
        raise InvalidArgumentError(
            "the conversation holds frame references but no frame resolver was given; pass "
            "frames=<TemporalSearcher>.frames (or any (video, timestamps, max_side) -> images callable)"
        )
    by_video: dict[str, list[float]] = {}
    for r in refs:
        by_video.setdefault(r["video"], []).append(float(r["timestamp"]))
    images: dict[tuple[str, float], Any] = {}
    for video, ts in by_video.items():
        unique = sorted(set(ts))
        got = resolver(video, unique, max_side=max_side)
        if len(got) != len(unique):
            raise InvalidArgumentError(
                f"frame resolver returned {len(got)} images for {len(unique)} timestamps of {video!r}"
            )
        images.update({(video, t): img for t, img in zip(unique, got)})
    out: list[ChatMessage] = []
    for m in messages:
        m2 = dict(m)
        content = m.get("content")
        if isinstance(content, list):
            blocks = []
            for block in content:
                if isinstance(block, dict) and block.get("type") == "frame":
                    key = (block["video"], float(block["timestamp"]))
                    blocks.append({"type": "image", "image": images[key], "timestamp": key[1]})
                else:
                    blocks.append(copy.copy(block))
            m2["content"] = blocks
        out.append(m2)
    return out


def tool_turns_as_user(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """Rewrite ``tool`` turns as ``user`` turns, for templates and APIs without a tool role.

    OpenAI-style APIs reject a ``tool`` message that answers no native tool call; our calls are
    text, so their results go back as user turns, prefixed with the tool's name.
    """
    out: list[ChatMessage] = []
    for m in messages:
        if m.get("role") != "tool":
            out.append(m)
            continue
        label = text_block(f"[{m.get('name') or 'tool'} result]\n")
        content = m.get("content")
        blocks = [label] + (list(content) if isinstance(content, list) else [text_block(str(content or ""))])
        out.append({"role": "user", "content": blocks})
    return out


def to_chat_messages(messages: Sequence[Any]) -> list[ChatMessage]:
    """Convert LangChain messages (or chat dicts, passed through) to the chat format.

    Args:
        messages: ``BaseMessage`` objects or chat dicts.

    Returns:
        Chat dicts; string content stays a string, list content keeps its blocks.
    """
    from langchain_core.messages import BaseMessage

    roles = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}
    out: list[ChatMessage] = []
    for m in messages:
        if isinstance(m, dict):
            out.append(dict(m))
            continue
        if not isinstance(m, BaseMessage):
            raise InvalidArgumentError(f"expected LangChain messages or chat dicts, got {type(m).__name__}")
        role = roles.get(m.type)
        if role is None:
            raise InvalidArgumentError(f"message type {m.type!r} has no chat role; valid: {sorted(roles)}")
        content = (
            m.content
            if isinstance(m.content, str)
            else [text_block(b) if isinstance(b, str) else dict(b) for b in m.content]
        )
        msg: ChatMessage = {"role": role, "content": content}
        if role == "tool" and getattr(m, "name", None):
            msg["name"] = m.name
        out.append(msg)
    return out


def api_blocks(
    content: Sequence[dict[str, Any]], image_block: Callable[[Any], dict[str, Any]]
) -> list[dict[str, Any]]:
    """Content blocks for an API backend: text blocks as they are, each image through ``image_block``.

    Other block types (unresolved frame references, ...) are dropped; images are encoded only here.
    """
    out: list[dict[str, Any]] = []
    for b in content:
        if b.get("type") == "image":
            out.append(image_block(b["image"]))
        elif b.get("type") == "text":
            out.append({"type": "text", "text": b["text"]})
    return out


def user_tool_role(asked: Optional[str], backend: str) -> str:
    """``"user"``, the only tool role an API backend of our text protocol can use; anything else is refused.

    Our tool calls are text, and APIs reject a ``tool`` message that answers no native tool call.

    Raises:
        InvalidArgumentError: If ``asked`` is neither None nor ``"user"``.
    """
    if asked not in (None, "user"):
        raise InvalidArgumentError(
            f"{backend} sends tool results as user turns; tool_role must be 'user' or left out, got {asked!r}"
        )
    return "user"


def image_to_base64(image: Any, *, fmt: str = "JPEG", quality: int = 85) -> str:
    """Encode a PIL image (or HxWx3 uint8 array) as base64 JPEG/PNG text."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format=fmt, quality=quality) if fmt.upper() == "JPEG" else image.save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode("ascii")


class CachingResolver:
    """Wraps a :class:`FrameResolver` with a small LRU cache of decoded frames.

    A conversation re-sends every earlier frame each turn; the cache keeps them from being
    decoded again. It lives beside the graph (in memory, thread-safe), never in graph state.
    Frames are keyed by (video, timestamp, size): a file rewritten in place under the same
    name is not noticed while its frames are cached.

    Args:
        resolver: The underlying resolver.
        max_items: Frames kept (about 0.5 MB each at 448 px).
    """

    def __init__(self, resolver: FrameResolver, max_items: int = 128):
        import threading
        from collections import OrderedDict

        self.resolver = resolver
        self.max_items = max_items
        self._cache: "OrderedDict[tuple[str, float, Optional[int]], Any]" = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, video: str, timestamps: Sequence[float], max_side: Optional[int] = None) -> list:
        keys = [(str(video), round(float(t), 4), max_side) for t in timestamps]
        with self._lock:
            missing = sorted({k[1] for k in keys if k not in self._cache})
        fetched = dict(zip(missing, self.resolver(video, missing, max_side=max_side))) if missing else {}
        with self._lock:
            out = []
            for k in keys:
                img = self._cache.get(k)
                if img is None:
                    if k[1] not in fetched:  # evicted by a concurrent call since the check
                        fetched[k[1]] = self.resolver(video, [k[1]], max_side=max_side)[0]
                    img = fetched[k[1]]
                    self._cache[k] = img
                self._cache.move_to_end(k)
                out.append(img)
            while len(self._cache) > self.max_items:
                self._cache.popitem(last=False)
        return out


class Policy(ABC):
    """A model that writes the next assistant turn of a conversation.

    Subclasses implement :meth:`_generate`, which receives the conversation with frame
    references already resolved to ``{"type": "image", "image": PIL}`` blocks.

    Attributes:
        name: Human-readable name (model id or path).
        max_new_tokens: Default token budget per turn.
        max_side: Longest side of frames given to the model.
        tool_role: ``"tool"`` keeps tool turns; ``"user"`` rewrites them as user turns.
        manifest: The checkpoint manifest, when loaded from one.
        text_only: The model reads text only: :meth:`prepare` renders frame references as text
            (:func:`agent_tools.observations.to_text_messages`) and sends no image parts.
        tagger: For ``text_only`` policies, the :class:`~agent_tools.observations.FrameTagger`
            whose zero-shot tags describe each frame (None: timestamps and scores only).
    """

    name: str = "policy"

    def __init__(
        self,
        *,
        max_new_tokens: int = 256,
        max_side: Optional[int] = 448,
        tool_role: str = "tool",
        manifest: Any = None,
        text_only: bool = False,
        tagger: Any = None,
    ):
        if max_new_tokens < 1:
            raise InvalidArgumentError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if tool_role not in ("tool", "user"):
            raise InvalidArgumentError(f"tool_role must be 'tool' or 'user', got {tool_role!r}")
        self.max_new_tokens = max_new_tokens
        self.max_side = max_side
        self.tool_role = tool_role
        self.manifest = manifest
        self.text_only = bool(text_only)
        self.tagger = tagger

    def prepare(self, messages: Sequence[ChatMessage], frames: Optional[FrameResolver]) -> list[ChatMessage]:
        """Resolve frame references (as text when :attr:`text_only`) and apply :attr:`tool_role`."""
        if self.text_only:
            from agent_tools.observations import to_text_messages

            resolved = to_text_messages(to_chat_messages(messages), self.tagger)
        else:
            resolved = resolve_frames(to_chat_messages(messages), frames, self.max_side)
        return tool_turns_as_user(resolved) if self.tool_role == "user" else resolved

    def generate_details(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_new_tokens: Optional[int] = None,
        frames: Optional[FrameResolver] = None,
    ) -> Generation:
        """Generate the next assistant turn, with token details when available.

        Args:
            messages: Conversation (chat dicts or LangChain messages); frames as references.
            max_new_tokens: Token budget for this turn (default :attr:`max_new_tokens`).
            frames: Resolver for the frame references.

        Returns:
            The :class:`Generation`.

        Raises:
            InvalidArgumentError: On ``max_new_tokens < 1``, or frame references without ``frames``.
        """
        if max_new_tokens is not None and max_new_tokens < 1:
            raise InvalidArgumentError(
                f"max_new_tokens must be >= 1 (or None for the policy's default), got {max_new_tokens}"
            )
        budget = int(max_new_tokens if max_new_tokens is not None else self.max_new_tokens)
        prepared = self.prepare(messages, frames)
        t0 = time.perf_counter()
        gen = self._generate(prepared, budget)
        gen.seconds = gen.seconds or (time.perf_counter() - t0)
        return gen

    def generate(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_new_tokens: Optional[int] = None,
        frames: Optional[FrameResolver] = None,
    ) -> str:
        """Generate the next assistant turn as text (see :meth:`generate_details`)."""
        return self.generate_details(messages, max_new_tokens=max_new_tokens, frames=frames).text

    @abstractmethod
    def _generate(self, messages: list[ChatMessage], max_new_tokens: int) -> Generation:
        """Backend call on a prepared conversation (images resolved)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
