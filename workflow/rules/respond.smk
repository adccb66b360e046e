# Models are materialised once into the model cache; then every expert answers every question set.


rule materialise:
    output:
        manifest=model_manifest("{model}"),
    log:
        log_path("materialise/{model}"),
    benchmark:
        timing_path("materialise/{model}")
    priority: 100
    conda:
        "../../envs/torch.yaml"
    resources:
        **rule_resources(materialise_resources),
    params:
        spec=lambda w: as_json(config["models"][w.model]["source"]),
        # the weights are saved in the registry's dtype (auto: per machine), halving a bf16 model
        dtype=lambda w: config["models"][w.model].get("dtype", "float32"),
        out_dir=lambda w, output: os.path.dirname(output.manifest),
        # named for its first flag: renaming it would change the shell command, and so rerun
        # every materialised model (rerun-triggers: code)
        gguf_only=lambda w: gguf_flags(w.model),
    shell:
        "rgd materialise --name {wildcards.model:q} --spec {params.spec:q} --dtype {params.dtype:q} "
        "--out-dir {params.out_dir:q} {params.gguf_only:q} > {log:q} 2>&1"


rule respond:
    input:
        questions=questions("{qset}"),
        model=expert_model,
    output:
        responses=results_path("responses/{bench}/{qset}/{expert}.jsonl"),
        meta=results_path("responses/{bench}/{qset}/{expert}.meta.json"),
    log:
        log=log_path("respond/{bench}/{qset}/{expert}"),
        run=run_record("respond/{bench}/{qset}/{expert}"),
    benchmark:
        timing_path("respond/{bench}/{qset}/{expert}")
    conda:
        lambda w: conda_env(expert_spec(w.expert)["backend"])
    threads: 1
    resources:
        **rule_resources(expert_resources),
    params:
        spec=lambda w: as_json(expert_spec(w.expert)),
        model_dir=lambda w, input: os.path.dirname(input.model),
        cache=results_path("cache/responses/{bench}/{qset}/{expert}.jsonl"),
    shell:
        "rgd respond --questions {input.questions:q} --expert {wildcards.expert:q} "
        "--spec {params.spec:q} --model-dir {params.model_dir:q} --out {output.responses:q} "
        "--meta {output.meta:q} --cache {params.cache:q} "
        "--run-record {log.run:q} --threads {threads} > {log.log:q} 2>&1"
