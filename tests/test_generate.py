import pytest

from rgd.generate import build_prompt, choose_seeds, collect, parse_block, parse_output

GOOD = """[QUESTION] Which interval contains $x$ if $x^2 < 4$? Use [a, b] notation.
[OPTION A] [-2, 2]
[OPTION B] (-2, 2)
[OPTION C] [0, 4)
[OPTION D] (-4, 4)
[ANSWER] B"""


def test_parser_keeps_brackets_inside_text():
    p = parse_block(GOOD)
    assert p.reason is None
    assert p.question.endswith("Use [a, b] notation.")
    assert p.options[0] == "[-2, 2]" and p.answer == "B"


@pytest.mark.parametrize(
    "text, reason",
    [
        (GOOD.replace("[ANSWER] B", "[ANSWER] E"), "not one of A-D"),
        (GOOD.replace("[ANSWER] B", "[ANSWER] the second"), "not one of A-D"),
        (GOOD.replace("[OPTION D] (-4, 4)\n", ""), "missing fields: [OPTION D]"),
        (GOOD.replace("(-4, 4)", "(-2, 2)"), "duplicate options"),
        (GOOD + "\n[ANSWER] C", "repeated tag"),
        ("complete garbage", "missing fields: [QUESTION]"),
    ],
)
def test_parser_rejects_with_reason(text, reason):
    assert reason in parse_block(text).reason


def test_answer_forms():
    for ans in ("(C)", "C.", "C) because", "c"):
        assert parse_block(GOOD.replace("[ANSWER] B", f"[ANSWER] {ans}")).answer == "C"


def test_multiple_blocks_and_completion_continuation():
    two = GOOD + "\n#####\n" + GOOD.replace("x^2", "y^2")
    assert [p.reason for p in parse_output(two)] == [None, None]
    # a base model continues after "[QUESTION]" and runs on into the next example
    cont = GOOD.removeprefix("[QUESTION]") + "\n#####\nCategory: other\n[QUESTION] more"
    parsed = parse_output(cont, continues_tag="QUESTION")
    assert len(parsed) == 1 and parsed[0].reason is None


def test_collect_dedupes_and_keeps_rejects():
    outs = [(0, "math", GOOD), (1, "math", GOOD), (2, "bio", "nonsense")]
    qs, keys, rejects = collect(outs, None, "g")
    assert [q["id"] for q in qs] == ["g-00000-0"] and keys == [{"id": "g-00000-0", "answer": "B"}]
    assert [r["reason"] for r in rejects][0].startswith("duplicate question: same as g-00000-0")
    assert rejects[1]["prompt"] == 2 and rejects[1]["text"] == "nonsense"
    assert "answer" not in qs[0]  # questions and keys are separate records


def test_seed_choice_is_balanced_seeded_and_respects_replacement():
    pool = {"a": ["a1", "a2", "a3"], "b": ["b1"], "c": ["c1", "c2"]}
    s1 = choose_seeds(pool, 6, seed=3, replace=False)
    assert s1 == choose_seeds(pool, 6, seed=3, replace=False)
    assert sorted(x for _, x in s1) == sorted(sum(pool.values(), []))
    assert [c for c, _ in s1[:3]] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="only 6 available"):
        choose_seeds(pool, 7, seed=0, replace=False)
    s2 = choose_seeds(pool, 30, seed=0, replace=True)
    assert [c for c, _ in s2].count("b") == 10


def test_prompts_never_contain_real_questions():
    p = build_prompt("Questions about cells.", "chat")
    assert "Questions about cells." in p["messages"][-1]["content"]
    p = build_prompt("Questions about cells.", "fewshot")
    assert p["text"].endswith("Category: Questions about cells.\n[QUESTION]")


def test_generation_progress_lines_count_cached_prompts(tmp_path, tiny_model, monkeypatch):
    import yaml  # noqa: F401  (the CLI's descriptions loader; here a dict)

    from rgd import progress
    from rgd.generate import run
    from rgd.io import write_jsonl

    monkeypatch.setattr(progress, "EVERY_SECONDS", 0.0)
    seeds = tmp_path / "seeds.jsonl"
    write_jsonl(
        seeds,
        [{"id": f"s{i}", "category": "ab"[i % 2], "question": "?", "options": ["a", "b"]} for i in range(4)],
    )
    spec = {
        "model": "tiny",
        "style": "chat",
        "num_prompts": 5,
        "batch_size": 2,
        "sampling": {"temperature": 0.9, "max_new_tokens": 8},
        "seed": 1,
    }
    outs = [tmp_path / n for n in ("q.jsonl", "k.jsonl", "r.jsonl", "meta.json", "cache.jsonl")]
    desc = {"a": "Questions about a.", "b": "Questions about b."}
    lines = []
    run("g", spec, seeds, desc, tiny_model, *outs, log=lines.append)
    assert [line.split(" (")[0] for line in lines] == [
        "[g] 2/5 prompts",
        "[g] 4/5 prompts",
        "[g] 5/5 prompts",
        "[g] done: 5/5 prompts",
    ]
    assert lines[-1].startswith("[g] done: 5/5 prompts (0 cached, 5 computed) in ")
    lines.clear()
    run("g", spec, seeds, desc, tiny_model, *outs, log=lines.append)
    assert lines[-1].startswith("[g] done: 5/5 prompts (5 cached, 0 computed) in ")


def test_streaming_generation_reports_progress_with_cached_prompts(tmp_path, monkeypatch):
    """The streaming path (as VLLMBackend offers it), through a double that writes one valid block."""
    from rgd import generate
    from rgd.backends.base import Backend, Generation
    from rgd.io import write_jsonl

    class Streaming(Backend):
        name, streams, identity = "streaming-double", True, {"model": "double"}

        @classmethod
        def create(cls, model_dir, settings, log=None):
            return cls()

        def generate(self, prompts, sampling, logprobs=False, stop=None):
            raise AssertionError("a streaming backend is sent every prompt at once")

        def stream_generate(self, prompts, sampling, seeds, logprobs=False):
            for j, _ in enumerate(prompts):
                yield (
                    j,
                    Generation(
                        f"[QUESTION] q{seeds[j]}?\n[OPTION A] a\n[OPTION B] b\n[OPTION C] c\n"
                        "[OPTION D] d\n[ANSWER] A",
                        None,
                        5,
                        9,
                    ),
                )

    monkeypatch.setattr(generate.backends, "make", lambda *a, **k: Streaming())
    seeds = tmp_path / "seeds.jsonl"
    write_jsonl(
        seeds, [{"id": f"s{i}", "category": "a", "question": "?", "options": ["a", "b"]} for i in range(3)]
    )
    outs = [tmp_path / n for n in ("q.jsonl", "k.jsonl", "r.jsonl", "meta.json", "cache.jsonl")]
    model = tmp_path / "model"  # a local generator's model directory: only its manifest is read here
    model.mkdir()
    (model / "rgd-model.json").write_text('{"name": "double"}')
    lines = []
    spec = {"model": "double", "num_prompts": 3, "batch_size": 2}
    generate.run("g", spec, seeds, {"a": "About a."}, model, *outs, log=lines.append)
    assert lines[-1].startswith("[g] done: 3/3 prompts (0 cached, 3 computed) in ")
    lines.clear()
    meta = generate.run(
        "g", {**spec, "num_prompts": 5}, seeds, {"a": "About a."}, model, *outs, log=lines.append
    )
    assert lines[-1].startswith("[g] done: 5/5 prompts (3 cached, 2 computed) in ")
    assert meta["throughput"]["computed_prompts"] == 2 and meta["n_questions"] == 5
