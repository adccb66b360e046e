"""The recorded backend: a model's published answers, replayed (rgd.recorded, `rgd import-responses`).

A recorded expert runs no model. Its respond step reads the model's recorded letter (or its
recorded abstention and the reason) for exactly the questions of the set; a question the
recording does not cover, or covers with another text, stops the job before anything is written:
a recorded pool can answer its own benchmark, never a generated set.
"""

from __future__ import annotations

from ..io import SetupError, sha256_file
from ..recorded.recording import ANSWERS, QUESTIONS
from ..records import Question, Response
from .base import Backend, Generation, Sampling, Settings

# the recording's files whose digests identify a replay (the cache key's and the metadata's model)
_IDENTITY_FILES = (QUESTIONS, ANSWERS)


class RecordedBackend(Backend):
    """Replays one model of a recording directory; `settings.engine["name"]` names the model."""

    name = "recorded"
    replays = True

    def __init__(self, recording_dir: str, model: str):
        from pathlib import Path

        from ..recorded import load_recording

        self.recording = load_recording(recording_dir)
        if model not in self.recording.models:
            raise SetupError(
                f"{recording_dir}: no recorded model {model!r}; it records {', '.join(self.recording.models)}"
            )
        self.model = model
        self.identity = {
            "recorded": model,
            "recording": {f: sha256_file(Path(recording_dir) / f) for f in _IDENTITY_FILES},
        }

    @classmethod
    def create(cls, model_dir: str | None, settings: Settings, log=None) -> RecordedBackend:
        if not model_dir or "name" not in settings.engine:
            raise SetupError("recorded backend: needs the recording directory and engine.name (the model)")
        return cls(model_dir, settings.engine["name"])

    def describe(self) -> dict:
        return {"backend": "recorded", "model": self.model, "source": self.recording.provenance.get("source")}

    def generate(self, prompts, sampling: Sampling, logprobs: bool = False, stop=None) -> list[Generation]:
        raise ValueError("recorded: a recorded model replays its answers; it cannot write new text")

    def replay(self, questions: list[Question], expert: str) -> list[Response]:
        """One response per question, in order; SetupError (one line) unless the recording covers
        every question with the same text."""
        answers = self.recording.answers(self.model)
        abstained = self.recording.abstentions(self.model)
        conf = self.recording.confidences(self.model)
        recorded = {q.id: q for q in self.recording.questions}
        covered = self.recording.covered(self.model)
        missing = [q.id for q in questions if q.id not in covered]
        if missing:
            raise SetupError(
                f"the recording of {self.model!r} does not cover {len(missing)} of the {len(questions)} "
                f"questions (first: {missing[0]!r}): a recorded expert answers only the questions it was "
                "recorded on, never a generated set"
            )
        changed = [q.id for q in questions if (r := recorded.get(q.id)) is None or r.question != q.question]
        if changed:
            raise SetupError(
                f"question {changed[0]!r} (and {len(changed) - 1} more) differs from the text "
                f"{self.model!r} was recorded on"
            )
        return [
            Response(q.id, expert, answers[q.id], conf.get(q.id))
            if q.id in answers
            else Response(q.id, expert, None, None, "unparsed", abstained[q.id])
            for q in questions
        ]
