# Filtered generated sets (docs/METHOD.md §11): gen-{gen}-filtered is a subset, with the same ids and
# records, of gen-{gen}. It then flows through the DAG like any training source, reusing its
# parent's responses and embeddings by subsetting (no model reruns); consensus is recomputed
# on the subset by the ordinary consensus rule (docs/DIFFERENCES.md, "Filtering").


rule filter_generated:
    input:
        unpack(filter_inputs),
    output:
        questions=results_path("data/{bench}/gen-{gen}-filtered.questions.jsonl"),
        keys_file=results_path("data/{bench}/gen-{gen}-filtered.keys.jsonl"),
        report=results_path("data/{bench}/gen-{gen}-filtered.filter.json"),
    log:
        log_path("filter/{bench}/{gen}"),
    benchmark:
        timing_path("filter/{bench}/{gen}")
    wildcard_constraints:
        gen=one_of(FILTERED),
    conda:
        "../../envs/core.yaml"
    resources:
        **rule_resources(),
    params:
        spec=lambda w: as_json(filter_spec(w)),
        responses=filter_args,
        labels=lambda w: as_json({"benchmark": w.bench, "generator": w.gen}),
    shell:
        "rgd filter --questions {input.questions:q} --keys {input.keys_file:q} --spec {params.spec:q} "
        "{params.responses:q} --labels {params.labels:q} --out-questions {output.questions:q} "
        "--out-keys {output.keys_file:q} --out-report {output.report:q} > {log:q} 2>&1"


rule subset_responses:
    input:
        questions=results_path("data/{bench}/gen-{gen}-filtered.questions.jsonl"),
        responses=results_path("responses/{bench}/gen-{gen}/{expert}.jsonl"),
        meta=results_path("responses/{bench}/gen-{gen}/{expert}.meta.json"),
    output:
        responses=results_path("responses/{bench}/gen-{gen}-filtered/{expert}.jsonl"),
        meta=results_path("responses/{bench}/gen-{gen}-filtered/{expert}.meta.json"),
    log:
        log_path("subset_responses/{bench}/{gen}/{expert}"),
    benchmark:
        timing_path("subset_responses/{bench}/{gen}/{expert}")
    wildcard_constraints:
        gen=one_of(FILTERED),
    conda:
        "../../envs/core.yaml"
    resources:
        **rule_resources(),
    shell:
        "rgd subset-responses --questions {input.questions:q} --responses {input.responses:q} "
        "--meta {input.meta:q} --out {output.responses:q} --out-meta {output.meta:q} > {log:q} 2>&1"


rule subset_embeddings:
    input:
        questions=results_path("data/{bench}/gen-{gen}-filtered.questions.jsonl"),
        embeddings=results_path("embeddings/{bench}/gen-{gen}.npz"),
    output:
        results_path("embeddings/{bench}/gen-{gen}-filtered.npz"),
    log:
        log_path("subset_embeddings/{bench}/{gen}"),
    benchmark:
        timing_path("subset_embeddings/{bench}/{gen}")
    wildcard_constraints:
        gen=one_of(FILTERED),
    conda:
        "../../envs/core.yaml"
    resources:
        **rule_resources(),
    shell:
        "rgd subset-embeddings --questions {input.questions:q} --embeddings {input.embeddings:q} "
        "--out {output:q} > {log:q} 2>&1"


# A filtered set's responses and embeddings are subsets of its parent's, never recomputed.
ruleorder: subset_responses > respond
ruleorder: subset_embeddings > embed
