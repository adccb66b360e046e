# Reproducibility deliverables: report analyses, the data-scaling curve, figures, paper-style tables,
# the HTML report and the frozen results archive. Everything here is evaluation: these rules may
# read answer keys, and nothing they write ever feeds a router.
import rgd.report.scaling


rule config_snapshot:
    output:
        results_path("config.json"),
    log:
        log_path("report/config_snapshot"),
    benchmark:
        timing_path("report/config_snapshot")
    conda:
        "../../envs/report.yaml"
    resources:
        **rule_resources(),
    params:
        config=lambda w: as_json(config),
    shell:
        "rgd config-snapshot --config {params.config:q} --out {output:q} > {log:q} 2>&1"


rule analyse:
    input:
        questions=questions("train"),
        keys_file=keys("train"),
        consensus=results_path("consensus/{bench}/{pool}/train.jsonl"),
        generated=analyse_inputs,
    output:
        ANALYSIS,
    log:
        log_path("report/analyse/{bench}/{pool}"),
    benchmark:
        timing_path("report/analyse/{bench}/{pool}")
    conda:
        "../../envs/report.yaml"
    resources:
        **rule_resources(),
    params:
        experts=pool_members,
        generated=analyse_args,
        bins=REPORT_CFG.get("calibration_bins", 10),
        labels=lambda w: f"{w.bench}/{w.pool}",
    shell:
        "rgd analyse --experts {params.experts:q} --questions {input.questions:q} "
        "--keys {input.keys_file:q} --consensus {input.consensus:q} {params.generated:q} "
        "--bins {params.bins:q} --labels {params.labels:q} --out {output:q} > {log:q} 2>&1"


rule scaling:
    input:
        # training: label-free (questions, embeddings, consensus of the source)
        questions=results_path("data/{bench}/{source}.questions.jsonl"),
        embeddings=results_path("embeddings/{bench}/{source}.npz"),
        consensus=results_path("consensus/{bench}/{pool}/{source}.jsonl"),
        stats=results_path("consensus/{bench}/{pool}/{source}.stats.json"),
        # evaluation: the real test set, as in rule evaluate
        test_questions=questions("test"),
        test_keys=keys("test"),
        test_embeddings=results_path("embeddings/{bench}/test.npz"),
        test_responses=lambda w: list(test_responses(w).values()),
    output:
        SCALING,
    log:
        log_path("report/scaling/{bench}/{pool}/{source}"),
    benchmark:
        timing_path("report/scaling/{bench}/{pool}/{source}")
    conda:
        "../../envs/report.yaml"
    resources:
        **rule_resources(),
    params:
        experts=pool_members,
        responses=lambda w: pairs(test_responses(w)),
        fractions=SCALING_CFG.get(
            "fractions", list(rgd.report.scaling.DEFAULT_FRACTIONS)
        ),
        seeds=SCALING_CFG.get("seeds", list(rgd.report.scaling.DEFAULT_SEEDS)),
        spec=lambda w: as_json(config["routers"]["cascal"]),
        labels=lambda w: f"{w.bench}/{w.pool}/{w.source}",
    shell:
        "rgd scaling --questions {input.questions:q} --embeddings {input.embeddings:q} "
        "--consensus {input.consensus:q} --stats {input.stats:q} --experts {params.experts:q} "
        "--test-questions {input.test_questions:q} --test-keys {input.test_keys:q} "
        "--test-embeddings {input.test_embeddings:q} --test-responses {params.responses:q} "
        "--fractions {params.fractions:q} --seeds {params.seeds:q} --spec {params.spec:q} "
        "--labels {params.labels:q} --out {output:q} > {log:q} 2>&1"


# Seed stability: each router retrained under report.router_seeds; its inputs are its train job's
# (train_inputs: a query-only router gets no key file) plus the real test set, as in rule scaling.
rule seed_spread:
    input:
        unpack(train_inputs),
        stats=results_path("consensus/{bench}/{pool}/{source}.stats.json"),
        test_questions=questions("test"),
        test_keys=keys("test"),
        test_embeddings=results_path("embeddings/{bench}/test.npz"),
        test_responses=lambda w: list(test_responses(w).values()),
    output:
        SEED_SPREAD,
    log:
        log_path("report/seed_spread/{bench}/{pool}/{source}/{router}"),
    benchmark:
        timing_path("report/seed_spread/{bench}/{pool}/{source}/{router}")
    conda:
        "../../envs/report.yaml"
    resources:
        **rule_resources(),
    params:
        experts=pool_members,
        key_arg=key_arg,
        responses=lambda w: pairs(test_responses(w)),
        seeds=ROUTER_SEEDS,
        spec=lambda w: as_json(router_spec(w)),
        labels=lambda w: f"{w.bench}/{w.pool}/{w.source}/{w.router}",
    shell:
        "rgd seed-spread --kind {wildcards.router:q} --questions {input.questions:q} "
        "--embeddings {input.embeddings:q} --consensus {input.consensus:q} {params.key_arg:q} "
        "--experts {params.experts:q} --stats {input.stats:q} "
        "--test-questions {input.test_questions:q} --test-keys {input.test_keys:q} "
        "--test-embeddings {input.test_embeddings:q} --test-responses {params.responses:q} "
        "--seeds {params.seeds:q} --spec {params.spec:q} --labels {params.labels:q} "
        "--out {output:q} > {log:q} 2>&1"


# The label-free skill estimators compared on the real training split (evaluation: reads its keys).
rule estimators:
    input:
        questions=questions("train"),
        keys_file=keys("train"),
        embeddings=results_path("embeddings/{bench}/train.npz"),
        responses=lambda w: list(pool_responses(w, "train").values()),
        stats=results_path("consensus/{bench}/{pool}/train.stats.json"),
        test_questions=questions("test"),
        test_keys=keys("test"),
        test_embeddings=results_path("embeddings/{bench}/test.npz"),
        test_responses=lambda w: list(test_responses(w).values()),
    output:
        ESTIMATORS,
    log:
        log_path("report/estimators/{bench}/{pool}"),
    benchmark:
        timing_path("report/estimators/{bench}/{pool}")
    conda:
        "../../envs/report.yaml"
    resources:
        **rule_resources(),
    params:
        experts=pool_members,
        responses=lambda w: pairs(pool_responses(w, "train")),
        test_responses=lambda w: pairs(test_responses(w)),
        consensus=lambda w: as_json(config["consensus"]),
        cascal=lambda w: as_json(config["routers"]["cascal"]),
        labels=lambda w: f"{w.bench}/{w.pool}",
    shell:
        "rgd estimators --questions {input.questions:q} --keys {input.keys_file:q} "
        "--embeddings {input.embeddings:q} --responses {params.responses:q} "
        "--experts {params.experts:q} --stats {input.stats:q} "
        "--test-questions {input.test_questions:q} --test-keys {input.test_keys:q} "
        "--test-embeddings {input.test_embeddings:q} --test-responses {params.test_responses:q} "
        "--consensus-spec {params.consensus:q} --cascal-spec {params.cascal:q} "
        "--labels {params.labels:q} --out {output:q} > {log:q} 2>&1"


rule figures:
    input:
        analysis=ANALYSIS,
        evals=lambda w: every(EVAL, bench=w.bench, pool=w.pool),
        scaling=lambda w: per_source(SCALING)(w).values(),
        cascal=lambda w: per_source(CASCAL)(w).values(),
    output:
        accuracy=figure(
            "accuracy", "accuracy", "2. Routing accuracy", "router accuracy"
        ),
        skills=figure("skills", "skills", "3. Skills", "skill heatmap"),
        calibration=figure(
            "calibration", "calibration", "4. Calibration", "calibration"
        ),
        clusters=figure("clusters", "clusters", "5. CASCAL clusters", "clusters"),
        scaling=figure("scaling", "scaling", "6. Data scaling", "scaling"),
        diagnostics=figure(
            "diagnostics", "diagnostics", "7. Pool diagnostics", "pool diagnostics"
        ),
    log:
        log_path("report/figures/{bench}/{pool}"),
    benchmark:
        timing_path("report/figures/{bench}/{pool}")
    conda:
        "../../envs/report.yaml"
    resources:
        **rule_resources(),
    params:
        scaling=lambda w: pairs(per_source(SCALING)(w)),
        cascal=lambda w: pairs(per_source(CASCAL)(w)),
        out_dir=lambda w, output: os.path.dirname(output.accuracy),
    shell:
        "rgd figures --analysis {input.analysis:q} --evals {input.evals:q} "
        "--scaling {params.scaling:q} --cascal {params.cascal:q} --out-dir {params.out_dir:q} "
        "> {log:q} 2>&1"


rule tables:
    input:
        # the summary table of rule summary, shown in the report too
        summary=report(
            results_path("tables/summary.csv"),
            caption=f"{CAPTIONS}/summary.rst",
            category="1. Tables",
            labels={"table": "summary"},
        ),
        evals=every(EVAL),
        analyses=every(ANALYSIS),
        scaling=every(SCALING),
        cascal=every(CASCAL),
        robustness=SEED_FILES + ESTIMATOR_FILES,
    output:
        [
            report(
                results_path(f"tables/{t}.csv"),
                caption=f"{CAPTIONS}/tables.rst",
                category="1. Tables",
                labels={"table": t},
            )
            for t in TABLES
        ],
        expand(results_path("tables/{t}.{ext}"), t=TABLES, ext=["md", "tex"]),
    log:
        log_path("report/tables"),
    benchmark:
        timing_path("report/tables")
    conda:
        "../../envs/report.yaml"
    resources:
        **rule_resources(),
    params:
        cascal=lambda w, input: [
            f"{'/'.join(Path(p).parts[-4:-1])}={p}" for p in input.cascal
        ],
        out_dir=lambda w, output: os.path.dirname(output[0]),
        optional=lambda w: [
            a
            for name, files in (("seeds", SEED_FILES), ("estimators", ESTIMATOR_FILES))
            if files
            for a in (f"--{name}", *files)
        ],
    shell:
        "rgd tables --evals {input.evals:q} --analyses {input.analyses:q} "
        "--scaling {input.scaling:q} --cascal {params.cascal:q} {params.optional:q} "
        "--out-dir {params.out_dir:q} > {log:q} 2>&1"


# The HTML report is part of the DAG: this job runs `snakemake --report` on the finished outputs
# (report generation takes no lock), with the same Snakefile and the loaded config.
rule report_html:
    input:
        config=results_path("config.json"),
        figures=FIGURE_FILES + TRADEOFF_FIGURES,
        tables=TABLE_FILES + TRADEOFF_TABLES,
    output:
        results_path("report.html"),
    log:
        log_path("report/report_html"),
    benchmark:
        timing_path("report/report_html")
    conda:
        "../../envs/report.yaml"
    resources:
        **rule_resources(),
    params:
        snakefile=workflow.main_snakefile,
    shell:
        "snakemake --snakefile {params.snakefile:q} --configfile {input.config:q} "
        "--report {output:q} > {log:q} 2>&1"


rule archive:
    input:
        config=results_path("config.json"),
        config_files=[str(f) for f in workflow.configfiles],
        descriptions=sorted(
            {
                project_file(b["descriptions"])
                for b in config["benchmarks"].values()
                if "descriptions" in b
            }
        ),
        data=[questions(q).format(bench=b) for b in BENCHMARKS for q in bench_qsets(b)],
        consensus=[
            f
            for ext in ["jsonl", "stats.json"]
            for f in every(
                results_path(f"consensus/{{bench}}/{{pool}}/{{source}}.{ext}")
            )
        ],
        routers=every(results_path("routers/{bench}/{pool}/{source}/{router}")),
        routes=every(ROUTE),
        evals=every(EVAL),
        analyses=every(ANALYSIS),
        scaling=every(SCALING),
        robustness=SEED_FILES + ESTIMATOR_FILES,
        tradeoffs=every(TRADEOFF, pools=COST_POOLS),
        tables=TABLE_FILES + SUMMARY_FILES + TRADEOFF_TABLES,
        figures=FIGURE_FILES + TRADEOFF_FIGURES,
        models=[model_manifest(m) for m in USED_MODELS],
    output:
        archive=ARCHIVE,
        sha256=f"{ARCHIVE}.sha256",
    log:
        log_path("report/archive"),
    benchmark:
        timing_path("report/archive")
    conda:
        "../../envs/report.yaml"
    resources:
        **rule_resources(),
    params:
        include=archived_results,
        models=lambda w, input: pairs(dict(zip(USED_MODELS, input.models))),
        repo=lambda w: str(ROOT),
        results=lambda w, input: os.path.dirname(input.config),
    shell:
        "rgd archive --out {output.archive:q} --config-json {input.config:q} "
        "--config-files {input.config_files:q} {input.descriptions:q} --results {params.results:q} "
        "--include {params.include:q} --model {params.models:q} --repo {params.repo:q} > {log:q} 2>&1"
