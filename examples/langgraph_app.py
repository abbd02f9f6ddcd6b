"""Compose videoseek's temporal search graph into your own LangGraph app.

The app below has its own state and nodes (an intake step and a report step) and uses
``build_temporal_graph`` as a subgraph node: the two graphs share the keys ``question``,
``video``, ``answer`` and ``frames``; the search conversation stays inside the subgraph, so
the app's own ``messages`` are untouched. It is compiled with a SQLite checkpointer (state
holds frame references, never pixels), streams every step, inner ones included, and can be
inspected or resumed by thread id afterwards.

Runs on CPU with no downloads: a synthetic video, the untrained ``tiny-untrained`` encoder
and, by default, a scripted policy. Real policies:

- ``--policy DIR|ORG/NAME|URL`` - a trained checkpoint folder, a Hugging Face hub id (a base VLM
  without ``videoseek_policy.json`` runs untuned, with a warning), or an OpenAI-compatible URL
  such as ``vllm serve runs/ckpt`` (text protocol, retried on 429/5xx);
- ``--chat-model NAME [--base-url URL]`` - a hosted chat model through ``ChatOpenAI`` with native
  tool calling (``LangChainPolicy(..., tool_calling="native")``; needs ``langchain-openai``)::

    python examples/langgraph_app.py
    python examples/langgraph_app.py --video my.mp4 --question "What is on the table?" --policy runs/ckpt
    python examples/langgraph_app.py --video my.mp4 --policy http://localhost:8000/v1
    OPENAI_API_KEY=... python examples/langgraph_app.py --video my.mp4 --chat-model gpt-4o-mini
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Annotated, Optional

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from agent_tools.config import get_settings
from agent_tools.encoders import load_encoder
from agent_tools.graphs import build_temporal_graph
from agent_tools.policies import LangChainPolicy, ScriptedPolicy, load_policy
from agent_tools.synthetic import write_indexed_video
from agent_tools.temporal import TemporalSearcher


class AppState(TypedDict, total=False):
    """The user's own state; four keys are shared with the video subgraph."""

    messages: Annotated[list[AnyMessage], add_messages]  # the app's chat, not the search's
    question: str
    video: str
    answer: Optional[str]
    frames: list
    report: str


def scripted_policy() -> ScriptedPolicy:
    """A stand-in for a trained policy: one search, then an answer."""
    return ScriptedPolicy(
        [
            "<think>The preview is too coarse; look at the middle of the video.</think>"
            '<tool_call>{"name": "seek_video_frames", "arguments": {"query": "a bright moving square", '
            '"start_time": 4, "end_time": 8, "num_frames": 3}}</tool_call>',
            "<think>The frames show the square.</think><answer>a square moving to the right</answer>",
        ]
    )


def make_policy(source: Optional[str], chat_model: Optional[str] = None, base_url: Optional[str] = None):
    """The policy the flags ask for: a checkpoint / hub id / URL, a hosted chat model, or the script."""
    if source and chat_model:
        raise SystemExit("give --policy or --chat-model, not both")
    if chat_model:
        from langchain_openai import ChatOpenAI  # pip install langchain-openai

        kwargs = {"base_url": base_url, "api_key": "EMPTY"} if base_url else {}
        model = ChatOpenAI(model=chat_model, temperature=0, max_retries=4, **kwargs)
        return LangChainPolicy(model, tool_calling="native")
    return load_policy(source) if source else scripted_policy()


def build_app(policy, searcher, max_turns: int = 8) -> StateGraph:
    """The user's graph with the temporal search graph as one node."""
    video_agent = build_temporal_graph(policy, searcher, max_turns=max_turns).compile()

    def intake(state: AppState) -> dict:
        last = state["messages"][-1].content
        return {"question": last}

    def report(state: AppState) -> dict:
        when = ", ".join(f"{f['timestamp']:.1f}s" for f in state.get("frames") or [])
        text = f"{state.get('answer') or 'no answer'} (looked at {when or 'no frames'})"
        return {"report": text, "messages": [AIMessage(content=text)]}

    app = StateGraph(AppState)
    app.add_node("intake", intake)
    app.add_node("video_agent", video_agent)
    app.add_node("report", report)
    app.add_edge(START, "intake")
    app.add_edge("intake", "video_agent")
    app.add_edge("video_agent", "report")
    app.add_edge("report", END)
    return app


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", help="Video file (default: a synthetic 12 s clip).")
    parser.add_argument("--question", default="What moves across the screen?")
    parser.add_argument(
        "--policy", help="Policy directory, hub id or OpenAI-compatible URL (default: scripted)."
    )
    parser.add_argument("--chat-model", help="Hosted chat model via ChatOpenAI, native tool calling.")
    parser.add_argument("--base-url", help="With --chat-model: an OpenAI-compatible server URL.")
    parser.add_argument(
        "--encoder", default="tiny-untrained", help="Encoder name (default: the untrained test one)."
    )
    parser.add_argument("--workdir", help="Where the video, cache and checkpoints go (default: a temp dir).")
    args = parser.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="videoseek-app-"))
    work.mkdir(parents=True, exist_ok=True)
    video = args.video or str(write_indexed_video(work / "clip.mp4", duration=12, fps=10))
    settings = get_settings(encoder=args.encoder, cache_dir=work / "cache", device="cpu")
    searcher = TemporalSearcher(load_encoder(settings.encoder, device="cpu"), settings=settings)
    policy = make_policy(args.policy, args.chat_model, args.base_url)

    config = {"configurable": {"thread_id": "demo"}}
    with SqliteSaver.from_conn_string(str(work / "checkpoints.sqlite")) as saver:
        app = build_app(policy, searcher).compile(checkpointer=saver)
        inputs = {"messages": [HumanMessage(content=args.question)], "video": video}
        for namespace, update in app.stream(inputs, config, stream_mode="updates", subgraphs=True):
            where = namespace[0].split(":")[0] + "/" if namespace else ""
            for node, value in update.items():
                keys = sorted(value) if isinstance(value, dict) else []
                print(f"step {where}{node}: {', '.join(keys)}")
        state = app.get_state(config).values
    print("report:", state["report"])
    print("frames searched:", json.dumps(state.get("frames"), default=str))
    return state


if __name__ == "__main__":
    main()
