# Confidence-weighted consensus of each pool on each question set: the label-free signal.


rule consensus:
    input:
        questions=questions("{qset}"),
        responses=lambda w: list(pool_responses(w).values()),
    output:
        scores=f"{RESULTS}/consensus/{{bench}}/{{pool}}/{{qset}}.jsonl",
        stats=f"{RESULTS}/consensus/{{bench}}/{{pool}}/{{qset}}.stats.json",
    log:
        f"{LOGS}/consensus/{{bench}}/{{pool}}/{{qset}}.log",
    benchmark:
        f"{BENCH}/consensus/{{bench}}/{{pool}}/{{qset}}.tsv"
    conda:
        "../../envs/core.yaml"
    resources:
        **rule_resources(),
    params:
        responses=lambda w: pairs(pool_responses(w)),
        spec=as_json(config.get("consensus", {})),
    shell:
        "rgd consensus --questions {input.questions} --responses {params.responses} "
        "--spec {params.spec:q} --out {output.scores} --stats {output.stats} > {log} 2>&1"
