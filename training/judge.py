"""Judges for open-ended answers: an LLM (any LangChain chat model or OpenAI-compatible endpoint).

TimeSearch-R scores its open-ended answers (about 60% of its data) with an LLM judge
(``time_r1/reward/llm_judge.py`` @ 8d51dbc): a vLLM server behind the OpenAI API, temperature
0.3, a 0/1 verdict, an answer of 100 characters or more scored 0 without asking (so a policy
cannot hack the judge with long hedging answers), and an unparsable verdict scored 0. This
module keeps those rules with its own prompt.

- :class:`LLMJudge` - ``judge(question, prediction, truth) -> 0.0 | 1.0``; a LangChain chat
  model (``.invoke``) or an ``openai.OpenAI`` client plus model name. Verdicts are cached per
  ``(question, prediction, truth)``; :meth:`LLMJudge.prefetch` scores many at once in threads
  (the rewards call it for a whole batch).
- :func:`exact_match_judge` - the documented offline fallback: normalised exact match
  (lower-case, no punctuation or articles). It misses paraphrases (``"it is pink"`` vs
  ``"pink"``), so it under-rewards; use it only where no judge model is reachable.
- :func:`build_judge` - from a chat model, an endpoint (``base_url``, ``model``; the model is
  the server's first when omitted, as the reference does), or nothing (the fallback).
- :func:`judge_from_env` - the same from ``VIDEOSEEK_JUDGE_BASE_URL``, ``VIDEOSEEK_JUDGE_MODEL``,
  ``VIDEOSEEK_JUDGE_API_KEY``.
- :class:`JudgeError` - the judge backend failed (after retries); the message names it.

Usage::

    from training.judge import build_judge
    judge = build_judge(base_url="http://localhost:8000/v1")      # vLLM / any OpenAI-compatible server
    judge = build_judge(chat_model=ChatOpenAI(model="gpt-4o-mini", temperature=0.3))
    judge("What colour is the car?", "red", "The car is red.")    # 1.0
"""

from __future__ import annotations

import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Optional

from agent_tools.errors import VideoseekError
from training.errors import TrainingConfigError
from training.rewards._common import normalize_text

__all__ = [
    "JudgeError",
    "JUDGE_SYSTEM_PROMPT",
    "MAX_ANSWER_CHARS",
    "judge_messages",
    "parse_verdict",
    "LLMJudge",
    "exact_match_judge",
    "build_judge",
    "judge_from_env",
]

log = logging.getLogger(__name__)

#: Answers this long or longer score 0 without a call (TimeSearch-R's anti-hacking rule).
MAX_ANSWER_CHARS = 100

JUDGE_SYSTEM_PROMPT = (
    "You grade short answers to questions about videos against a reference answer. "
    "Reply with a single digit and nothing else."
)

_INSTRUCTIONS = """Does the candidate answer say the same thing as the reference answer to the question?

Write 1 when it does: the same fact, even if worded differently, shorter, or without repeating the question \
("left" for "The cup is on the left of the plate").
Write 0 when it does not: a different or contradicting fact, a missing key detail the question asks for, \
several alternatives offered at once, or a refusal.

Worked examples:
Question: How many people enter the room? | Reference: Three people enter. | Candidate: 3 | Verdict: 1
Question: What does the woman pick up? | Reference: A blue mug. | Candidate: a cup, blue | Verdict: 1
Question: Is the door open at the end? | Reference: No, it is closed. | Candidate: yes | Verdict: 0
Question: What colour is the bike? | Reference: Green. | Candidate: green or yellow | Verdict: 0
Question: Where does the dog run? | Reference: Into the garden. | Candidate: I don't know | Verdict: 0

Question: {question}
Reference: {truth}
Candidate: {prediction}
Verdict:"""


class JudgeError(VideoseekError):
    """The judge model could not be reached or failed; the message names the backend and the cause."""


def judge_messages(question: str, prediction: str, truth: str) -> list[dict[str, str]]:
    """The chat messages sent to the judge (system + one user message).

    Args:
        question: The question.
        prediction: The policy's answer.
        truth: The reference answer.

    Returns:
        OpenAI-style ``[{"role", "content"}, ...]``.
    """
    user = _INSTRUCTIONS.format(
        question=question.strip(), truth=str(truth).strip(), prediction=prediction.strip()
    )
    return [{"role": "system", "content": JUDGE_SYSTEM_PROMPT}, {"role": "user", "content": user}]


_VERDICT = re.compile(r"(?:verdict|judge?ment)\s*:", re.IGNORECASE)


def parse_verdict(text: Optional[str]) -> Optional[float]:
    """1.0 or 0.0 from the judge's reply, or None when it is neither.

    The text after the last ``Verdict:`` (or the whole reply) must be exactly ``1`` or ``0``
    (a trailing period allowed), as the reference requires.
    """
    s = (text or "").strip()
    parts = _VERDICT.split(s)
    s = parts[-1].strip().rstrip(".").strip()
    return {"1": 1.0, "0": 0.0}.get(s)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            b if isinstance(b, str) else str(b.get("text", "")) for b in content if isinstance(b, (str, dict))
        )
    return "" if content is None else str(content)


class LLMJudge:
    """An LLM judge, callable as ``judge(question, prediction, truth) -> 0.0 | 1.0``.

    Args:
        chat_model: A LangChain chat model (anything with ``.invoke(messages)`` returning a
            message with ``.content``). Its own settings (temperature ...) apply.
        client: An ``openai.OpenAI`` client (used when ``chat_model`` is None).
        model: The model name for ``client``.
        temperature: Sampling temperature for ``client`` (0.3 in the reference).
        max_answer_chars: Answers at least this long score 0 without a call; None disables.
        retries: Extra attempts when the backend raises.
        max_concurrency: Threads :meth:`prefetch` uses.

    Raises:
        TrainingConfigError: With neither a chat model nor a client and model.
    """

    def __init__(
        self,
        chat_model: Any = None,
        *,
        client: Any = None,
        model: Optional[str] = None,
        temperature: float = 0.3,
        max_answer_chars: Optional[int] = MAX_ANSWER_CHARS,
        retries: int = 2,
        max_concurrency: int = 8,
    ) -> None:
        if chat_model is None and (client is None or not model):
            raise TrainingConfigError(
                "LLMJudge needs a LangChain chat model, or an OpenAI-compatible client and a model name"
            )
        self.chat_model, self.client, self.model = chat_model, client, model
        self.temperature, self.max_answer_chars = temperature, max_answer_chars
        self.retries, self.max_concurrency = max(0, int(retries)), max(1, int(max_concurrency))
        self.cache: dict[tuple[str, str, str], float] = {}
        self.calls = 0
        self.unparsable = 0

    @property
    def backend(self) -> str:
        """A short description of the backend, for messages."""
        if self.chat_model is not None:
            return f"LangChain {type(self.chat_model).__name__}"
        return f"OpenAI-compatible {getattr(self.client, 'base_url', '?')} model {self.model}"

    def _ask(self, messages: list[dict[str, str]]) -> str:
        if self.chat_model is not None:
            from langchain_core.messages import HumanMessage, SystemMessage

            reply = self.chat_model.invoke(
                [SystemMessage(content=messages[0]["content"]), HumanMessage(content=messages[1]["content"])]
            )
            return _content_text(getattr(reply, "content", reply))
        resp = self.client.chat.completions.create(
            model=self.model, messages=messages, temperature=self.temperature
        )
        return _content_text(resp.choices[0].message.content)

    def _score(self, question: str, prediction: str, truth: str) -> float:
        last: Optional[BaseException] = None
        for _ in range(self.retries + 1):
            try:
                self.calls += 1
                reply = self._ask(judge_messages(question, prediction, truth))
                break
            except Exception as exc:  # noqa: BLE001 - any backend failure is retried, then reported
                last = exc
        else:
            raise JudgeError(f"the judge ({self.backend}) failed {self.retries + 1} times: {last}") from last
        verdict = parse_verdict(reply)
        if verdict is None:
            self.unparsable += 1
            log.warning("judge reply is not a 0/1 verdict, scored 0: %r", reply[:200])
            return 0.0
        return verdict

    def __call__(self, question: str, prediction: str, truth: str) -> float:
        """Score one answer (cached)."""
        if self.max_answer_chars is not None and len(prediction) >= self.max_answer_chars:
            return 0.0
        key = (question, prediction.strip(), str(truth))
        if key not in self.cache:
            self.cache[key] = self._score(question, prediction, str(truth))
        return self.cache[key]

    def prefetch(self, items: Iterable[tuple[str, str, str]]) -> None:
        """Score many ``(question, prediction, truth)`` triples concurrently into the cache."""
        todo, queued = [], set()
        for q, p, t in items:
            key = (q, p.strip(), str(t))
            too_long = self.max_answer_chars is not None and len(p) >= self.max_answer_chars
            if not too_long and key not in self.cache and key not in queued:
                queued.add(key)
                todo.append((key, (q, p, str(t))))
        if len(todo) < 2:
            return
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(todo))) as pool:
            scores = list(pool.map(lambda item: self._score(*item[1]), todo))
        for (key, _), s in zip(todo, scores):
            self.cache[key] = s


def exact_match_judge(question: str, prediction: str, truth: str) -> float:
    """The offline fallback: 1.0 when the normalised answer equals the normalised truth."""
    p = normalize_text(prediction)
    return 1.0 if p and p == normalize_text(truth) else 0.0


def build_judge(
    *,
    chat_model: Any = None,
    base_url: Optional[str] = None,
    model: Optional[str] = None,
    api_key: Optional[str] = None,
    http_client: Any = None,
    max_retries: Optional[int] = None,
    **options: Any,
) -> Any:
    """A judge for :func:`training.rewards.make_accuracy_reward` / ``make_csv_reward``.

    Args:
        chat_model: A LangChain chat model.
        base_url: An OpenAI-compatible endpoint (``http://host:8000/v1``), used without a chat model.
        model: Model name at ``base_url``; None takes the server's first model (as the reference).
        api_key: API key (``"EMPTY"`` when None, as local servers accept).
        http_client: An ``httpx.Client`` for the OpenAI SDK (proxies, tests).
        max_retries: The OpenAI SDK's own retries with backoff (its default when None).
        **options: :class:`LLMJudge` options (``temperature``, ``max_answer_chars``, ``retries``, ...).

    Returns:
        An :class:`LLMJudge`, or :func:`exact_match_judge` when neither a chat model nor an
        endpoint is given (logged, since it under-rewards paraphrases).

    Raises:
        TrainingConfigError: If ``openai`` is missing for an endpoint.
        JudgeError: If the endpoint lists no model.
    """
    if chat_model is not None:
        return LLMJudge(chat_model, **options)
    if not base_url:
        log.info("no judge model configured: open-ended answers are scored by normalised exact match")
        return exact_match_judge
    try:
        import openai
    except ImportError as exc:  # pragma: no cover - openai ships with the train extra
        raise TrainingConfigError(
            "an OpenAI-compatible judge needs the 'openai' package (pip install openai)"
        ) from exc
    kwargs: dict[str, Any] = {"base_url": base_url, "api_key": api_key or "EMPTY"}
    if http_client is not None:
        kwargs["http_client"] = http_client
    if max_retries is not None:
        kwargs["max_retries"] = max_retries
    client = openai.OpenAI(**kwargs)
    if not model:
        try:
            models = [m.id for m in client.models.list()]
        except Exception as exc:  # noqa: BLE001
            raise JudgeError(f"cannot list the models of the judge endpoint {base_url}: {exc}") from exc
        if not models:
            raise JudgeError(f"the judge endpoint {base_url} serves no model; pass model=")
        model = models[0]
    return LLMJudge(client=client, model=model, **options)


def judge_from_env(**options: Any) -> Any:
    """:func:`build_judge` from ``VIDEOSEEK_JUDGE_BASE_URL``, ``VIDEOSEEK_JUDGE_MODEL``,
    ``VIDEOSEEK_JUDGE_API_KEY`` (the exact-match fallback when the URL is unset)."""
    return build_judge(
        base_url=os.environ.get("VIDEOSEEK_JUDGE_BASE_URL") or None,
        model=os.environ.get("VIDEOSEEK_JUDGE_MODEL") or None,
        api_key=os.environ.get("VIDEOSEEK_JUDGE_API_KEY") or None,
        **options,
    )
