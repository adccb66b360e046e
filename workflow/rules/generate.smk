# RGD generation: each generator writes questions from category descriptions alone.


rule generate:
    input:
        seeds=questions("train"),
        descriptions=descriptions_file,
        model=generator_model,
    output:
        questions=results_path("data/{bench}/gen-{gen}.questions.jsonl"),
        keys_file=results_path("data/{bench}/gen-{gen}.keys.jsonl"),
        rejects=results_path("data/{bench}/gen-{gen}.rejects.jsonl"),
        meta=results_path("data/{bench}/gen-{gen}.meta.json"),
    log:
        log=log_path("generate/{bench}/{gen}"),
        run=run_record("generate/{bench}/{gen}"),
    benchmark:
        timing_path("generate/{bench}/{gen}")
    # generation heads the longest chain (generate -> respond -> ... -> evaluate): start it first
    priority: 50
    conda:
        lambda w: conda_env(config["generators"][w.gen]["backend"])
    threads: 1
    resources:
        **rule_resources(generator_resources),
    params:
        spec=lambda w: as_json(generator_spec(w)),
        model_dir=model_dir_arg,
        cache=results_path("cache/generate/{bench}/{gen}.jsonl"),
    shell:
        "rgd generate --name {wildcards.gen:q} --spec {params.spec:q} "
        "--seed-questions {input.seeds:q} --descriptions {input.descriptions:q} {params.model_dir:q} "
        "--out-questions {output.questions:q} --out-keys {output.keys_file:q} "
        "--out-rejects {output.rejects:q} --out-meta {output.meta:q} --cache {params.cache:q} "
        "--run-record {log.run:q} --threads {threads} > {log.log:q} 2>&1"
