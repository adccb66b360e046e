# Evaluation against the real test keys, and the summary table.


rule evaluate:
    input:
        routes=ROUTE,
        questions=questions("test"),
        keys_file=keys("test"),
        responses=lambda w: list(test_responses(w).values()),
        # the Top-3 tie-break z uses (median, sigma) of the training source (label-free)
        stats=results_path("consensus/{bench}/{pool}/{source}.stats.json"),
    output:
        EVAL,
    log:
        log_path("evaluate/{bench}/{pool}/{source}/{router}"),
    benchmark:
        timing_path("evaluate/{bench}/{pool}/{source}/{router}")
    conda:
        "../../envs/core.yaml"
    resources:
        **rule_resources(),
    params:
        responses=lambda w: pairs(test_responses(w)),
        labels=lambda w: as_json(labels(w)),
        seed=config["evaluation"]["seed"],
        n_boot=config["evaluation"]["n_boot"],
    shell:
        "rgd evaluate --routes {input.routes:q} --questions {input.questions:q} "
        "--keys {input.keys_file:q} --responses {params.responses:q} --stats {input.stats:q} "
        "--labels {params.labels:q} --seed {params.seed:q} --n-boot {params.n_boot:q} "
        "--out {output:q} > {log:q} 2>&1"


rule summary:
    input:
        evals=every(EVAL),
        # the label-free pool diagnostics and their warnings, printed after the table
        analyses=every(ANALYSIS),
        seeds=SEED_FILES,
        estimators=ESTIMATOR_FILES,
    output:
        csv=results_path("tables/summary.csv"),
        md=results_path("tables/summary.md"),
    log:
        log_path("summary"),
    benchmark:
        timing_path("summary")
    conda:
        "../../envs/core.yaml"
    resources:
        **rule_resources(),
    params:
        optional=lambda w, input: [
            a
            for name in ("seeds", "estimators")
            if input[name]
            for a in (f"--{name}", *input[name])
        ],
    shell:
        "rgd summarise --evals {input.evals:q} --analyses {input.analyses:q} {params.optional:q} "
        "--out-csv {output.csv:q} --out-md {output.md:q} > {log:q} 2>&1"
