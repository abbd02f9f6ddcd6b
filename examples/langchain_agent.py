"""A LangChain tool-calling agent that uses videoseek's tools.

The tools are ordinary LangChain tools (``response_format="content_and_artifact"``): the
model receives each frame as an image block after its timestamp text, and your code gets
the typed :class:`~agent_tools.types.FrameSelection` as ``ToolMessage.artifact``. Any chat
model with tool calling works (``ChatOpenAI``, ``ChatAnthropic``, a ``vllm serve`` endpoint
through ``ChatOpenAI(base_url=...)``, or ``langchain.agents.create_agent``); the loop here is
the plain LangGraph ``ToolNode`` + ``tools_condition`` pattern.

So that it runs on CPU with no network, the default model is a scripted fake that calls
``preview_video`` then ``seek_video_frames`` and then answers::

    python examples/langchain_agent.py
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Annotated, Optional

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode, tools_condition
from typing_extensions import TypedDict

from agent_tools.config import get_settings
from agent_tools.encoders import load_encoder
from agent_tools.langchain_tools import make_preview_tool, make_seek_tool
from agent_tools.synthetic import write_indexed_video
from agent_tools.temporal import TemporalSearcher


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def scripted_model(video: str) -> GenericFakeChatModel:
    """A chat model stand-in that makes two tool calls and answers (replace with a real one)."""
    return GenericFakeChatModel(
        messages=iter(
            [
                AIMessage(
                    content="",
                    tool_calls=[
                        {"name": "preview_video", "args": {"video": video, "num_frames": 4}, "id": "call_1"}
                    ],
                ),
                AIMessage(
                    content="",
                    tool_calls=[
                        {
                            "name": "seek_video_frames",
                            "args": {
                                "video": video,
                                "query": "a bright square",
                                "start_time": 2,
                                "end_time": 6,
                                "num_frames": 3,
                            },
                            "id": "call_2",
                        }
                    ],
                ),
                AIMessage(content="A square slides to the right between 2 s and 6 s."),
            ]
        )
    )


def build_agent(model, tools) -> StateGraph:
    """The standard tool-calling loop: model -> tools -> model ... until no tool call."""
    bound = (
        model.bind_tools(tools)
        if hasattr(model, "bind_tools") and not isinstance(model, GenericFakeChatModel)
        else model
    )
    g = StateGraph(State)
    g.add_node("agent", lambda s: {"messages": [bound.invoke(s["messages"])]})
    g.add_node("tools", ToolNode(tools))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", tools_condition)
    g.add_edge("tools", "agent")
    return g


def main(argv: Optional[list[str]] = None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", help="Video file (default: a synthetic 10 s clip).")
    parser.add_argument("--encoder", default="tiny-untrained")
    parser.add_argument("--workdir", help="Where the video and cache go (default: a temp dir).")
    args = parser.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="videoseek-agent-"))
    work.mkdir(parents=True, exist_ok=True)
    video = args.video or str(write_indexed_video(work / "clip.mp4", duration=10, fps=10))
    settings = get_settings(encoder=args.encoder, cache_dir=work / "cache", device="cpu")
    searcher = TemporalSearcher(load_encoder(settings.encoder, device="cpu"), settings=settings)
    tools = [make_preview_tool(searcher), make_seek_tool(searcher)]

    agent = build_agent(scripted_model(video), tools).compile()
    out = agent.invoke({"messages": [HumanMessage(content=f"What happens in {video}?")]})
    for m in out["messages"]:
        if isinstance(m, ToolMessage):
            n_images = sum(1 for b in m.content if isinstance(b, dict) and b.get("type") == "image")
            print(f"tool {m.name}: {n_images} images; artifact timestamps {m.artifact.timestamps}")
        else:
            print(f"{m.type}: {m.content or m.tool_calls}")
    return out["messages"]


if __name__ == "__main__":
    main()
