# Benchmark data: download and format (or the embedded MMLU), then a seeded stratified split.


rule embedded_data:
    output:
        questions=results_path("data/{bench}/all.questions.jsonl"),
        keys_file=results_path("data/{bench}/all.keys.jsonl"),
    log:
        log_path("data/{bench}"),
    benchmark:
        timing_path("data/{bench}")
    wildcard_constraints:
        bench=one_of(EMBEDDED),
    conda:
        "../../envs/core.yaml"
    resources:
        **rule_resources(),
    params:
        subjects=lambda w: bench_source(w)["subjects"],
        # the step's own defaults (rgd.embedded) apply to what the config leaves out
        options=lambda w: optional_args(bench_source(w), "split", "per_subject"),
        seed=config["seed"],
    shell:
        "rgd embedded-data --subjects {params.subjects:q} {params.options:q} --seed {params.seed:q} "
        "--out-questions {output.questions:q} --out-keys {output.keys_file:q} > {log:q} 2>&1"


# A recorded benchmark: the questions of a recording that every recorded model of its pools answered.
rule recorded_data:
    input:
        answers=lambda w: os.path.join(
            project_file(bench_source(w)["path"]), RECORDED_ANSWERS
        ),
    output:
        questions=results_path("data/{bench}/all.questions.jsonl"),
        keys_file=results_path("data/{bench}/all.keys.jsonl"),
    log:
        log_path("data/{bench}"),
    benchmark:
        timing_path("data/{bench}")
    wildcard_constraints:
        bench=one_of(RECORDED),
    conda:
        "../../envs/core.yaml"
    resources:
        **rule_resources(),
    params:
        recording=lambda w, input: os.path.dirname(input.answers),
        models=recorded_models,
    shell:
        "rgd recorded-data --recording {params.recording:q} --models {params.models:q} "
        "--out-questions {output.questions:q} --out-keys {output.keys_file:q} > {log:q} 2>&1"


# Paper benchmarks. `download` is the one rule that needs the network (Hugging Face hub or
# raw.githubusercontent.com): it runs on the submitting host (localrule), as compute nodes are
# often offline, and fetches the revision pinned in the config into resources/datasets/{bench}/
# with a source.json stamp (repo, revision, sha256 of every file). `format_benchmark` is offline.
rule download:
    output:
        directory(os.path.join(RAW, "{bench}")),
    log:
        log_path("download/{bench}"),
    benchmark:
        timing_path("download/{bench}")
    wildcard_constraints:
        bench=one_of(DOWNLOADED),
    localrule: True
    conda:
        "../../envs/core.yaml"
    params:
        kind=lambda w: bench_source(w)["kind"],
        revision=lambda w: bench_source(w)["revision"],
    shell:
        "rgd download --benchmark {params.kind:q} --revision {params.revision:q} "
        "--out-dir {output:q} > {log:q} 2>&1"


rule format_benchmark:
    input:
        raw=os.path.join(RAW, "{bench}"),
    output:
        questions=results_path("data/{bench}/all.questions.jsonl"),
        keys_file=results_path("data/{bench}/all.keys.jsonl"),
    log:
        log_path("format/{bench}"),
    benchmark:
        timing_path("format/{bench}")
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
        "rgd format --benchmark {params.kind:q} --raw-dir {input.raw:q} --options {params.options:q} "
        "--out-questions {output.questions:q} --out-keys {output.keys_file:q} > {log:q} 2>&1"


rule split:
    input:
        questions=questions("all"),
        keys_file=keys("all"),
        test_ids=split_test_ids,
    output:
        train_questions=questions("train"),
        train_keys=keys("train"),
        test_questions=questions("test"),
        test_keys=keys("test"),
    log:
        log_path("split/{bench}"),
    benchmark:
        timing_path("split/{bench}")
    conda:
        "../../envs/core.yaml"
    resources:
        **rule_resources(),
    params:
        fraction=lambda w: split_settings(w)["train_fraction"],
        seed=lambda w: split_settings(w)["seed"],
        test_ids=lambda w, input: (
            ["--test-ids", *input.test_ids] if input.test_ids else []
        ),
    shell:
        "rgd split --questions {input.questions:q} --keys {input.keys_file:q} "
        "--train-fraction {params.fraction:q} --seed {params.seed:q} {params.test_ids:q} "
        "--train-questions {output.train_questions:q} --train-keys {output.train_keys:q} "
        "--test-questions {output.test_questions:q} --test-keys {output.test_keys:q} > {log:q} 2>&1"
