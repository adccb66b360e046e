# RGD generation: each generator writes questions from category descriptions alone.


rule generate:
    input:
        seeds=questions("train"),
        descriptions=lambda w: project_file(
            config["benchmarks"][w.bench]["descriptions"]
        ),
        model=generator_model,
    output:
        questions=f"{RESULTS}/data/{{bench}}/gen-{{gen}}.questions.jsonl",
        answers=f"{RESULTS}/data/{{bench}}/gen-{{gen}}.keys.jsonl",
        rejects=f"{RESULTS}/data/{{bench}}/gen-{{gen}}.rejects.jsonl",
        meta=f"{RESULTS}/data/{{bench}}/gen-{{gen}}.meta.json",
    log:
        f"{LOGS}/generate/{{bench}}/{{gen}}.log",
    benchmark:
        f"{BENCH}/generate/{{bench}}/{{gen}}.tsv"
    # generation heads the longest chain (generate -> respond -> ... -> evaluate): start it first
    priority: 50
    conda:
        lambda w: conda_env(config["generators"][w.gen].get("backend", "transformers"))
    threads: 1
    resources:
        **rule_resources(generator_resources),
    params:
        spec=lambda w: as_json(generator_spec(w)),
        model_dir=lambda w, input: (
            f"--model-dir {os.path.dirname(input.model)}" if input.model else ""
        ),
        cache=f"{RESULTS}/cache/generate/{{bench}}/{{gen}}.jsonl",
    shell:
        "rgd generate --name {wildcards.gen} --spec {params.spec:q} "
        "--seed-questions {input.seeds} --descriptions {input.descriptions} {params.model_dir} "
        "--out-questions {output.questions} --out-keys {output.answers} --out-rejects {output.rejects} "
        "--out-meta {output.meta} --cache {params.cache} --threads {threads} > {log} 2>&1"
