"""``videoseek ask`` and the two agent examples, end to end on a synthetic video (CPU)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

from typer.testing import CliRunner

from agent_tools.cli import app
from tests.agent_fakes import answer, seek_call, tiny_policy_path

ROOT = Path(__file__).resolve().parents[1]


def _run(args):
    return CliRunner().invoke(app, args)


def test_ask_prints_each_turn_and_the_answer(clip20, tmp_path, monkeypatch):
    import agent_tools.policies as policies

    scripted = policies.ScriptedPolicy(
        [
            seek_call("the bright square", 4, 8, 3, think="The preview is too coarse."),
            answer("a square"),
            "a square",
        ]
    )
    monkeypatch.setattr(policies, "load_policy", lambda src, **kw: scripted)
    result = _run(
        [
            "ask",
            str(clip20),
            "What moves?",
            "--policy",
            "scripted-dir",
            "--encoder",
            "tiny-untrained",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--verify",
        ]
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "turn 1" in out and "thought: The preview is too coarse." in out
    assert "search:  'the bright square'" in out and "window:  4.0s - 8.0s" in out
    frames_line = next(line for line in out.splitlines() if line.strip().startswith("frames:"))
    shown = [float(t) for t in re.findall(r"(\d+\.\d)s", frames_line)]
    assert len(shown) == 3 and all(4.0 <= t <= 8.0 for t in shown), frames_line  # the 3 searched frames
    assert "answer: a square  [answered]" in out
    assert "verification: sufficient evidence (3 frames)" in out


def test_ask_with_the_tiny_policy_json(clip20, tmp_path):
    result = _run(
        [
            "ask",
            str(clip20),
            "What moves?",
            "--policy",
            str(tiny_policy_path()),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--max-turns",
            "2",
            "--max-new-tokens",
            "4",
            "--json",
        ]
    )
    assert result.exit_code == 0, result.output
    rollout = json.loads(result.stdout)
    assert rollout["status"] == "budget_exhausted" and len(rollout["turns"]) == 2
    assert rollout["messages"][0]["role"] == "system"
    assert all(len(t["generation"]["completion_ids"]) <= 4 for t in rollout["turns"])


def test_ask_reports_a_bad_policy_cleanly(clip20, tmp_path):
    result = _run(["ask", str(clip20), "q", "--policy", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def _example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[f"example_{name}"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_langgraph_app_example(tmp_path, capsys):
    state = _example("langgraph_app").main(["--workdir", str(tmp_path)])
    assert state["answer"] == "a square moving to the right"
    assert len(state["frames"]) == 3 and all(4.0 <= f["timestamp"] <= 8.0 for f in state["frames"])
    assert [m.type for m in state["messages"]] == ["human", "ai"]
    printed = capsys.readouterr().out
    assert "step video_agent/seek" in printed and "report:" in printed


def test_langchain_agent_example(tmp_path, capsys):
    messages = _example("langchain_agent").main(["--workdir", str(tmp_path)])
    tool_msgs = [m for m in messages if m.type == "tool"]
    assert [m.name for m in tool_msgs] == ["preview_video", "seek_video_frames"]
    assert len(tool_msgs[1].artifact.timestamps) == 3
    assert "3 images" in capsys.readouterr().out
