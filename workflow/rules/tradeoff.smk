# Accuracy against cost (rgd.cost): each router's ranking re-ordered by a cost objective, swept
# over its trade-off, scored against the real test keys; a figure per (benchmark, pool) and tables.
# Only pools whose every model has a registry `cost` are swept.


rule tradeoff:
    input:
        routes=lambda w: list(source_routes(w).values()),
        questions=questions("test"),
        keys_file=keys("test"),
        responses=lambda w: list(test_responses(w).values()),
    output:
        TRADEOFF,
    log:
        log_path("tradeoff/{bench}/{pool}/{source}"),
    benchmark:
        timing_path("tradeoff/{bench}/{pool}/{source}")
    wildcard_constraints:
        pool=one_of(COST_POOLS),
    conda:
        "../../envs/core.yaml"
    resources:
        **rule_resources(),
    params:
        routes=lambda w: pairs(source_routes(w)),
        responses=lambda w: pairs(test_responses(w)),
        costs=lambda w: as_json(pool_costs(w.pool)),
        labels=lambda w: f"{w.bench}/{w.pool}/{w.source}",
        seed=config["evaluation"]["seed"],
    shell:
        "rgd tradeoff --routes {params.routes:q} --questions {input.questions:q} "
        "--keys {input.keys_file:q} --responses {params.responses:q} --costs {params.costs:q} "
        "--labels {params.labels:q} --seed {params.seed:q} --out {output:q} > {log:q} 2>&1"


rule tradeoff_figure:
    input:
        lambda w: per_source(TRADEOFF)(w).values(),
    output:
        figure("cost", "cost", "8. Accuracy and cost", "accuracy against cost"),
    log:
        log_path("report/tradeoff_figure/{bench}/{pool}"),
    benchmark:
        timing_path("report/tradeoff_figure/{bench}/{pool}")
    wildcard_constraints:
        pool=one_of(COST_POOLS),
    conda:
        "../../envs/report.yaml"
    resources:
        **rule_resources(),
    shell:
        "rgd tradeoff-report --tradeoffs {input:q} --figure {output:q} > {log:q} 2>&1"


rule tradeoff_table:
    input:
        every(TRADEOFF, pools=COST_POOLS),
    output:
        TRADEOFF_TABLES,
    log:
        log_path("report/tradeoff_table"),
    benchmark:
        timing_path("report/tradeoff_table")
    conda:
        "../../envs/report.yaml"
    resources:
        **rule_resources(),
    params:
        out_dir=lambda w, output: os.path.dirname(output[0]),
    shell:
        "rgd tradeoff-report --tradeoffs {input:q} --tables-dir {params.out_dir:q} > {log:q} 2>&1"
