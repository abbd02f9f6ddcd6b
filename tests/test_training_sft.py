"""training.sft / training.data: live tool replay, assistant-only masks, TRL SFTTrainer runs on CPU.

Also: mid-run checkpoints + resume, LoRA merged into a loadable policy, eval during training,
the manifest's trained-with settings and `videoseek ask` using them, one-line errors from `main`.
"""

from __future__ import annotations

import json

import pytest
import torch

from agent_tools.graphs import AgentRunner, build_temporal_graph
from agent_tools.policies import load_policy, read_manifest
from tests.agent_fakes import answer, seek_call, tiny_policy_path
from training.common import load_trainable_policy
from training.config import load_config
from training.data import Trajectory, encode_conversation, load_trajectories, replay_trajectory
from training.errors import TrainingConfigError, TrainingDataError
from training.sft import SFTConfig, assistant_loss, main, train_sft

pytest.importorskip("trl")

Q = "What colour is the square?"


def trajectories(video):
    return [
        Trajectory(Q, str(video), [seek_call("a square", 0, 10, 3, think="look early"), answer("red")]),
        Trajectory(
            Q, str(video), [seek_call("the end", 12, 20, 2), seek_call("blue sky", 0, 6, 2), answer("blue")]
        ),
        Trajectory("Is there a dog?", str(video), [answer("no", think="the preview shows none")]),
    ]


def test_replay_regenerates_tool_output_with_the_real_searcher(searcher, clip20):
    traj = trajectories(clip20)[0]
    rollout = replay_trajectory(traj, searcher, max_turns=4, preview_frames=2)
    tool = [m for m in rollout.messages if m["role"] == "tool"]
    assert len(tool) == 1
    frames = [b["timestamp"] for b in tool[0]["content"] if b.get("type") == "frame"]
    want = searcher.seek(str(clip20), "a square", start_time=0, end_time=10, num_frames=3).timestamps
    assert frames == want and all(0 <= t <= 10 for t in frames)
    assert rollout.generated == traj.turns and rollout.answer == "red"


def test_replay_rejects_a_trajectory_the_graph_cannot_reproduce(searcher, clip20):
    early = Trajectory(Q, str(clip20), [answer("red"), answer("blue")])
    with pytest.raises(TrainingDataError, match="ended after 1 of 2 turns"):
        replay_trajectory(early, searcher, max_turns=4, preview_frames=0)
    unanswered = Trajectory(Q, str(clip20), [seek_call("x", 0, 5, 1)])
    with pytest.raises(TrainingDataError, match="without an answer"):
        replay_trajectory(unanswered, searcher, max_turns=1, preview_frames=0)


def test_mask_covers_exactly_the_assistant_tokens(searcher, clip20):
    policy = load_trainable_policy(tiny_policy_path())
    tok = policy.tokenizer
    traj = trajectories(clip20)[1]
    rollout = replay_trajectory(traj, searcher, max_turns=4, preview_frames=2)
    enc = encode_conversation(policy, rollout.messages, frames=searcher.frames)
    ids, mask = enc.input_ids.tolist(), enc.loss_mask.tolist()
    trained = [t for t, m in zip(ids, mask) if m]
    want = sum((tok(t + tok.eos_token, add_special_tokens=False)["input_ids"] for t in traj.turns), [])
    assert trained == want  # exactly the assistant turns plus their end-of-turn token, in order
    image_id = tok.convert_tokens_to_ids("<|image_pad|>")
    n_images = 2 + 2 + 2  # preview + two searches
    assert ids.count(image_id) > n_images  # placeholders were expanded...
    assert not any(m for t, m in zip(ids, mask) if t == image_id)  # ...and are never trained on
    untrained = tok.decode([t for t, m in zip(ids, mask) if not m])
    for t in traj.turns:
        assert t not in untrained
    assert "These frames are at" in untrained and Q in untrained  # tool and user text is context only
    assert enc.inputs["pixel_values"].shape[0] > 0


@pytest.mark.slow
def test_sft_lowers_assistant_loss_and_saves_a_loadable_policy(searcher, clip20, tmp_path):
    trajs = trajectories(clip20)
    policy = load_trainable_policy(tiny_policy_path())
    convs = [replay_trajectory(t, searcher, max_turns=4, preview_frames=2).messages for t in trajs]

    def eval_loss():
        with torch.no_grad():
            return sum(
                float(assistant_loss(policy.model, encode_conversation(policy, c, searcher.frames)))
                for c in convs
            ) / len(convs)

    before = eval_loss()
    cfg = SFTConfig(
        model=str(tiny_policy_path()),
        data="unused.jsonl",
        output_dir=str(tmp_path / "sft"),
        encoder="tiny-untrained",
        max_turns=4,
        preview_frames=2,
        learning_rate=3e-3,
        lr_scheduler_type="constant",
        max_steps=12,
        logging_steps=0,
    )
    result = train_sft(cfg, searcher=searcher, policy=policy, trajectories=trajs)
    after = eval_loss()
    assert after < 0.7 * before, (before, after)
    assert sum(result.losses[-3:]) < sum(result.losses[:3])
    assert len(result.step_seconds) == 12 and all(n > 0 for n in result.assistant_tokens)

    manifest = read_manifest(result.output_dir)
    assert manifest.encoder == "tiny-untrained" and "training.sft" in manifest.notes
    # what the policy was trained with, for `videoseek ask` (not the base's 24 tokens)
    assert (manifest.max_turns, manifest.preview_frames, manifest.max_new_tokens) == (4, 2, 256)
    assert manifest.trained is False  # a random base stays flagged untrained
    assert json.loads((result.output_dir / "training_config.json").read_text())["trainer"] == "sft"

    loaded = load_policy(result.output_dir, device="cpu")
    w_trained = dict(policy.model.named_parameters())["lm_head.weight"].detach()
    w_loaded = dict(loaded.model.named_parameters())["lm_head.weight"]
    assert torch.equal(w_trained, w_loaded)
    rollout = AgentRunner(
        build_temporal_graph(loaded, searcher, max_turns=1, preview_frames=2), max_turns=1
    ).run(Q, str(clip20))
    assert len(rollout.turns) == 1 and rollout.turns[0].generation.get("completion_ids")


def test_entry_point_reads_a_json_recipe(searcher, clip20, tmp_path, capsys):
    data = tmp_path / "traj.jsonl"
    rows = [{"question": t.question, "video": t.video, "turns": t.turns} for t in trajectories(clip20)[:2]]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    recipe = tmp_path / "sft.json"
    recipe.write_text(
        json.dumps(
            {
                "_comment": "keys starting with _ are ignored",
                "model": str(tiny_policy_path()),
                "data": str(data),
                "output_dir": str(tmp_path / "out"),
                "encoder": "tiny-untrained",
                "cache_dir": str(tmp_path / "cache"),
                "max_turns": 4,
                "preview_frames": 2,
                "max_steps": 5,
            }
        )
    )
    result = main(["--config", str(recipe), "--max_steps", "2", "--learning_rate", "0.001"])
    assert len(result.losses) == 2 and result.num_examples == 2
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["output_dir"] == str(tmp_path / "out")
    assert load_trajectories(data)[0].turns == rows[0]["turns"]


def test_config_errors_name_what_is_valid(tmp_path):
    with pytest.raises(TrainingConfigError, match="valid fields: .*learning_rate"):
        load_config(SFTConfig, None, model="m", data="d", output_dir="o", learnin_rate=1.0)
    with pytest.raises(TrainingConfigError, match=r"needs \['output_dir'\]"):
        load_config(SFTConfig, None, model="m", data="d")
    with pytest.raises(TrainingConfigError, match="max_steps must be >= 1"):
        SFTConfig(model="m", data="d", output_dir="o", max_steps=0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "video": "v.mp4"}) + "\n")
    with pytest.raises(TrainingDataError, match="bad.jsonl:1: field 'turns'"):
        load_trajectories(bad)


def _cfg(tmp_path, **kw):
    base = dict(
        model=str(tiny_policy_path()),
        data="unused.jsonl",
        output_dir=str(tmp_path / "sft"),
        encoder="tiny-untrained",
        max_turns=4,
        max_new_tokens=96,
        preview_frames=2,
        learning_rate=3e-3,
        lr_scheduler_type="constant",
    )
    base.update(kw)
    return SFTConfig(**base)


@pytest.mark.slow
def test_save_steps_write_loadable_checkpoints_and_resume_continues(searcher, clip20, tmp_path):
    trajs = trajectories(clip20)[:2]
    first = train_sft(_cfg(tmp_path, max_steps=2, save_steps=1), searcher=searcher, trajectories=trajs)
    assert first.global_step == 2 and len(first.step_seconds) == 2
    ckpt = tmp_path / "sft" / "checkpoint-1"
    assert read_manifest(ckpt).max_new_tokens == 96  # each checkpoint-N is a policy folder
    assert load_policy(ckpt, device="cpu").model is not None
    resumed = train_sft(
        _cfg(tmp_path, max_steps=3, save_steps=1, resume_from_checkpoint="last"), searcher=searcher, trajectories=trajs
    )
    # only step 3 ran: the optimizer, scheduler and step counter came back from checkpoint-2
    assert resumed.global_step == 3 and len(resumed.step_seconds) == 1
    state = json.loads((tmp_path / "sft" / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    with pytest.raises(TrainingConfigError, match="no checkpoint-N folder"):
        train_sft(
            _cfg(tmp_path, output_dir=str(tmp_path / "empty"), resume_from_checkpoint="last"),
            searcher=searcher,
            trajectories=trajs,
        )


@pytest.mark.slow
def test_lora_with_eval_changes_weights_and_saves_a_merged_policy(searcher, clip20, tmp_path):
    trajs = trajectories(clip20)
    base = load_policy(tiny_policy_path(), device="cpu")
    w0 = {k: v.detach().clone() for k, v in base.model.named_parameters()}
    result = train_sft(
        _cfg(tmp_path, max_steps=4, lora_r=4, lora_alpha=8, lora_dropout=0.0, eval_steps=2),
        searcher=searcher,
        trajectories=trajs,
        eval_trajectories=trajs[:1],
    )
    assert len(result.eval_losses) >= 2  # at step 2, step 4 and the final evaluate
    loaded = load_policy(result.output_dir, device="cpu")
    names = dict(loaded.model.named_parameters())
    assert not [n for n in names if "lora" in n]  # merged: a plain transformers checkpoint
    changed = [n for n, w in w0.items() if not torch.equal(w, names[n].detach())]
    assert changed and all("visual" not in n for n in changed)  # only language-model projections moved
    assert any("q_proj" in n for n in changed)


def test_lora_layers_target_the_top_decoder_layers_only():
    import re

    from training.common import lora_target_modules

    model = load_policy(tiny_policy_path(), device="cpu").model
    names = [n for n, _ in model.named_modules()]
    layers = sorted({int(m.group(1)) for n in names if "visual" not in n for m in [re.search(r"\.layers\.(\d+)\.", n)] if m})
    hit = [n for n in names if re.fullmatch(lora_target_modules(model, 1), n)]
    assert hit and all(f".layers.{layers[-1]}." in n and "visual" not in n for n in hit)
    assert {n.rsplit(".", 1)[1] for n in hit} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    every = [n for n in names if re.fullmatch(lora_target_modules(model, 0), n)]
    assert len(every) == len(layers) * len(hit)
    with pytest.raises(TrainingConfigError, match=f"more than the model's {len(layers)} decoder layers"):
        lora_target_modules(model, len(layers) + 1)


@pytest.mark.slow
def test_sft_with_lora_layers_changes_only_the_top_layer(searcher, clip20, tmp_path):
    """Also: a ready conversation (the completeness check's re-answer) trains next to the replayed trajectory."""
    from agent_tools.graphs.temporal import verify_messages

    base = load_policy(tiny_policy_path(), device="cpu")
    w0 = {k: v.detach().clone() for k, v in base.model.named_parameters()}
    top = max(int(n.split(".layers.")[1].split(".")[0]) for n in w0 if ".layers." in n and "visual" not in n)
    re_answer = verify_messages(Q, [{"video": str(clip20), "timestamp": 2.0}]) + [
        {"role": "assistant", "content": "<think>red</think><answer>red</answer>"}]
    result = train_sft(_cfg(tmp_path, max_steps=2, lora_r=4, lora_alpha=8, lora_dropout=0.0, lora_layers=1),
                       searcher=searcher, trajectories=trajectories(clip20)[:1], conversations=[re_answer])
    assert result.num_examples == 2 and len(result.assistant_tokens) == 2 and min(result.assistant_tokens) > 0
    names = dict(load_policy(result.output_dir, device="cpu").model.named_parameters())
    changed = [n for n, w in w0.items() if not torch.equal(w, names[n].detach())]
    assert changed and all(f".layers.{top}." in n and "visual" not in n for n in changed)


def test_a_turn_longer_than_max_new_tokens_is_refused(searcher, clip20, tmp_path):
    with pytest.raises(TrainingDataError, match="over max_new_tokens=24"):
        train_sft(_cfg(tmp_path, max_new_tokens=24, max_steps=1), searcher=searcher, trajectories=trajectories(clip20))


def test_main_prints_one_line_on_a_videoseek_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--model", str(tiny_policy_path()), "--data", str(tmp_path / "missing.jsonl"),
              "--output_dir", str(tmp_path / "o"), "--encoder", "tiny-untrained"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: data file") and "missing.jsonl" in err[-1]
    assert not any("Traceback" in line for line in err)


def test_ask_uses_the_settings_the_policy_was_trained_with(clip20, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from agent_tools.cli import app
    from training.common import checkpoint_manifest, write_run_files

    ckpt = tmp_path / "policy"
    shutil.copytree(tiny_policy_path(), ckpt)
    cfg = SFTConfig(model="m", data="d", output_dir=str(ckpt), max_turns=2, max_new_tokens=5, preview_frames=3)
    write_run_files(ckpt, checkpoint_manifest(read_manifest(ckpt), ckpt, config=cfg, trainer="sft"))
    args = ["ask", str(clip20), Q, "--policy", str(ckpt), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--json"]

    def rollout(extra=()):
        out = CliRunner().invoke(app, [*args, *extra])
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout[out.stdout.index("{"):])

    def preview(r):
        first_user = next(m for m in r["messages"] if m["role"] == "user")
        return sum(1 for b in first_user["content"] if isinstance(b, dict) and b.get("type") == "frame")

    r = rollout()
    assert preview(r) == 3 and 1 <= len(r["turns"]) <= 2
    tokens = [t["generation"]["completion_tokens"] for t in r["turns"]]
    assert max(tokens) <= 5 and 5 in tokens  # the random tiny policy runs to the budget
    r = rollout(["--max-turns", "1", "--preview-frames", "1", "--max-new-tokens", "3"])  # flags still win
    assert preview(r) == 1 and len(r["turns"]) == 1 and r["turns"][0]["generation"]["completion_tokens"] <= 3
