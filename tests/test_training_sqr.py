"""training.sqr: zero-init identity, InfoNCE going down on a toy corpus, save/load, the refiner."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from agent_tools.policies import load_policy, read_manifest
from tests.agent_fakes import tiny_policy_path
from training.common import load_trainable_policy
from training.errors import TrainingDataError
from training.sqr import (
    SoftQueryProjector,
    SoftRefiner,
    SQRConfig,
    SQRExample,
    corpus_conversation,
    ensure_refine_token,
    infonce_loss,
    load_projector,
    load_sqr_examples,
    moment_vector,
    refine_hidden_state,
    refined_query,
    train_sqr,
)


def test_zero_initialised_projector_gives_the_plain_query(tiny_encoder):
    proj = SoftQueryProjector(hidden_size=64, text_width=tiny_encoder.text_width, num_tokens=4)
    assert torch.count_nonzero(proj.net[-1].weight) == 0 and torch.count_nonzero(proj.net[-1].bias) == 0
    texts = ["a red square", "the blue kitchen table"]
    soft = proj(torch.randn(2, 64))
    assert soft.shape == (2, 4, tiny_encoder.text_width) and torch.count_nonzero(soft) == 0
    q = refined_query(tiny_encoder, texts, soft)
    plain = torch.as_tensor(tiny_encoder.encode_text(texts))
    assert torch.allclose(q, plain, atol=1e-6)
    # inserting zero soft tokens *without* the residual would move the query: the correction matters
    raw = tiny_encoder.encode_text_with_soft_tokens(texts, soft.detach())
    assert not torch.allclose(raw.float(), plain, atol=1e-3)
    # and gradients reach the zero-initialised last layer
    refined_query(tiny_encoder, texts, proj(torch.randn(2, 64))).sum().backward()
    assert proj.net[-1].weight.grad.abs().sum() > 0


def test_infonce_by_hand():
    q = torch.tensor([[1.0, 0.0]])
    pos = torch.tensor([[0.6, 0.8]])
    negs = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]])
    # logits 0.6/0.1 = 6, 0, -10
    want = -math.log(math.exp(6) / (math.exp(6) + math.exp(0) + math.exp(-10)))
    assert float(infonce_loss(q, pos, negs, 0.1)) == pytest.approx(want, rel=1e-4)


def _toy_examples(clip20):
    # clip20 has 10 scenes of 2 s; each query's positive is one scene, the others are negatives
    v = str(clip20)
    scenes = [(v, 2.0 * i, 2.0 * i + 1.5) for i in range(6)]
    queries = ["a red square", "a green field", "a blue sky", "a dog runs"]
    return [
        SQRExample(q, scenes[(i + 3) % 6], scenes[i], [s for j, s in enumerate(scenes) if j != i])
        for i, q in enumerate(queries)
    ]


def _tiny_config(tmp_path, **kw) -> SQRConfig:
    """A quiet recipe over the tiny encoder, writing to ``tmp_path/sqr`` (policy and data passed in)."""
    base = dict(model="given", data="given", output_dir=str(tmp_path / "sqr"), encoder="tiny-untrained")
    base.update(learning_rate=3e-3, logging_steps=0, verify_frames=2)
    return SQRConfig(**{**base, **kw})


def test_infonce_decreases_on_a_toy_corpus_and_checkpoint_round_trips(searcher, clip20, tmp_path):
    policy = load_trainable_policy(tiny_policy_path())
    examples = _toy_examples(clip20)
    cfg = _tiny_config(tmp_path, num_tokens=4, batch_size=4, max_steps=80)
    result = train_sqr(cfg, searcher=searcher, policy=policy, examples=examples)
    first, last = result.losses[0], result.losses[-1]
    assert last < 0.6 * first and sum(result.losses[-5:]) < sum(result.losses[:5]), result.losses[::8]

    # the first step's loss is the plain query's loss (zero-init): check it independently
    pos = torch.stack([moment_vector(searcher, *ex.positive) for ex in examples])
    negs = torch.stack([torch.stack([moment_vector(searcher, *m) for m in ex.negatives]) for ex in examples])
    plain = torch.as_tensor(searcher.encoder.encode_text([ex.query for ex in examples]))
    assert first == pytest.approx(float(infonce_loss(plain, pos, negs, 0.1)), rel=1e-4)

    manifest = read_manifest(result.output_dir)
    assert manifest.soft_refinement is True and manifest.encoder == "tiny-untrained"
    proj, meta = load_projector(result.output_dir)
    assert meta["num_tokens"] == 4 and meta["text_width"] == searcher.encoder.text_width
    for a, b in zip(proj.state_dict().values(), result.projector.state_dict().values()):
        assert torch.equal(a, b)

    # load_policy attaches the refiner; it reproduces the trained refinement
    loaded = load_policy(result.output_dir, device="cpu")
    assert "<REFINE>" in loaded.tokenizer.get_vocab()
    assert isinstance(loaded.refine_query_vector, SoftRefiner)
    ex = examples[0]
    convo = corpus_conversation(ex.query, *ex.shown, frames=2)
    vec = loaded.refine_query_vector(convo, frames=searcher.frames)
    assert vec.shape == (searcher.encoder.dim,) and abs(float(np.linalg.norm(vec)) - 1) < 1e-5
    with torch.no_grad():
        h = refine_hidden_state(policy, convo, searcher.frames)
        want = refined_query(searcher.encoder, [ex.query], result.projector(h))[0].numpy()
    assert np.allclose(vec, want, atol=1e-5)
    assert not np.allclose(vec, searcher.encoder.encode_text([ex.query])[0], atol=1e-3)  # it did refine


def test_refine_token_is_added_once():
    policy = load_trainable_policy(tiny_policy_path())
    n = len(policy.tokenizer)
    rid = ensure_refine_token(policy)
    assert rid == n and ensure_refine_token(policy) == rid
    assert policy.model.get_input_embeddings().weight.shape[0] >= n + 1


def test_sqr_jsonl_rows(tmp_path, clip20):
    p = tmp_path / "sqr.jsonl"
    m = lambda s: {"video": str(clip20), "start": s, "end": s + 1}
    p.write_text(json.dumps({"query": "q", "shown": m(4), "positive": m(0), "negatives": [m(2)]}) + "\n")
    ex = load_sqr_examples(p)[0]
    assert ex.positive == (str(clip20), 0.0, 1.0) and ex.negatives == [(str(clip20), 2.0, 3.0)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(p.read_text() + "{not json\n")
    with pytest.raises(TrainingDataError, match="bad.jsonl:2: not valid JSON"):
        load_sqr_examples(bad)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(TrainingDataError, match="holds no examples"):
        load_sqr_examples(tmp_path / "empty.jsonl")


def test_corpus_graph_searches_with_the_trained_soft_query(searcher, clip20, tmp_path):
    """The checkpoint runs in the tools: a not_matched verdict re-queries with the SQR vector."""
    from agent_tools.graphs import build_corpus_graph
    from agent_tools.types import Moment
    from tests.agent_fakes import FakeMomentSearcher

    policy = load_trainable_policy(tiny_policy_path())
    cfg = _tiny_config(tmp_path, num_tokens=2, max_steps=3)
    out_dir = train_sqr(cfg, searcher=searcher, policy=policy, examples=_toy_examples(clip20)).output_dir
    loaded = load_policy(out_dir, device="cpu", max_new_tokens=4)  # untrained: its verdicts are unusable
    moments = [
        Moment(video_id=f"clip-{i}", path=str(clip20), start=2.0 * i, end=2.0 * i + 1.5, score=1.0 - 0.1 * i)
        for i in range(3)
    ]
    ms = FakeMomentSearcher(moments)
    graph = build_corpus_graph(loaded, ms, max_rounds=2, verify_frames=2, frames=searcher.frames).compile()
    out = graph.invoke({"query": "a red square"})
    assert ms.queries[0] == "a red square"
    assert len(ms.queries) == 2 and isinstance(ms.queries[1], np.ndarray)
    convo = corpus_conversation("a red square", str(clip20), 0.0, 1.5, frames=2, video_id="clip-0")
    assert np.allclose(ms.queries[1], loaded.refine_query_vector(convo, frames=searcher.frames), atol=1e-5)
    assert out["status"] in ("not_found", "matched")


def test_checkpoint_claiming_soft_refinement_without_projector_is_rejected(tmp_path):
    import shutil

    from agent_tools.policies import PolicyLoadError

    d = tmp_path / "ckpt"
    shutil.copytree(tiny_policy_path(), d)
    manifest = json.loads((d / "videoseek_policy.json").read_text())
    manifest["soft_refinement"] = True
    (d / "videoseek_policy.json").write_text(json.dumps(manifest))
    with pytest.raises(PolicyLoadError, match="lacks sqr_projector"):
        load_policy(d)
