# Question embeddings of every question set (the router's input space), made by the configured
# runtime: an exported one (ONNX Runtime, Model2Vec) is built once into the model cache.


rule export_embedder:
    output:
        manifest=os.path.join(embedder_dir(), "rgd-embedder.json"),
    log:
        log_path("export_embedder"),
    benchmark:
        timing_path("export_embedder")
    priority: 100
    conda:
        "../../envs/torch.yaml"
    resources:
        **rule_resources(embedder_resources),
    params:
        spec=lambda w: as_json(config["embedder"]),
        out_dir=lambda w, output: os.path.dirname(output.manifest),
    shell:
        "rgd export-embedder --spec {params.spec:q} --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule embed:
    input:
        questions=questions("{qset}"),
        exported=embedder_exported(),
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
        spec=embed_spec,
    shell:
        "rgd embed --questions {input.questions:q} --spec {params.spec:q} --out {output:q} "
        "--run-record {log.run:q} --threads {threads} > {log.log:q} 2>&1"
