# Evaluation against the real test keys, and the summary table.


rule evaluate:
    input:
        routes=f"{RESULTS}/routes/{{bench}}/{{pool}}/{{source}}/{{router}}.jsonl",
        questions=questions("test"),
        answers=keys("test"),
        responses=lambda w: list(pool_responses(w, "test").values()),
        # the Top-3 tie-break z uses (median, sigma) of the training source (label-free)
        stats=f"{RESULTS}/consensus/{{bench}}/{{pool}}/{{source}}.stats.json",
    output:
        f"{RESULTS}/eval/{{bench}}/{{pool}}/{{source}}/{{router}}.json",
    log:
        f"{LOGS}/evaluate/{{bench}}/{{pool}}/{{source}}/{{router}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{bench}}/{{pool}}/{{source}}/{{router}}.tsv"
    conda:
        "../../envs/core.yaml"
    resources:
        **rule_resources(),
    params:
        responses=lambda w: pairs(pool_responses(w, "test")),
        labels=lambda w: as_json(
            {
                "benchmark": w.bench,
                "pool": w.pool,
                "source": w.source,
                "router": w.router,
            }
        ),
        seed=config.get("evaluation", {}).get("seed", 0),
        n_boot=config.get("evaluation", {}).get("n_boot", 1000),
    shell:
        "rgd evaluate --routes {input.routes} --questions {input.questions} --keys {input.answers} "
        "--responses {params.responses} --stats {input.stats} --labels {params.labels:q} "
        "--seed {params.seed} --n-boot {params.n_boot} --out {output} > {log} 2>&1"


rule summary:
    input:
        expand(
            f"{RESULTS}/eval/{{bench}}/{{pool}}/{{source}}/{{router}}.json",
            bench=BENCHMARKS,
            pool=POOLS,
            source=SOURCES,
            router=ROUTERS,
        ),
    output:
        csv=f"{RESULTS}/tables/summary.csv",
        md=f"{RESULTS}/tables/summary.md",
    log:
        f"{LOGS}/summary.log",
    benchmark:
        f"{BENCH}/summary.tsv"
    conda:
        "../../envs/core.yaml"
    resources:
        **rule_resources(),
    shell:
        "rgd summarize --evals {input} --out-csv {output.csv} --out-md {output.md} > {log} 2>&1"
