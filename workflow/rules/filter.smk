# Filtered generated sets (reference §11): gen-{gen}-filtered is a subset, with the same ids and
# records, of gen-{gen}. It then flows through the DAG like any training source, reusing its
# parent's responses and embeddings by subsetting (no model reruns); consensus is recomputed
# on the subset by the ordinary consensus rule (docs/DIFFERENCES.md, "Filtering").


rule filter_generated:
    input:
        unpack(filter_inputs),
    output:
        questions=f"{RESULTS}/data/{{bench}}/gen-{{gen}}-filtered.questions.jsonl",
        answers=f"{RESULTS}/data/{{bench}}/gen-{{gen}}-filtered.keys.jsonl",
        report=f"{RESULTS}/data/{{bench}}/gen-{{gen}}-filtered.filter.json",
    log:
        f"{LOGS}/filter/{{bench}}/{{gen}}.log",
    benchmark:
        f"{BENCH}/filter/{{bench}}/{{gen}}.tsv"
    wildcard_constraints:
        gen=one_of(FILTERED),
    conda:
        "../../envs/core.yaml"
    resources:
        **rule_resources(),
    params:
        spec=lambda w: as_json(filter_spec(w.gen)),
        responses=filter_args,
        labels=lambda w: as_json({"benchmark": w.bench, "generator": w.gen}),
    shell:
        "rgd filter --questions {input.questions} --keys {input.answers} --spec {params.spec:q} "
        "{params.responses} --labels {params.labels:q} --out-questions {output.questions} "
        "--out-keys {output.answers} --out-report {output.report} > {log} 2>&1"


rule subset_responses:
    input:
        questions=f"{RESULTS}/data/{{bench}}/gen-{{gen}}-filtered.questions.jsonl",
        responses=f"{RESULTS}/responses/{{bench}}/gen-{{gen}}/{{expert}}.jsonl",
        meta=f"{RESULTS}/responses/{{bench}}/gen-{{gen}}/{{expert}}.meta.json",
    output:
        responses=f"{RESULTS}/responses/{{bench}}/gen-{{gen}}-filtered/{{expert}}.jsonl",
        meta=f"{RESULTS}/responses/{{bench}}/gen-{{gen}}-filtered/{{expert}}.meta.json",
    log:
        f"{LOGS}/subset_responses/{{bench}}/{{gen}}/{{expert}}.log",
    benchmark:
        f"{BENCH}/subset_responses/{{bench}}/{{gen}}/{{expert}}.tsv"
    wildcard_constraints:
        gen=one_of(FILTERED),
    conda:
        "../../envs/core.yaml"
    resources:
        **rule_resources(),
    shell:
        "rgd subset-responses --questions {input.questions} --responses {input.responses} "
        "--meta {input.meta} --out {output.responses} --out-meta {output.meta} > {log} 2>&1"


rule subset_embeddings:
    input:
        questions=f"{RESULTS}/data/{{bench}}/gen-{{gen}}-filtered.questions.jsonl",
        embeddings=f"{RESULTS}/embeddings/{{bench}}/gen-{{gen}}.npz",
    output:
        f"{RESULTS}/embeddings/{{bench}}/gen-{{gen}}-filtered.npz",
    log:
        f"{LOGS}/subset_embeddings/{{bench}}/{{gen}}.log",
    benchmark:
        f"{BENCH}/subset_embeddings/{{bench}}/{{gen}}.tsv"
    wildcard_constraints:
        gen=one_of(FILTERED),
    conda:
        "../../envs/core.yaml"
    resources:
        **rule_resources(),
    shell:
        "rgd subset-embeddings --questions {input.questions} --embeddings {input.embeddings} "
        "--out {output} > {log} 2>&1"


# A filtered set's responses and embeddings are subsets of its parent's, never recomputed.
ruleorder: subset_responses > respond
ruleorder: subset_embeddings > embed
