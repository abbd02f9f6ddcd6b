"""A LangChain tool-calling agent that uses videoseek's tools.

The tools are ordinary LangChain tools (``response_format="content_and_artifact"``): each
frame comes as an image block after its timestamp text, and your code gets the typed
:class:`~agent_tools.types.FrameSelection` as ``ToolMessage.artifact``. The loop is the plain
LangGraph ``ToolNode`` + ``tools_condition`` pattern with native tool calling (``bind_tools``).

OpenAI's chat completions API (and vLLM, and most OpenAI-compatible servers) accept only text
in ``tool`` messages, so the model is wrapped with
:func:`~agent_tools.langchain_tools.with_tool_images_as_user`: each tool message is sent as its
text (timestamps) and the frames follow in one user message. The graph state keeps the tools'
own messages.

Runs on CPU with no network by default (a scripted fake model that calls ``preview_video``, then
``seek_video_frames``, then answers). With ``langchain-openai`` installed::

    python examples/langchain_agent.py
    OPENAI_API_KEY=... python examples/langchain_agent.py --video clip.mp4 --model gpt-4o-mini
    python examples/langchain_agent.py --video clip.mp4 --model Qwen/Qwen2.5-VL-7B-Instruct \
        --base-url http://localhost:8000/v1    # vllm serve with --enable-auto-tool-choice

(vLLM needs ``--enable-auto-tool-choice`` and a ``--tool-call-parser`` matching the model for
native tool calls; an RL-trained videoseek checkpoint speaks the text protocol instead: use
``examples/langgraph_app.py --policy URL``.)
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
from agent_tools.langchain_tools import make_preview_tool, make_seek_tool, with_tool_images_as_user
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


def chat_model(name: str, base_url: Optional[str] = None):
    """``ChatOpenAI`` for an OpenAI model, or any OpenAI-compatible server (``vllm serve``)."""
    from langchain_openai import ChatOpenAI  # pip install langchain-openai

    kwargs = {"base_url": base_url, "api_key": "EMPTY"} if base_url else {}
    return ChatOpenAI(model=name, temperature=0, max_retries=4, **kwargs)


def build_agent(model, tools, *, images_as_user: bool = True) -> StateGraph:
    """The standard tool-calling loop: model -> tools -> model ... until no tool call.

    Args:
        model: A chat model; its tools are bound with ``bind_tools`` when it has them (the
            scripted fake already knows its calls).
        tools: The videoseek tools.
        images_as_user: Send tool images in a following user message (what chat-completions
            APIs accept); False sends them inside the tool messages (Anthropic, Gemini accept that).
    """
    bound = model if isinstance(model, GenericFakeChatModel) else model.bind_tools(tools)
    if images_as_user:
        bound = with_tool_images_as_user(bound)
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
    parser.add_argument("--model", help="Chat model name for ChatOpenAI (default: the scripted fake).")
    parser.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://localhost:8000/v1 (vLLM).")
    args = parser.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="videoseek-agent-"))
    work.mkdir(parents=True, exist_ok=True)
    video = args.video or str(write_indexed_video(work / "clip.mp4", duration=10, fps=10))
    settings = get_settings(encoder=args.encoder, cache_dir=work / "cache", device="cpu")
    searcher = TemporalSearcher(load_encoder(settings.encoder, device="cpu"), settings=settings)
    tools = [make_preview_tool(searcher), make_seek_tool(searcher)]

    model = chat_model(args.model, args.base_url) if args.model else scripted_model(video)
    agent = build_agent(model, tools).compile()
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
