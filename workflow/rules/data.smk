# Benchmark data: download and format (or the embedded MMLU), then a seeded stratified split.


rule embedded_data:
    output:
        questions=f"{RESULTS}/data/{{bench}}/all.questions.jsonl",
        answers=f"{RESULTS}/data/{{bench}}/all.keys.jsonl",
    log:
        f"{LOGS}/data/{{bench}}.log",
    benchmark:
        f"{BENCH}/data/{{bench}}.tsv"
    conda:
        "../../envs/core.yaml"
    params:
        subjects=lambda w: " ".join(bench_source(w)["subjects"]),
        split=lambda w: bench_source(w).get("split", "test"),
        per_subject=lambda w: bench_source(w).get("per_subject", 40),
        seed=config.get("seed", 0),
    shell:
        "rgd embedded-data --subjects {params.subjects} --split {params.split} "
        "--per-subject {params.per_subject} --seed {params.seed} "
        "--out-questions {output.questions} --out-keys {output.answers} > {log} 2>&1"


rule split:
    input:
        questions=questions("all"),
        answers=keys("all"),
    output:
        train_questions=questions("train"),
        train_keys=keys("train"),
        test_questions=questions("test"),
        test_keys=keys("test"),
    log:
        f"{LOGS}/split/{{bench}}.log",
    benchmark:
        f"{BENCH}/split/{{bench}}.tsv"
    conda:
        "../../envs/core.yaml"
    params:
        fraction=lambda w: config["benchmarks"][w.bench]
        .get("split", {})
        .get("train_fraction", 0.6),
        seed=lambda w: config["benchmarks"][w.bench].get("split", {}).get("seed", 0),
    shell:
        "rgd split --questions {input.questions} --keys {input.answers} "
        "--train-fraction {params.fraction} --seed {params.seed} "
        "--train-questions {output.train_questions} --train-keys {output.train_keys} "
        "--test-questions {output.test_questions} --test-keys {output.test_keys} > {log} 2>&1"
