"""Progress lines: rate-limited, cached records apart from the rate, a final line, on an injected clock."""

from __future__ import annotations

from rgd.progress import Progress, duration, rate_text


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def _progress(total=100, every=5.0):
    clock, lines = Clock(), []
    return Progress("e1", total, log=lines.append, every=every, clock=clock), clock, lines


def test_lines_at_most_every_few_seconds_and_always_at_the_end():
    p, clock, lines = _progress()
    for i in range(1, 11):  # a batch of 4 every second
        clock.t += 1.0
        p.update(4 * i)
    assert lines == [
        "[e1] 20/100 questions (0 cached, 20 computed), 4.0 questions/s, about 20 s left",
        "[e1] 40/100 questions (0 cached, 40 computed), 4.0 questions/s, about 15 s left",
    ]
    clock.t += 0.5
    assert p.finish() == "[e1] done: 40/100 questions (0 cached, 40 computed) in 10 s, 3.8 questions/s"
    assert len(lines) == 3


def test_cached_records_count_as_done_but_not_in_the_rate():
    p, clock, lines = _progress(total=60, every=0.0)
    p.update(0, 40)  # a resumed job: 40 found in the cache, nothing computed yet, no rate to estimate from
    assert lines[-1] == "[e1] 40/60 questions (40 cached, 0 computed)"
    clock.t += 10.0
    p.update(5, 40)
    assert lines[-1] == "[e1] 45/60 questions (40 cached, 5 computed), 2.0 s per question, about 30 s left"
    assert p.finish().startswith("[e1] done: 45/60 questions (40 cached, 5 computed) in 10 s")


def test_all_cached_and_slow_rates():
    p, clock, lines = _progress(total=8)
    p.update(0, 8)
    assert lines == []  # less than `every` seconds: no line until the end
    assert p.finish() == "[e1] done: 8/8 questions (8 cached, 0 computed) in 0 s"
    q = Progress("gen", 10, unit="prompt", log=lines.append, every=1.0, clock=clock)
    clock.t += 75.0
    q.update(2)
    assert lines[-1] == "[gen] 2/10 prompts (0 cached, 2 computed), 37.5 s per prompt, about 5 min 00 s left"


def test_formats():
    assert duration(0.4) == "0 s" and duration(59.6) == "1 min 00 s" and duration(3725) == "1 h 02 min"
    assert rate_text(3.25, "question") == "3.2 questions/s" and rate_text(0.5, "prompt") == "2.0 s per prompt"
