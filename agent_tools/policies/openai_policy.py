"""Policy backend over an OpenAI-compatible ``/chat/completions`` endpoint.

This is what ``vllm serve <policy dir>`` (and SGLang, TGI, llama.cpp server, hosted APIs)
exposes. Requests go through the ``openai`` SDK (``openai.OpenAI(base_url=..., timeout=...,
max_retries=...)``), so connection errors, 408/409/429 and 5xx answers are retried with
exponential backoff (honouring ``Retry-After``) before an error is raised. Frames are encoded as
base64 JPEG data URLs only while the request body is built; conversations keep references. Our
tool calls are text, so tool turns are sent as user turns (an OpenAI-style API rejects a
``tool`` message that answers no native tool call).

Names: :class:`OpenAIPolicy`, :func:`to_openai_messages` (and, re-exported from the protocol,
:func:`~agent_tools.protocol.close_open_block`).

Usage::

    policy = OpenAIPolicy("http://localhost:8000/v1", model="videoseek-7b")
    text = policy.generate(messages, frames=searcher.frames)
"""

from __future__ import annotations

import os
from typing import Any, Optional

from agent_tools.errors import InvalidArgumentError
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
    """Calls an OpenAI-compatible chat completions server once per turn (``openai`` SDK).

    Args:
        base_url: Server base URL, e.g. ``http://localhost:8000/v1``.
        model: Served model name (default: the first one ``GET /models`` lists).
        api_key: Bearer token (default ``$OPENAI_API_KEY``; vLLM needs none, ``"EMPTY"`` is sent).
        temperature: Sampling temperature (0 = greedy).
        timeout: Seconds per request attempt.
        max_retries: Retries after a connection error, timeout, 408/409/429 or 5xx answer, with
            exponential backoff (0.5 s doubling, at most 8 s, or the server's ``Retry-After``).
        jpeg_quality: JPEG quality of the frames sent.
        extra_body: Extra request fields (e.g. ``{"top_k": 20}`` for vLLM).
        http_client: An ``httpx.Client`` for the SDK to use (tests pass one with a mock
            transport; proxies, certificates).
        client: Former name of ``http_client`` (still accepted).
        **policy_kwargs: ``max_new_tokens``, ``max_side``, ``manifest`` (``tool_role`` is always
            ``"user"``; another value raises :class:`~agent_tools.errors.InvalidArgumentError`).

    Raises:
        InvalidArgumentError: On a negative ``max_retries`` or a non-positive ``timeout``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: Optional[str] = None,
        api_key: Optional[str] = None,
        temperature: float = 0.0,
        timeout: float = 120.0,
        max_retries: int = 4,
        jpeg_quality: int = 85,
        extra_body: Optional[dict[str, Any]] = None,
        http_client: Any = None,
        client: Any = None,
        **policy_kwargs: Any,
    ):
        import openai

        policy_kwargs["tool_role"] = user_tool_role(policy_kwargs.get("tool_role"), "OpenAIPolicy")
        manifest = policy_kwargs.get("manifest")
        if manifest is not None:
            policy_kwargs.setdefault("max_new_tokens", manifest.max_new_tokens)
            policy_kwargs.setdefault("max_side", manifest.max_side)
        super().__init__(**policy_kwargs)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise InvalidArgumentError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        if not timeout or timeout <= 0:
            raise InvalidArgumentError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.temperature = temperature
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.jpeg_quality = jpeg_quality
        self.extra_body = dict(extra_body or {})
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.client = openai.OpenAI(
            base_url=self.base_url,
            api_key=key or "EMPTY",
            timeout=self.timeout,
            max_retries=max_retries,
            http_client=http_client if http_client is not None else client,
        )
        self.name = model or self.base_url

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        """Run one SDK call; its errors become :class:`PolicyLoadError` naming the endpoint."""
        import openai

        url = f"{self.base_url}{what}"
        tries = f"{self.max_retries + 1} attempt{'s' if self.max_retries else ''}"
        try:
            return fn(**kwargs)
        except openai.APITimeoutError:
            raise PolicyLoadError(
                f"the policy server at {url} did not answer within {self.timeout:g} s ({tries}); raise "
                "timeout= or check the server"
            ) from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise PolicyLoadError(
                f"cannot reach the policy server at {url} ({tries}): {cause}; start one with "
                "`vllm serve <policy dir>`"
            ) from None
        except openai.APIStatusError as exc:
            text = exc.response.text[:300] if exc.response is not None else str(exc)
            raise PolicyLoadError(
                f"policy server {url} answered {exc.status_code} ({tries}): {text}"
            ) from None
        except openai.OpenAIError as exc:  # e.g. a body that is not JSON
            raise PolicyLoadError(f"policy server {url}: {exc}") from None

    def resolve_model(self) -> str:
        """The served model name (asks ``GET /models`` once when none was given)."""
        if self.model is None:
            page = self._call("/models", self.client.models.list)
            data = list(getattr(page, "data", None) or [])
            if not data:
                raise PolicyLoadError(f"{self.base_url}/models lists no model; pass model=...")
            self.model = data[0].id
            self.name = self.model
        return self.model

    def build_request(self, messages: list[ChatMessage], max_new_tokens: int) -> dict[str, Any]:
        """The JSON body of one ``/chat/completions`` request (``extra_body`` merged in)."""
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
        body = self.build_request(messages, max_new_tokens)
        standard = {k: body.pop(k) for k in ("model", "messages", "max_tokens", "temperature", "stop")}
        completion = self._call(
            "/chat/completions", self.client.chat.completions.create, **standard, extra_body=body or None
        )
        try:
            choice = completion.choices[0]
            text = choice.message.content or ""
        except (AttributeError, IndexError, TypeError):
            raise PolicyLoadError(
                f"unexpected chat completion response from {self.base_url}: {str(completion)[:300]}"
            ) from None
        finish = choice.finish_reason
        stop_reason = getattr(choice, "stop_reason", None)  # vLLM: the stop string that matched
        if (
            finish == "stop"
            and isinstance(stop_reason, str)
            and stop_reason in STOP_STRINGS
            and not text.endswith(stop_reason)
        ):
            text += stop_reason
        elif finish == "stop":
            text = close_open_block(text)
        usage = completion.usage
        return Generation(
            text=text,
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
            finish_reason=finish,
        )
