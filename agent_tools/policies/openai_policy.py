"""Policy backend over an OpenAI-compatible ``/chat/completions`` endpoint.

This is what ``vllm serve <policy dir>`` (and SGLang, TGI, llama.cpp server, hosted APIs)
exposes. Frames are encoded as base64 JPEG data URLs only while the request body is built;
conversations keep references. Our tool calls are text, so tool turns are sent as user
turns (an OpenAI-style API rejects a ``tool`` message that answers no native tool call).

Names: :class:`OpenAIPolicy`, :func:`to_openai_messages` (and, re-exported from the protocol,
:func:`~agent_tools.protocol.close_open_block`).

Usage::

    policy = OpenAIPolicy("http://localhost:8000/v1", model="videoseek-7b")
    text = policy.generate(messages, frames=searcher.frames)
"""

from __future__ import annotations

import os
from typing import Any, Optional

import httpx

from agent_tools.policies.base import (
    ChatMessage,
    Generation,
    Policy,
    api_blocks,
    image_to_base64,
    user_tool_role,
)
from agent_tools.policies.manifest import PolicyLoadError
from agent_tools.protocol import STOP_STRINGS, close_open_block

__all__ = ["OpenAIPolicy", "to_openai_messages", "close_open_block"]


def to_openai_messages(messages: list[ChatMessage], *, jpeg_quality: int = 85) -> list[dict[str, Any]]:
    """Prepared chat messages (images resolved) -> OpenAI ``messages`` with data-URL images."""

    def image_url(image: Any) -> dict[str, Any]:
        url = "data:image/jpeg;base64," + image_to_base64(image, quality=jpeg_quality)
        return {"type": "image_url", "image_url": {"url": url}}

    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            parts = api_blocks(content, image_url)
            if m["role"] in ("assistant", "system"):  # these roles take text only
                content = "".join(p.get("text", "") for p in parts)
            else:
                content = parts
        out.append({"role": m["role"], "content": content if content is not None else ""})
    return out


class OpenAIPolicy(Policy):
    """Calls an OpenAI-compatible chat completions server once per turn.

    Args:
        base_url: Server base URL, e.g. ``http://localhost:8000/v1``.
        model: Served model name (default: the first one ``GET /models`` lists).
        api_key: Bearer token (default ``$OPENAI_API_KEY``; vLLM needs none).
        temperature: Sampling temperature (0 = greedy).
        timeout: Seconds per request.
        jpeg_quality: JPEG quality of the frames sent.
        extra_body: Extra request fields (e.g. ``{"top_k": 20}`` for vLLM).
        client: An ``httpx.Client`` to use (tests pass one with a mock transport).
        **policy_kwargs: ``max_new_tokens``, ``max_side``, ``manifest`` (``tool_role`` is always
            ``"user"``; another value raises :class:`~agent_tools.errors.InvalidArgumentError`).
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: Optional[str] = None,
        api_key: Optional[str] = None,
        temperature: float = 0.0,
        timeout: float = 120.0,
        jpeg_quality: int = 85,
        extra_body: Optional[dict[str, Any]] = None,
        client: Optional[httpx.Client] = None,
        **policy_kwargs: Any,
    ):
        policy_kwargs["tool_role"] = user_tool_role(policy_kwargs.get("tool_role"), "OpenAIPolicy")
        manifest = policy_kwargs.get("manifest")
        if manifest is not None:
            policy_kwargs.setdefault("max_new_tokens", manifest.max_new_tokens)
            policy_kwargs.setdefault("max_side", manifest.max_side)
        super().__init__(**policy_kwargs)
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.temperature = temperature
        self.jpeg_quality = jpeg_quality
        self.extra_body = dict(extra_body or {})
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = client or httpx.Client(timeout=timeout)
        self._headers = headers
        self.name = model or self.base_url

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        try:
            r = self.client.request(method, url, headers=self._headers, **kwargs)
        except httpx.HTTPError as exc:
            raise PolicyLoadError(
                f"cannot reach the policy server at {url}: {exc}; start one with `vllm serve <policy dir>`"
            ) from None
        if r.status_code >= 400:
            raise PolicyLoadError(f"policy server {url} answered {r.status_code}: {r.text[:300]}")
        try:
            return r.json()
        except ValueError:
            raise PolicyLoadError(f"policy server {url} did not return JSON: {r.text[:200]!r}") from None

    def resolve_model(self) -> str:
        """The served model name (asks ``GET /models`` once when none was given)."""
        if self.model is None:
            data = self._request("GET", "/models").get("data") or []
            if not data:
                raise PolicyLoadError(f"{self.base_url}/models lists no model; pass model=...")
            self.model = data[0]["id"]
            self.name = self.model
        return self.model

    def build_request(self, messages: list[ChatMessage], max_new_tokens: int) -> dict[str, Any]:
        """The JSON body of one ``/chat/completions`` request."""
        body = {
            "model": self.resolve_model(),
            "messages": to_openai_messages(messages, jpeg_quality=self.jpeg_quality),
            "max_tokens": max_new_tokens,
            "temperature": self.temperature,
            "stop": list(STOP_STRINGS),
        }
        body.update(self.extra_body)
        return body

    def _generate(self, messages: list[ChatMessage], max_new_tokens: int) -> Generation:
        data = self._request("POST", "/chat/completions", json=self.build_request(messages, max_new_tokens))
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError):
            raise PolicyLoadError(f"unexpected chat completion response: {str(data)[:300]}") from None
        finish = choice.get("finish_reason")
        stop_reason = choice.get("stop_reason")  # vLLM: the stop string that matched
        if (
            finish == "stop"
            and isinstance(stop_reason, str)
            and stop_reason in STOP_STRINGS
            and not text.endswith(stop_reason)
        ):
            text += stop_reason
        elif finish == "stop":
            text = close_open_block(text)
        usage = data.get("usage") or {}
        return Generation(
            text=text,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            finish_reason=finish,
        )
