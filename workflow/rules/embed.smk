# Question embeddings of every question set (the router's input space).


rule embed:
    input:
        questions=questions("{qset}"),
    output:
        results_path("embeddings/{bench}/{qset}.npz"),
    log:
        log=log_path("embed/{bench}/{qset}"),
        run=run_record("embed/{bench}/{qset}"),
    benchmark:
        timing_path("embed/{bench}/{qset}")
    conda:
        conda_env("vllm" if config["embedder"]["kind"] == "vllm" else "transformers")
    threads: 1
    resources:
        **rule_resources(embedder_resources),
    params:
        spec=lambda w: as_json(config["embedder"]),
    shell:
        "rgd embed --questions {input.questions:q} --spec {params.spec:q} --out {output:q} "
        "--run-record {log.run:q} --threads {threads} > {log.log:q} 2>&1"
