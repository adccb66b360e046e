# Reproducibility deliverables: report analyses, the data-scaling curve, figures, paper-style tables,
# the HTML report and the frozen results archive. Everything here is evaluation: these rules may
# read answer keys, and nothing they write ever feeds a router.
import hashlib

if "cascal" not in ROUTERS:
    raise ValueError(
        "invalid config:\n  routers: the report needs routers.cascal "
        "(the scaling curve and the cluster figures are CASCAL's)"
    )
REPORT_CFG = config.get("report", {})
SCALING_CFG = REPORT_CFG.get("scaling", {})
# Config hash: sha256 of the canonical JSON of the loaded config (defaults filled in by the schema).
# The same definition as rgd.archive.config_hash; `rgd archive` checks the name against it.
CONFIG_HASH = hashlib.sha256(
    json.dumps(
        config,
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        allow_nan=False,
    ).encode()
).hexdigest()
ARCHIVE = f"{RESULTS}/archive/rgd-results-{CONFIG_HASH[:12]}.tar.gz"
# generated sets with a generation meta file (filtered sets have none)
GEN_META = [f"gen-{g}" for g in GENERATORS]
FIGURES = ["accuracy", "skills", "calibration", "clusters", "scaling"]
TABLES = ["main", "generators", "calibration", "scaling", "clusters"]
CAPTIONS = "../report"
PAIR_FILES = {
    "questions": f"{RESULTS}/data/{{bench}}/{{src}}.questions.jsonl",
    "keys": f"{RESULTS}/data/{{bench}}/{{src}}.keys.jsonl",
    "consensus": f"{RESULTS}/consensus/{{bench}}/{{pool}}/{{src}}.jsonl",
}
EVALS = expand(
    f"{RESULTS}/eval/{{bench}}/{{pool}}/{{source}}/{{router}}.json",
    bench=BENCHMARKS,
    pool=POOLS,
    source=SOURCES,
    router=ROUTERS,
)
CASCALS = expand(
    f"{RESULTS}/routers/{{bench}}/{{pool}}/{{source}}/cascal",
    bench=BENCHMARKS,
    pool=POOLS,
    source=SOURCES,
)
SCALINGS = expand(
    f"{RESULTS}/scaling/{{bench}}/{{pool}}/{{source}}.json",
    bench=BENCHMARKS,
    pool=POOLS,
    source=SOURCES,
)
ANALYSES = expand(
    f"{RESULTS}/analysis/{{bench}}/{{pool}}.json", bench=BENCHMARKS, pool=POOLS
)
FIGURE_FILES = expand(
    f"{RESULTS}/figures/{{bench}}/{{pool}}/{{fig}}.svg",
    bench=BENCHMARKS,
    pool=POOLS,
    fig=FIGURES,
)
TABLE_FILES = expand(
    f"{RESULTS}/tables/{{t}}.{{ext}}", t=TABLES, ext=["md", "csv", "tex"]
)
# models whose manifests (revisions) go into the archive's MANIFEST
USED_MODELS = sorted(
    {config["experts"][e]["model"] for p in config["pools"].values() for e in p}
    | {g["model"] for g in config.get("generators", {}).values() if "model" in g}
)


rule config_snapshot:
    output:
        f"{RESULTS}/config.json",
    log:
        f"{LOGS}/report/config_snapshot.log",
    benchmark:
        f"{BENCH}/report/config_snapshot.tsv"
    conda:
        "../../envs/report.yaml"
    resources:
        **rule_resources(),
    params:
        config=as_json(config),
    shell:
        "rgd config-snapshot --config {params.config:q} --out {output} > {log} 2>&1"


rule analyse:
    input:
        questions=questions("train"),
        answers=keys("train"),
        consensus=f"{RESULTS}/consensus/{{bench}}/{{pool}}/train.jsonl",
        generated=lambda w: [
            p.format(bench=w.bench, pool=w.pool, src=s)
            for s in SOURCES[1:]
            for p in PAIR_FILES.values()
        ],
        meta=expand(f"{RESULTS}/data/{{{{bench}}}}/{{src}}.meta.json", src=GEN_META),
    output:
        f"{RESULTS}/analysis/{{bench}}/{{pool}}.json",
    log:
        f"{LOGS}/report/analyse/{{bench}}/{{pool}}.log",
    benchmark:
        f"{BENCH}/report/analyse/{{bench}}/{{pool}}.tsv"
    conda:
        "../../envs/report.yaml"
    resources:
        **rule_resources(),
    params:
        experts=lambda w: " ".join(config["pools"][w.pool]),
        generated=lambda w: (
            " ".join(
                f"--gen-{kind} "
                + " ".join(
                    f"{s}={p.format(bench=w.bench, pool=w.pool, src=s)}"
                    for s in SOURCES[1:]
                )
                for kind, p in PAIR_FILES.items()
            )
            if SOURCES[1:]
            else ""
        ),
        meta=lambda w: " ".join(
            f"{s}={RESULTS}/data/{w.bench}/{s}.meta.json" for s in GEN_META
        ),
        bins=REPORT_CFG.get("calibration_bins", 10),
    shell:
        "rgd analyse --experts {params.experts} --questions {input.questions} "
        "--keys {input.answers} --consensus {input.consensus} {params.generated} "
        "--gen-meta {params.meta} --bins {params.bins} --labels {wildcards.bench}/{wildcards.pool} "
        "--out {output} > {log} 2>&1"


rule scaling:
    input:
        # training: label-free (questions, embeddings, consensus of the source)
        questions=f"{RESULTS}/data/{{bench}}/{{source}}.questions.jsonl",
        embeddings=f"{RESULTS}/embeddings/{{bench}}/{{source}}.npz",
        consensus=f"{RESULTS}/consensus/{{bench}}/{{pool}}/{{source}}.jsonl",
        stats=f"{RESULTS}/consensus/{{bench}}/{{pool}}/{{source}}.stats.json",
        # evaluation: the real test set, as in rule evaluate
        test_questions=questions("test"),
        test_answers=keys("test"),
        test_embeddings=f"{RESULTS}/embeddings/{{bench}}/test.npz",
        test_responses=lambda w: list(pool_responses(w, "test").values()),
    output:
        f"{RESULTS}/scaling/{{bench}}/{{pool}}/{{source}}.json",
    log:
        f"{LOGS}/report/scaling/{{bench}}/{{pool}}/{{source}}.log",
    benchmark:
        f"{BENCH}/report/scaling/{{bench}}/{{pool}}/{{source}}.tsv"
    conda:
        "../../envs/report.yaml"
    resources:
        **rule_resources(),
    params:
        experts=lambda w: " ".join(config["pools"][w.pool]),
        responses=lambda w: pairs(pool_responses(w, "test")),
        fractions=" ".join(
            str(f) for f in SCALING_CFG.get("fractions", [0.25, 0.5, 1.0])
        ),
        seeds=" ".join(str(s) for s in SCALING_CFG.get("seeds", [0, 1, 2])),
        spec=as_json(config["routers"]["cascal"]),
    shell:
        "rgd scaling --questions {input.questions} --embeddings {input.embeddings} "
        "--consensus {input.consensus} --stats {input.stats} --experts {params.experts} "
        "--test-questions {input.test_questions} --test-keys {input.test_answers} "
        "--test-embeddings {input.test_embeddings} --test-responses {params.responses} "
        "--fractions {params.fractions} --seeds {params.seeds} --spec {params.spec:q} "
        "--labels {wildcards.bench}/{wildcards.pool}/{wildcards.source} --out {output} > {log} 2>&1"


rule figures:
    input:
        analysis=f"{RESULTS}/analysis/{{bench}}/{{pool}}.json",
        evals=expand(
            f"{RESULTS}/eval/{{{{bench}}}}/{{{{pool}}}}/{{source}}/{{router}}.json",
            source=SOURCES,
            router=ROUTERS,
        ),
        scaling=expand(
            f"{RESULTS}/scaling/{{{{bench}}}}/{{{{pool}}}}/{{source}}.json",
            source=SOURCES,
        ),
        cascal=expand(
            f"{RESULTS}/routers/{{{{bench}}}}/{{{{pool}}}}/{{source}}/cascal",
            source=SOURCES,
        ),
    output:
        accuracy=report(
            f"{RESULTS}/figures/{{bench}}/{{pool}}/accuracy.svg",
            caption=f"{CAPTIONS}/accuracy.rst",
            category="2. Routing accuracy",
            subcategory="{bench} / {pool}",
            labels={
                "benchmark": "{bench}",
                "pool": "{pool}",
                "figure": "router accuracy",
            },
        ),
        skills=report(
            f"{RESULTS}/figures/{{bench}}/{{pool}}/skills.svg",
            caption=f"{CAPTIONS}/skills.rst",
            category="3. Skills",
            subcategory="{bench} / {pool}",
            labels={
                "benchmark": "{bench}",
                "pool": "{pool}",
                "figure": "skill heatmap",
            },
        ),
        calibration=report(
            f"{RESULTS}/figures/{{bench}}/{{pool}}/calibration.svg",
            caption=f"{CAPTIONS}/calibration.rst",
            category="4. Calibration",
            subcategory="{bench} / {pool}",
            labels={"benchmark": "{bench}", "pool": "{pool}", "figure": "calibration"},
        ),
        clusters=report(
            f"{RESULTS}/figures/{{bench}}/{{pool}}/clusters.svg",
            caption=f"{CAPTIONS}/clusters.rst",
            category="5. CASCAL clusters",
            subcategory="{bench} / {pool}",
            labels={"benchmark": "{bench}", "pool": "{pool}", "figure": "clusters"},
        ),
        scaling=report(
            f"{RESULTS}/figures/{{bench}}/{{pool}}/scaling.svg",
            caption=f"{CAPTIONS}/scaling.rst",
            category="6. Data scaling",
            subcategory="{bench} / {pool}",
            labels={"benchmark": "{bench}", "pool": "{pool}", "figure": "scaling"},
        ),
    log:
        f"{LOGS}/report/figures/{{bench}}/{{pool}}.log",
    benchmark:
        f"{BENCH}/report/figures/{{bench}}/{{pool}}.tsv"
    conda:
        "../../envs/report.yaml"
    resources:
        **rule_resources(),
    params:
        scaling=lambda w, input: " ".join(
            f"{s}={p}" for s, p in zip(SOURCES, input.scaling)
        ),
        cascal=lambda w, input: " ".join(
            f"{s}={p}" for s, p in zip(SOURCES, input.cascal)
        ),
        out_dir=lambda w, output: os.path.dirname(output.accuracy),
    shell:
        "rgd figures --analysis {input.analysis} --evals {input.evals} --scaling {params.scaling} "
        "--cascal {params.cascal} --out-dir {params.out_dir} > {log} 2>&1"


rule tables:
    input:
        # the summary table of rule summary, shown in the report too
        summary=report(
            f"{RESULTS}/tables/summary.csv",
            caption=f"{CAPTIONS}/summary.rst",
            category="1. Tables",
            labels={"table": "summary"},
        ),
        evals=EVALS,
        analyses=ANALYSES,
        scaling=SCALINGS,
        cascal=CASCALS,
    output:
        [
            report(
                f"{RESULTS}/tables/{t}.csv",
                caption=f"{CAPTIONS}/tables.rst",
                category="1. Tables",
                labels={"table": t},
            )
            for t in TABLES
        ],
        expand(f"{RESULTS}/tables/{{t}}.{{ext}}", t=TABLES, ext=["md", "tex"]),
    log:
        f"{LOGS}/report/tables.log",
    benchmark:
        f"{BENCH}/report/tables.tsv"
    conda:
        "../../envs/report.yaml"
    resources:
        **rule_resources(),
    params:
        cascal=lambda w, input: " ".join(
            f"{'/'.join(Path(p).parts[-4:-1])}={p}" for p in input.cascal
        ),
        out_dir=lambda w, output: os.path.dirname(output[0]),
    shell:
        "rgd tables --evals {input.evals} --analyses {input.analyses} --scaling {input.scaling} "
        "--cascal {params.cascal} --out-dir {params.out_dir} > {log} 2>&1"


# The HTML report is part of the DAG: this job runs `snakemake --report` on the finished outputs
# (report generation takes no lock), with the same Snakefile and the loaded config.
rule report_html:
    input:
        config=f"{RESULTS}/config.json",
        figures=FIGURE_FILES,
        tables=TABLE_FILES,
    output:
        f"{RESULTS}/report.html",
    log:
        f"{LOGS}/report/report_html.log",
    benchmark:
        f"{BENCH}/report/report_html.tsv"
    conda:
        "../../envs/report.yaml"
    resources:
        **rule_resources(),
    params:
        snakefile=workflow.main_snakefile,
    shell:
        "snakemake --snakefile {params.snakefile:q} --configfile {input.config:q} "
        "--report {output:q} > {log} 2>&1"


rule archive:
    input:
        config=f"{RESULTS}/config.json",
        config_files=[str(f) for f in workflow.configfiles],
        descriptions=sorted(
            {project_file(b["descriptions"]) for b in config["benchmarks"].values()}
        ),
        data=expand(
            f"{RESULTS}/data/{{bench}}/{{q}}.questions.jsonl",
            bench=BENCHMARKS,
            q=QSETS,
        ),
        consensus=expand(
            f"{RESULTS}/consensus/{{bench}}/{{pool}}/{{src}}.{{ext}}",
            bench=BENCHMARKS,
            pool=POOLS,
            src=SOURCES,
            ext=["jsonl", "stats.json"],
        ),
        routers=expand(
            f"{RESULTS}/routers/{{bench}}/{{pool}}/{{source}}/{{router}}",
            bench=BENCHMARKS,
            pool=POOLS,
            source=SOURCES,
            router=ROUTERS,
        ),
        evals=EVALS,
        analyses=ANALYSES,
        scaling=SCALINGS,
        tables=TABLE_FILES
        + [f"{RESULTS}/tables/summary.csv", f"{RESULTS}/tables/summary.md"],
        figures=FIGURE_FILES,
        report=f"{RESULTS}/report.html",
        models=[model_manifest(m) for m in USED_MODELS],
    output:
        archive=ARCHIVE,
        sha256=f"{ARCHIVE}.sha256",
    log:
        f"{LOGS}/report/archive.log",
    benchmark:
        f"{BENCH}/report/archive.tsv"
    conda:
        "../../envs/report.yaml"
    resources:
        **rule_resources(),
    params:
        # datasets: each benchmark's data folder; responses: each question set's folder (answers,
        # confidences, .meta.json); the rest file by file, as the DAG made them
        include=lambda w, input: " ".join(
            [f"{RESULTS}/data/{b}" for b in BENCHMARKS]
            + [f"{RESULTS}/responses/{b}/{q}" for b in BENCHMARKS for q in QSETS]
            + input.consensus
            + input.routers
            + [
                e.replace(f"{RESULTS}/eval/", f"{RESULTS}/routes/")[:-5] + ".jsonl"
                for e in input.evals
            ]
            + input.evals
            + input.analyses
            + input.scaling
            + input.tables
            + input.figures
            + [input.report]
        ),
        models=lambda w, input: " ".join(
            f"{m}={p}" for m, p in zip(USED_MODELS, input.models)
        ),
        repo=lambda w: str(ROOT),
        results=lambda w, input: os.path.dirname(input.config),
    shell:
        "rgd archive --out {output.archive} --config-json {input.config} "
        "--config-files {input.config_files} {input.descriptions} --results {params.results:q} "
        "--include {params.include} --model {params.models} --repo {params.repo:q} > {log} 2>&1"
