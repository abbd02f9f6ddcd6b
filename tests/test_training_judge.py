"""training.judge: LLM judges for open-ended answers, through a fake LangChain chat model and an
OpenAI client on an ``httpx.MockTransport`` (no network).

Rules carried over from TimeSearch-R @ 8d51dbc ``time_r1/reward/llm_judge.py`` ``llm_judge_score``:
answers of 100+ characters score 0 without a call, the verdict is 1 or 0, anything else scores 0,
temperature 0.3 on the OpenAI path, the server's first model when none is named.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from training import rewards as R
from training.errors import TrainingConfigError
from training.judge import (
    JudgeError,
    LLMJudge,
    build_judge,
    exact_match_judge,
    judge_from_env,
    judge_messages,
    parse_verdict,
)


class KeywordJudgeModel(BaseChatModel):
    """A fake chat model: verdict 1 when the candidate line contains the keyword; records prompts."""

    keyword: str = "red"
    seen: list = []
    reply_format: str = "{v}"

    @property
    def _llm_type(self) -> str:
        return "keyword-fake"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.seen.append([(m.type, m.content) for m in messages])
        candidate = messages[-1].content.split("Candidate:")[-1].split("\n")[0]
        v = "1" if self.keyword in candidate else "0"
        return ChatResult(
            generations=[ChatGeneration(message=AIMessage(content=self.reply_format.format(v=v)))]
        )


def test_parse_verdict():
    # llm_judge_score: the text after 'Judgement:' (or the whole reply) must be exactly '1' or '0'.
    replies = ["1", " 0 ", "Verdict: 1", "Judgement: 0", "1.", "yes", "10", "", None]
    assert [parse_verdict(t) for t in replies] == [1.0, 0.0, 1.0, 0.0, 1.0, None, None, None, None]


def test_prompt_holds_question_truth_and_candidate():
    msgs = judge_messages("What colour is the car?", " red ", "The car is red.")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[1]["content"].endswith(
        "Question: What colour is the car?\nReference: The car is red.\nCandidate: red\nVerdict:"
    )


def test_langchain_judge_scores_caches_and_refuses_long_answers():
    model = KeywordJudgeModel(seen=[])
    judge = build_judge(chat_model=model)
    assert isinstance(judge, LLMJudge)
    assert judge("What colour?", "red", "Red.") == 1.0
    assert judge("What colour?", "blue", "Red.") == 0.0
    assert judge("What colour?", "red ", "Red.") == 1.0  # same stripped answer: cached
    assert judge.calls == 2 and len(model.seen) == 2
    assert model.seen[0][0][0] == "system" and "Candidate: red" in model.seen[0][1][1]
    long = "red " * 25  # 100 characters: scored 0 without asking (the reference's anti-hacking cap)
    assert judge("What colour?", long, "Red.") == 0.0 and judge.calls == 2


def test_unparsable_verdict_scores_zero():
    model = KeywordJudgeModel(seen=[], reply_format="I think the answer {v} is plausible")
    judge = LLMJudge(model)
    assert judge("q", "red", "red") == 0.0 and judge.unparsable == 1


def test_judge_drives_the_open_ended_rewards():
    # TimeSearch-R v7 general_answer_score('open_ended') -> the judge; the CSV reward judges the
    # re-answer too, a * c with both in {0, 1}.
    model = KeywordJudgeModel(seen=[])
    judge = build_judge(chat_model=model, max_concurrency=2)
    comps = [
        [{"role": "assistant", "content": f"<think>t</think><answer>{a}</answer>"}]
        for a in ("a red one", "blue", "red")
    ]
    kw = dict(answer="The car is red.", question="What colour is the car?", problem_type="open_ended")
    assert R.make_accuracy_reward(judge)(completions=comps, **kw) == [1.0, 0.0, 1.0]
    ver = [
        {"answer": "red", "num_frames": 2},
        {"answer": "red", "num_frames": 2},
        {"answer": None, "num_frames": 0},
    ]
    assert R.make_csv_reward(judge)(completions=comps, verification=ver, **kw) == [1.0, 0.0, 0.0]
    # without a judge, exact match: 'a red one' != 'car is red'
    assert R.accuracy_reward(completions=comps, **kw) == [0.0, 0.0, 0.0]


def openai_transport(replies: list[str], seen: list[dict]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": [
                {"id": "judge-7b", "object": "model", "created": 0, "owned_by": "me"}]})  # fmt: skip
        body = json.loads(request.content)
        seen.append(body)
        reply = replies[min(len(seen) - 1, len(replies) - 1)]
        return httpx.Response(200, json={
            "id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": reply}}],
        })  # fmt: skip

    return httpx.MockTransport(handler)


def test_openai_compatible_endpoint_through_mock_transport():
    pytest.importorskip("openai")
    seen: list[dict] = []
    client = httpx.Client(transport=openai_transport(["Verdict: 1", "0"], seen))
    judge = build_judge(base_url="http://judge.test/v1", http_client=client)
    assert judge.model == "judge-7b"  # the server's first model, as the reference picks it
    assert judge("Who opens the door?", "the boy", "A boy opens it.") == 1.0
    assert judge("Who opens the door?", "the girl", "A boy opens it.") == 0.0
    assert [b["model"] for b in seen] == ["judge-7b"] * 2
    assert seen[0]["temperature"] == 0.3
    assert [m["role"] for m in seen[0]["messages"]] == ["system", "user"]
    assert "Candidate: the boy" in seen[0]["messages"][1]["content"]


def test_backend_failure_is_a_clear_error():
    pytest.importorskip("openai")

    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": {"message": "boom"}})

    client = httpx.Client(transport=httpx.MockTransport(broken))
    judge = build_judge(
        base_url="http://judge.test/v1", model="m", http_client=client, max_retries=0, retries=1
    )
    with pytest.raises(JudgeError, match="failed 2 times"):
        judge("q", "a", "b")
    with pytest.raises(JudgeError, match="list the models"):
        dead = httpx.Client(transport=httpx.MockTransport(broken))
        build_judge(base_url="http://judge.test/v1", http_client=dead, max_retries=0)


def test_fallback_and_config_errors(monkeypatch):
    monkeypatch.delenv("VIDEOSEEK_JUDGE_BASE_URL", raising=False)
    assert build_judge() is exact_match_judge and judge_from_env() is exact_match_judge
    assert exact_match_judge("q", "The red car.", "red car") == 1.0
    assert exact_match_judge("q", "a car, red", "red car") == 0.0  # paraphrases are missed offline
    with pytest.raises(TrainingConfigError, match="chat model"):
        LLMJudge()
