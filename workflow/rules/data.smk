# Benchmark data: download and format (or the embedded MMLU), then a seeded stratified split.


rule embedded_data:
    output:
        questions=f"{RESULTS}/data/{{bench}}/all.questions.jsonl",
        answers=f"{RESULTS}/data/{{bench}}/all.keys.jsonl",
    log:
        f"{LOGS}/data/{{bench}}.log",
    benchmark:
        f"{BENCH}/data/{{bench}}.tsv"
    wildcard_constraints:
        bench=one_of(EMBEDDED),
    conda:
        "../../envs/core.yaml"
    resources:
        **rule_resources(),
    params:
        subjects=lambda w: " ".join(bench_source(w)["subjects"]),
        split=lambda w: bench_source(w).get("split", "test"),
        per_subject=lambda w: bench_source(w).get("per_subject", 40),
        seed=config.get("seed", 0),
    shell:
        "rgd embedded-data --subjects {params.subjects} --split {params.split} "
        "--per-subject {params.per_subject} --seed {params.seed} "
        "--out-questions {output.questions} --out-keys {output.answers} > {log} 2>&1"


# Paper benchmarks. `download` is the one rule that needs the network (Hugging Face hub or
# raw.githubusercontent.com): it runs on the submitting host (localrule), as compute nodes are
# often offline, and fetches the revision pinned in the config into resources/datasets/{bench}/
# with a source.json stamp (repo, revision, sha256 of every file). `format_benchmark` is offline.
rule download:
    output:
        directory(f"{RAW}/{{bench}}"),
    log:
        f"{LOGS}/download/{{bench}}.log",
    benchmark:
        f"{BENCH}/download/{{bench}}.tsv"
    wildcard_constraints:
        bench=one_of(DOWNLOADED),
    localrule: True
    conda:
        "../../envs/core.yaml"
    params:
        kind=lambda w: bench_source(w)["kind"],
        revision=lambda w: bench_source(w)["revision"],
    shell:
        "rgd download --benchmark {params.kind} --revision {params.revision} "
        "--out-dir {output} > {log} 2>&1"


rule format_benchmark:
    input:
        raw=f"{RAW}/{{bench}}",
    output:
        questions=f"{RESULTS}/data/{{bench}}/all.questions.jsonl",
        answers=f"{RESULTS}/data/{{bench}}/all.keys.jsonl",
    log:
        f"{LOGS}/format/{{bench}}.log",
    benchmark:
        f"{BENCH}/format/{{bench}}.tsv"
    wildcard_constraints:
        bench=one_of(DOWNLOADED),
    conda:
        "../../envs/core.yaml"
    resources:
        **rule_resources(),
    params:
        kind=lambda w: bench_source(w)["kind"],
        options=lambda w: as_json(bench_source(w).get("options", {})),
    shell:
        "rgd format --benchmark {params.kind} --raw-dir {input.raw} --options {params.options:q} "
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
    resources:
        **rule_resources(),
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
