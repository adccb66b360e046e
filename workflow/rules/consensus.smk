# Confidence-weighted consensus of each pool on each question set: the label-free signal.


rule consensus:
    input:
        questions=questions("{qset}"),
        responses=lambda w: list(pool_responses(w).values()),
    output:
        scores=results_path("consensus/{bench}/{pool}/{qset}.jsonl"),
        stats=results_path("consensus/{bench}/{pool}/{qset}.stats.json"),
    log:
        log_path("consensus/{bench}/{pool}/{qset}"),
    benchmark:
        timing_path("consensus/{bench}/{pool}/{qset}")
    conda:
        "../../envs/core.yaml"
    resources:
        **rule_resources(),
    params:
        responses=lambda w: pairs(pool_responses(w)),
        spec=lambda w: as_json(config["consensus"]),  # a function: Snakemake would read braces in a string param as wildcards
    shell:
        "rgd consensus --questions {input.questions:q} --responses {params.responses:q} "
        "--spec {params.spec:q} --out {output.scores:q} --stats {output.stats:q} > {log:q} 2>&1"
