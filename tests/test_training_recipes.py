"""Scale recipes that run: data prep from the public datasets' shapes, memory arithmetic, launch
configs with the references' batch semantics, and CPU dry runs of the 7B recipes through the
same entry points with the tiny models."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import yaml

from training.config import load_config
from training.errors import TrainingConfigError, TrainingDataError
from training.memory import GIB, count_parameters, estimate_memory, format_estimate
from training.prepare_data import main as prepare_main
from training.prepare_data import prepare

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
CONFIGS = ROOT / "training" / "configs"
LAUNCH = ROOT / "training" / "launch"


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@pytest.fixture
def video_root(tmp_path, clip20):
    """A folder holding the samples' ``clip.mp4`` (the synthetic 20 s clip)."""
    root = tmp_path / "videos"
    root.mkdir()
    (root / "clip.mp4").symlink_to(clip20)
    return root


# --- data prep ------------------------------------------------------------------------------


def test_timesearch_rl_rows_become_grpo_prompts(tmp_path):
    videos = tmp_path / "videos"
    out = tmp_path / "prep" / "grpo.jsonl"
    n = prepare("timesearch-grpo", [DATA / "timesearch" / "rl_sample.jsonl"], out, video_root=str(videos))
    rows = _rows(out)
    assert n == 4 and [r["problem_type"] for r in rows] == ["multiple_choice", "open_ended", "grounding", "sequence"]
    assert rows[0]["answer"] == "A" and rows[0]["duration"] == 20.0 and rows[0]["id"] == "ts-0"
    # TimeSearch-R keeps grounding truths as a JSON string (v7.py general_answer_score json.loads it)
    assert rows[2]["answer"] == {"start_time": 2.0, "end_time": 4.0}
    # video paths are written relative to the output file, which is how the trainers resolve them
    assert rows[0]["video"] == os.path.relpath(videos / "clip.mp4", out.parent)
    assert (out.parent / rows[0]["video"]).resolve() == (videos / "clip.mp4").resolve()
    from training.data import load_prompts

    assert load_prompts(out)[2].answer == {"start_time": 2.0, "end_time": 4.0}


def test_timesearch_dataset_yaml_mix_is_sampled_as_listed(tmp_path):
    out = tmp_path / "mix.jsonl"
    n = prepare("timesearch-grpo", [DATA / "timesearch" / "dataset.yaml"], out, video_root=str(tmp_path))
    ids = [r["id"] for r in _rows(out)]
    assert n == 3 and ids[-1] == "ex-0"  # random:2 of the first file, then all of the second
    assert set(ids[:2]) <= {"ts-0", "ts-1", "ts-2", "ts-3"} and len(set(ids[:2])) == 2
    again = tmp_path / "mix2.jsonl"
    prepare("timesearch-grpo", [DATA / "timesearch" / "dataset.yaml"], again, video_root=str(tmp_path))
    assert _rows(again) == _rows(out)  # seeded


def test_timesearch_sft_messages_become_replayable_trajectories(tmp_path, searcher, video_root):
    out = tmp_path / "sft.jsonl"
    prepare("timesearch-sft", [DATA / "timesearch" / "sft_sample.jsonl"], out, video_root=str(video_root))
    rows = _rows(out)
    assert rows[0]["question"] == "What colour is the square at the start?"
    assert rows[1]["question"] == "Does the square move at the end?"  # from the first user message
    assert [len(r["turns"]) for r in rows] == [2, 2]  # the recorded tool message is dropped
    assert rows[1]["turns"][1] == "<think>It moves right.</think><answer>yes</answer>"
    from training.data import load_trajectories, replay_trajectory

    for traj in load_trajectories(out):  # the converted rows replay through the real graph
        rollout = replay_trajectory(traj, searcher, max_turns=4, preview_frames=2)
        assert rollout.status == "answered" and rollout.generated == traj.turns


def test_videosearch_rows_from_verified_and_stage2_files(tmp_path):
    out = tmp_path / "corpus.jsonl"
    n = prepare(
        "videosearch",
        [DATA / "videosearch" / "fig_sample.jsonl", DATA / "videosearch" / "minimal_top1_sample.jsonl"],
        out,
        video_root=str(tmp_path / "videos"),
    )
    rows = _rows(out)
    assert n == 5
    first = rows[0]
    assert first["query"].startswith("A person in a grey coat") and first["duration"] == 30.0
    assert (first["positive"]["start"], first["positive"]["end"]) == (2.0, 6.5)
    assert first["positive"]["video"] == os.path.relpath(tmp_path / "videos" / "VID01.mp4", tmp_path)
    assert "negatives" not in first  # drawn from the index at train time
    stage2 = rows[3]
    assert stage2["shown"]["video"].endswith("VID07.mp4")
    assert [m["video"].rsplit("/", 1)[-1] for m in stage2["negatives"]] == ["VID07.mp4", "VID03.mp4"]


def test_bad_annotations_are_refused_with_the_row_named(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"video": "v", "question": "q", "target": {"answer": "x"}, "type": "yes_no"}) + "\n")
    with pytest.raises(TrainingDataError, match=r"bad.jsonl:1: type 'yes_no' is unknown; valid: multiple_choice"):
        prepare("timesearch-grpo", [bad], tmp_path / "o.jsonl")
    bad.write_text(json.dumps({"video": "v", "question": "q", "target": {"answer": "[1, 2]"}, "type": "grounding"}) + "\n")
    with pytest.raises(TrainingDataError, match="start_time and end_time"):
        prepare("timesearch-grpo", [bad], tmp_path / "o.jsonl")
    bad.write_text(json.dumps({"video": "v", "time": [5.0, 2.0], "fig_desc": "x"}) + "\n")
    with pytest.raises(SystemExit) as exc:
        prepare_main(["videosearch", str(bad), "--out", str(tmp_path / "o.jsonl")])
    assert exc.value.code == 2 and "is not [start, end]" in capsys.readouterr().err


# --- memory ---------------------------------------------------------------------------------


def test_memory_estimate_matches_the_zero_arithmetic():
    p = 8.29e9  # Qwen2.5-VL-7B
    est = estimate_memory(p, world_size=32, zero_stage=3, beta=0.005, vllm=True)
    # ZeRO-3: bf16 weights 2P/N, bf16 grads 2P/N, fp32 master + Adam m, v 12P/N, bf16 reference 2P/N
    assert est.parts["weights (bf16)"] == pytest.approx(2 * p / 32)
    assert est.parts["gradients (bf16)"] == pytest.approx(2 * p / 32)
    assert est.parts["optimizer (fp32 master + Adam m, v)"] == pytest.approx(12 * p / 32)
    assert est.parts["reference model (bf16)"] == pytest.approx(2 * p / 32)
    assert est.parts["vLLM weights (bf16)"] == pytest.approx(2 * p)  # colocated, tensor parallel 1
    assert est.total / GIB == pytest.approx((18 * p / 32 + 2 * p) / GIB)
    # the float32 single-process setup: >= 130 GiB before activations
    fp32_like = estimate_memory(p, world_size=1, zero_stage=0, beta=0.005)
    assert fp32_like.total / GIB > 130
    lora = estimate_memory(p, world_size=8, zero_stage=3, trainable=40e6, beta=0.005)
    assert "reference model (bf16)" not in lora.parts  # the adapter is switched off for reference log-probs
    assert lora.parts["optimizer (fp32 master + Adam m, v)"] == pytest.approx(12 * 40e6 / 8)
    text = format_estimate(est)
    assert "ZeRO-3 over 32 GPU(s)" in text and "excludes activations" in text
    with pytest.raises(TrainingConfigError, match="zero_stage must be 0, 1, 2 or 3"):
        estimate_memory(p, zero_stage=4)


def test_parameter_count_is_read_from_the_weights_headers():
    from agent_tools.policies import load_policy
    from tests.agent_fakes import tiny_policy_path

    model = load_policy(tiny_policy_path(), device="cpu").model
    assert count_parameters(tiny_policy_path()) == sum(p.numel() for p in model.state_dict().values())


# --- launch configs and recipes -------------------------------------------------------------


def test_launch_configs_are_deepspeed_bf16_and_the_estimate_reads_them():
    from training.memory import zero_settings_from_env

    for name, stage, offload in (("zero3.yaml", 3, False), ("zero3_offload.yaml", 3, True), ("zero2.yaml", 2, False)):
        acc = yaml.safe_load((LAUNCH / name).read_text())
        assert acc["distributed_type"] == "DEEPSPEED"
        ds_file = ROOT / acc["deepspeed_config"]["deepspeed_config_file"]
        ds = json.loads(ds_file.read_text())
        zero = ds["zero_optimization"]
        assert zero["stage"] == stage and ("offload_optimizer" in zero) is offload
        assert zero.get("stage3_gather_16bit_weights_on_model_save", stage != 3) is True
        assert ds["bf16"]["enabled"] == "auto"  # follows the recipe's bf16
        # what accelerate exports for this config -> the stage the printed estimate uses
        env = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(ds_file)}
        assert zero_settings_from_env(env) == (stage, offload)
    assert zero_settings_from_env({}) == (0, False)


def test_lora_under_zero3_is_refused_before_loading(tmp_path, monkeypatch):
    pytest.importorskip("trl")
    pytest.importorskip("peft")
    from training.sft import SFTConfig, train_sft

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", str(LAUNCH / "zero3.json"))
    cfg = SFTConfig(model=str(tmp_path / "no-model"), data="d.jsonl", output_dir=str(tmp_path / "o"), lora_r=8)
    with pytest.raises(TrainingConfigError, match="launch with training/launch/zero2.yaml"):
        train_sft(cfg)


def test_timesearch_recipes_follow_the_reference_setup():
    from training.grpo import GRPOConfig
    from training.sft import SFTConfig

    sft = load_config(SFTConfig, CONFIGS / "sft_qwen25vl_7b.json")
    assert sft.bf16 and sft.gradient_checkpointing and (sft.max_turns, sft.max_new_tokens) == (8, 256)
    grpo = load_config(GRPOConfig, CONFIGS / "grpo_qwen25vl_7b.json")
    assert grpo.bf16 and grpo.gradient_checkpointing and grpo.use_vllm and grpo.vllm_mode == "colocate"
    # TimeSearch-R scripts/train.sh: --num_generations 8 --per_device_train_batch_size 1
    # --gradient_accumulation_steps 2 --steps_per_generation 1 --beta 0.005 --scale_rewards false,
    # on 32 GPUs: one generation = 1 x 32 x 1 = 32 completions = 4 prompts x 8 rollouts
    gpus = 32
    per_generation = grpo.per_device_train_batch_size * gpus * grpo.trl_args["steps_per_generation"]
    assert per_generation // grpo.num_generations == 4 and per_generation % grpo.num_generations == 0
    assert grpo.gradient_accumulation_steps == 2 and grpo.beta == 0.005
    assert grpo.scale_rewards in (False, "none") and (grpo.max_turns, grpo.max_new_tokens) == (8, 256)
    assert list(grpo.reward_weights) == [1.0, 0.5, 0.5]
    # --replay_buffer_type dapo; time_r1/train.py GRPOConfigEnv: replay_buffer_capacity 16
    assert (grpo.replay_buffer, grpo.replay_buffer_capacity) == ("dapo", 16)


# --- dry runs -------------------------------------------------------------------------------


@pytest.mark.slow
def test_sft_7b_recipe_dry_run_on_cpu(tmp_path, video_root):
    pytest.importorskip("trl")
    pytest.importorskip("peft")
    from agent_tools.policies import read_manifest
    from training.dry_run import dry_run

    data = tmp_path / "sft.jsonl"
    prepare("timesearch-sft", [DATA / "timesearch" / "sft_sample.jsonl"], data, video_root=str(video_root))
    result = dry_run(
        CONFIGS / "sft_qwen25vl_7b.json",
        ["--data", str(data), "--eval_data", "none", "--output_dir", str(tmp_path / "out"),
         "--cache_dir", str(tmp_path / "cache")],
    )
    assert result.global_step == 1 and len(result.losses) == 1
    manifest = read_manifest(result.output_dir)
    assert (manifest.max_turns, manifest.max_new_tokens, manifest.preview_frames) == (8, 256, 8)
    saved = json.loads((result.output_dir / "training_config.json").read_text())
    assert saved["gradient_checkpointing"] is True and saved["lr_scheduler_type"] == "cosine"


@pytest.mark.slow
def test_grpo_7b_recipe_dry_run_on_cpu(tmp_path, video_root):
    pytest.importorskip("trl")
    pytest.importorskip("peft")
    from agent_tools.policies import read_manifest
    from training.dry_run import dry_run

    data = tmp_path / "grpo.jsonl"
    prepare("timesearch-grpo", [DATA / "timesearch" / "rl_sample.jsonl"], data, video_root=str(video_root), limit=1)
    dry_run(
        CONFIGS / "grpo_qwen25vl_7b.json",
        ["--data", str(data), "--output_dir", str(tmp_path / "out"), "--cache_dir", str(tmp_path / "cache"),
         "--max_turns", "2", "--max_new_tokens", "16"],
    )
    manifest = read_manifest(tmp_path / "out")
    assert (manifest.max_turns, manifest.max_new_tokens) == (2, 16)


def test_dry_run_refuses_a_recipe_of_no_known_trainer(tmp_path):
    from training.dry_run import dry_run

    with pytest.raises(TrainingConfigError, match="must start with one of sft, grpo, sqr, vsr1"):
        dry_run(tmp_path / "mystery.json")


@pytest.mark.slow
def test_tiny_sft_recipe_holds_the_demo_tool_calls(tmp_path):
    """The tiny recipe's tokens per turn fit the demo's longest turn (a tool call is 61-75 tokens),
    unlike the base manifest's 24, and both the demo base and the recipe carry that budget."""
    from agent_tools.policies import load_policy, read_manifest
    from training.data import load_trajectories
    from training.demo import write_demo
    from training.sft import SFTConfig

    paths = write_demo(tmp_path / "demo")
    recipe = load_config(SFTConfig, CONFIGS / "sft_tiny.json")
    tok = load_policy(paths["policy"], device="cpu").tokenizer
    longest = max(
        len(tok(t + tok.eos_token, add_special_tokens=False)["input_ids"])
        for traj in load_trajectories(paths["sft"])
        for t in traj.turns
    )
    assert 24 < longest <= recipe.max_new_tokens
    assert read_manifest(paths["policy"]).max_new_tokens == recipe.max_new_tokens


def test_the_printed_estimate_follows_the_launch(monkeypatch):
    import torch

    from training.memory import estimate_for_model

    model = torch.nn.Linear(1000, 1000)  # 1,001,000 parameters
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", str(LAUNCH / "zero3.json"))
    text = estimate_for_model(model)
    assert "1.00 M params" in text and "ZeRO-3 over 4 GPU(s)" in text
    # 16 bytes per parameter (bf16 weights 2 + grads 2 + fp32 master and Adam 12; beta 0: no reference) over 4 GPUs
    total = float(text.split("total before activations")[1].split("GiB")[0])
    assert total == pytest.approx(16 * 1_001_000 / 4 / GIB, abs=1e-4)


# --- VideoSearch-R1 8B recipes: stage 1 (SQR) then stage 2 (GRPO) from its checkpoint -------


@pytest.fixture(scope="module")
def vsr1_rows(tmp_path_factory, clip20):
    """VideoSearch-R1 rows prepared from the VERIFIED and stage-2 samples, every video the 20 s clip."""
    root = tmp_path_factory.mktemp("vsr1")
    videos = root / "videos"
    videos.mkdir()
    for vid in ("VID01", "VID02", "VID03", "VID07"):
        (videos / f"{vid}.mp4").symlink_to(clip20)
    out = root / "vsr1.jsonl"
    samples = [DATA / "videosearch" / "fig_sample.jsonl", DATA / "videosearch" / "minimal_top1_sample.jsonl"]
    assert prepare("videosearch", samples, out, video_root=str(videos), video_ext=".mp4") == 5
    return out


@pytest.fixture(scope="module")
def sqr_8b_dry_run(tmp_path_factory, vsr1_rows):
    """The stage-1 recipe's dry run: ``(SQRResult, what it printed on stdout)``."""
    pytest.importorskip("trl")
    pytest.importorskip("peft")
    import contextlib
    import io

    from training.dry_run import dry_run

    root = tmp_path_factory.mktemp("sqr-8b")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = dry_run(
            CONFIGS / "sqr_qwen3vl_8b.json",
            ["--data", str(vsr1_rows), "--eval_data", str(vsr1_rows), "--output_dir", str(root / "out"),
             "--cache_dir", str(root / "cache")],
        )
    return result, printed.getvalue()


@pytest.mark.slow
def test_sqr_8b_recipe_dry_run_writes_a_stage_one_checkpoint(sqr_8b_dry_run):
    """The recipe that failed with "image tokens 98 vs features 96": its held-out evaluation
    generates the policy's own verification reply and re-feeds those ids with the frames."""
    from transformers import AutoConfig, GenerationConfig

    from agent_tools.policies import load_policy, read_manifest
    from agent_tools.policies.vision_tokens import vision_placeholder_ids

    result, printed = sqr_8b_dry_run
    assert "memory estimate per GPU" in printed and "total before activations" in printed
    assert len(result.losses) == 1 and result.eval["n"] == 5.0  # one step, then R@1 on the 5 held-out rows
    out = result.output_dir
    assert AutoConfig.from_pretrained(out).model_type == "qwen3_vl"  # the recipe's family, tiny
    saved = json.loads((out / "training_config.json").read_text())
    assert (saved["lora_r"], saved["num_tokens"], saved["verify_frames"], saved["tau"]) == (0, 8, 8, 0.1)
    assert saved["max_steps"] == 1 and saved["deepspeed"] is None and saved["bf16"] is False
    assert read_manifest(out).soft_refinement is True
    policy = load_policy(out, device="cpu")
    assert callable(policy.refine_query_vector)
    # the checkpoint never samples a vision placeholder, so its replies can be re-fed with their frames
    banned = vision_placeholder_ids(policy)
    tok = policy.tokenizer
    assert banned == sorted(tok.convert_tokens_to_ids(t) for t in
                            ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"))
    assert GenerationConfig.from_pretrained(out).suppress_tokens == banned
    assert policy.generation_kwargs["suppress_tokens"] == banned


@pytest.mark.slow
def test_vsr1_grpo_8b_recipe_dry_run_starts_from_the_stage_one_checkpoint(sqr_8b_dry_run, vsr1_rows, tmp_path, capsys):
    from agent_tools.policies import load_policy, read_manifest
    from training.dry_run import dry_run

    stage1 = sqr_8b_dry_run[0].output_dir
    result = dry_run(
        CONFIGS / "vsr1_grpo_qwen3vl_8b.json",
        ["--model", str(stage1), "--data", str(vsr1_rows), "--output_dir", str(tmp_path / "out"),
         "--cache_dir", str(tmp_path / "cache"), "--max_completion_length", "16"],
    )
    printed = capsys.readouterr().out
    assert "memory estimate per GPU" in printed and "reference model (bf16)" in printed  # beta 0.01 keeps one
    logs = [h for h in result["log_history"] if "reward" in h]
    assert len(logs) == 1  # one optimizer step
    assert result["steps_with_advantage"] == int(logs[0]["frac_reward_zero_std"] < 1)
    names = ("answer_binary_reward", "think_format_reward", "time_format_reward", "time_iou_reward",
             "refine_presence_reward", "query_refine_quality_reward")
    assert all(f"rewards/{n}/mean" in logs[0] for n in names)
    out = result["output_dir"]
    saved = json.loads((out / "training_config.json").read_text())
    assert saved["model"] == str(stage1) and saved["reward_weights"] == [1.6, 0.05, 0.05, 0.35, 0.8, 0.5]
    assert (saved["beta"], saved["learning_rate"], saved["num_generations"], saved["use_vllm"]) == (0.01, 5e-7, 2, False)
    # stage 2 keeps stage 1's SQR maps and stays a refiner checkpoint
    for name in ("sqr_projector.safetensors", "sqr_config.json"):
        assert (out / name).read_bytes() == (stage1 / name).read_bytes()
    assert read_manifest(out).soft_refinement is True
    assert callable(load_policy(out, device="cpu").refine_query_vector)


def test_stage_two_dry_run_without_its_stage_one_checkpoint_is_one_line(capsys):
    from training.dry_run import main

    with pytest.raises(SystemExit) as exc:
        main([str(CONFIGS / "vsr1_grpo_qwen3vl_8b.json"), "--data", "rows.jsonl"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: ") and "dry-run training/configs/sqr_qwen3vl_8b.json first" in err


def test_vsr1_trainers_main_turn_errors_into_one_line(tmp_path, capsys):
    pytest.importorskip("trl")
    from training.sqr import main as sqr_main
    from training.sqr_grpo import main as grpo_main

    with pytest.raises(SystemExit) as exc:  # not a stage-1 checkpoint (no SQR maps)
        grpo_main(["--config", str(CONFIGS / "vsr1_grpo_qwen3vl_8b.json"), "--model", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "stage 2 starts from a stage-1 SQR checkpoint" in err
    with pytest.raises(SystemExit) as exc:  # a bad override, before anything loads
        sqr_main(["--config", str(CONFIGS / "sqr_qwen3vl_8b.json"), "--num_tokens", "0"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err == "error: num_tokens must be >= 1, got 0"


def test_demo_sft_data_demonstrates_every_grpo_prompt(tmp_path):
    """The cold start that gives grpo_tiny.json rewards that differ inside a group: SFT'd on the
    demo trajectories alone (no GRPO prompt among them) its sampled episodes were never
    well-formed and every advantage was 0; each GRPO prompt is demonstrated with its right answer."""
    from training.data import load_prompts, load_trajectories
    from training.demo import write_demo
    from training.rewards.timesearch import episode_answer, multiturn_format_reward, score_answer

    paths = write_demo(tmp_path / "demo")
    demos = {t.question: t for t in load_trajectories(paths["sft"])}
    for prompt in load_prompts(paths["grpo"]):
        turns = demos[prompt.question].turns
        episode = [{"role": "assistant", "content": t} for t in turns]
        answer, refused = episode_answer(episode)
        assert not refused and score_answer(answer, prompt.answer, prompt.problem_type) == 1.0
        assert multiturn_format_reward([episode]) == [1.0]  # TimeSearch-R v7's format check


def test_sqr_lora_under_zero3_is_refused_before_loading(tmp_path, monkeypatch):
    """Under ZeRO-3 peft's trainable <REFINE> row indexes the sharded embedding and the first
    forward fails (seen under `accelerate launch --config_file training/launch/zero3.yaml`)."""
    pytest.importorskip("trl")
    from training.sqr import SQRConfig, train_sqr

    cfg = SQRConfig(model=str(tmp_path / "no-model"), data="d.jsonl", output_dir=str(tmp_path / "o"), lora_r=8,
                    deepspeed=str(LAUNCH / "zero3.json"))
    with pytest.raises(TrainingConfigError, match="launch with training/launch/zero2.yaml"):
        train_sqr(cfg)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # the launch says ZeRO-3, the recipe names none
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", str(LAUNCH / "zero3.json"))
    with pytest.raises(TrainingConfigError, match="lora_r > 0 under DeepSpeed ZeRO-3"):
        train_sqr(dataclasses.replace(cfg, deepspeed=None))
