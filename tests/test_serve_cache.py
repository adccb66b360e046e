"""The embedding cache of `rgd serve` (rgd.serve.embed_cache) on its own, and in the Ranker: its two
bounds, its order, off at 0, concurrent use, and a hit that never reaches the embedder. Through a
real `rgd serve`: tests/test_serve.py."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from rgd.serve.embed_cache import ENTRY_OVERHEAD, EmbedCache, text_key

D = 8  # float32: 32 bytes a vector
COST = 4 * D + ENTRY_OVERHEAD


def vec(i: int) -> np.ndarray:
    return np.full(D, i, dtype=np.float64)  # stored as float32


def test_the_entries_bound_drops_the_least_recently_used():
    c = EmbedCache(3, 1 << 20)
    for i in range(3):
        c.put(text_key(f"t{i}"), vec(i))
    assert c.get(text_key("t0"))[0] == 0  # t0 is now the most recently used: t1 goes next
    c.put(text_key("t3"), vec(3))
    assert len(c) == 3 and c.bytes == 3 * COST
    assert c.get(text_key("t1")) is None
    assert [c.get(text_key(t))[0] for t in ("t0", "t2", "t3")] == [0, 2, 3]
    got = c.get(text_key("t3"))
    assert got.dtype == np.float32 and not got.flags.writeable


def test_the_bytes_bound_holds_and_a_vector_over_it_is_not_kept():
    c = EmbedCache(100, 2 * COST + 10)
    for i in range(5):
        c.put(text_key(f"t{i}"), vec(i))
        assert c.bytes <= c.max_bytes
    assert len(c) == 2 and c.get(text_key("t3")) is not None and c.get(text_key("t4")) is not None
    c.put(text_key("huge"), np.zeros(1000, np.float32))  # larger than the whole bound: not kept
    assert c.get(text_key("huge")) is None and len(c) == 2
    c.put(text_key("t4"), vec(7))  # a text put again replaces its entry, charged once
    assert c.get(text_key("t4"))[0] == 7 and c.bytes == 2 * COST


def test_a_copy_is_kept_not_a_view_of_the_batch():
    X = np.arange(4 * D, dtype=np.float32).reshape(4, D)
    c = EmbedCache(10, 1 << 20)
    c.put(text_key("a"), X[1])
    X[1] = -1
    got = c.get(text_key("a"))
    assert got.base is None and got[0] == D


@pytest.mark.parametrize("entries, size", [(0, 1 << 20), (10, 0)])
def test_zero_disables_the_cache(entries, size):
    c = EmbedCache(entries, size)
    c.put(text_key("a"), vec(1))
    assert not c.enabled and len(c) == 0 and c.bytes == 0 and c.get(text_key("a")) is None
    assert c.describe() == "off"


def test_keys_are_fixed_size_and_exact():
    assert len(text_key("x" * 100_000)) == 32
    assert text_key("What is DNA?") != text_key("What is DNA? ")
    assert text_key("\ud800") != text_key("\udc00")  # a lone surrogate still has a key


def test_concurrent_puts_and_gets_keep_both_bounds():
    c = EmbedCache(50, 40 * COST)
    errors = []

    def work(seed: int):
        rng = np.random.default_rng(seed)
        try:
            for _ in range(2000):
                k = text_key(f"t{rng.integers(200)}")
                v = c.get(k)
                if v is None:
                    c.put(k, vec(int(rng.integers(100))))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and not any(t.is_alive() for t in threads)
    assert len(c) == 40 and c.bytes == 40 * COST  # the bytes bound binds first, and the count is exact


def test_a_hit_skips_the_embedder_and_ranks_alike():
    from rgd.cost import Objective
    from rgd.serve.app import Ranker

    calls = []

    def embed(texts):
        calls.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts])

    def score(X):
        return np.asarray(X)[:, ::-1] * [1.0, 2.0]

    async def run(cache):
        ranker = Ranker(embed, score, 2, Objective.parse("quality"), None, cache=cache)
        ranker.start()
        try:
            return [await ranker.rank(t) for t in ["abc", "abc", "z"]], ranker.batches
        finally:
            await ranker.stop()

    (miss, hit, other), batches = asyncio.run(run(EmbedCache(8, 1 << 20)))
    assert calls == [["abc"], ["z"]] and batches == 2  # the hit: no embedder, no batch
    assert (miss.cache, hit.cache, other.cache) == ("miss", "hit", "miss")
    assert np.array_equal(miss.scores, hit.scores) and np.array_equal(miss.order, hit.order)
    assert hit.embedding_s < 0.01 and hit.ranking_s >= 0
    calls.clear()
    (a, b, _), _ = asyncio.run(run(EmbedCache(0, 0)))
    assert calls == [["abc"], ["abc"], ["z"]] and a.cache == b.cache == "off"


def test_an_inline_embedder_runs_on_the_event_loop_and_ranks_as_the_thread_does():
    """A static embedder (`inline`) is called on the event loop's own thread, the others in the
    worker thread; concurrent requests are batched and ranked alike either way."""
    from rgd.cost import Objective
    from rgd.serve.app import Ranker

    threads = []

    def embed(texts):
        threads.append(threading.get_ident())
        return np.array([[len(t), 1.0] for t in texts])

    def score(X):
        return np.asarray(X)[:, ::-1] * [1.0, 2.0]

    async def run(inline):
        ranker = Ranker(
            embed, score, 2, Objective.parse("quality"), None, cache=EmbedCache(0, 0), inline=inline
        )
        ranker.start()
        try:
            got = await asyncio.gather(*(ranker.rank(t) for t in ["a", "bbbb", "cc", "a" * 9]))
            return got, threading.get_ident(), ranker.batches
        finally:
            await ranker.stop()

    (inline, loop_thread, n_inline) = asyncio.run(run(True))
    assert set(threads) == {loop_thread} and n_inline < 4  # batched, on the loop's thread
    threads.clear()
    (worker, loop_thread, _) = asyncio.run(run(False))
    assert loop_thread not in threads
    for x, y in zip(inline, worker):
        assert np.array_equal(x.scores, y.scores) and np.array_equal(x.order, y.order)
