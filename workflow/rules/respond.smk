# Models are materialised once into the model cache; then every expert answers every question set.


rule materialise:
    output:
        manifest=f"{CACHE}/{{model}}/rgd-model.json",
    log:
        f"{LOGS}/materialise/{{model}}.log",
    benchmark:
        f"{BENCH}/materialise/{{model}}.tsv"
    priority: 100
    conda:
        "../../envs/torch.yaml"
    resources:
        **rule_resources(lambda w: {**model_spec(w.model), "gpus": 0}),
    params:
        spec=lambda w: as_json(config["models"][w.model]["source"]),
        out_dir=lambda w: f"{CACHE}/{w.model}",
    shell:
        "rgd materialise --name {wildcards.model} --spec {params.spec:q} "
        "--out-dir {params.out_dir} > {log} 2>&1"


rule respond:
    input:
        questions=questions("{qset}"),
        model=lambda w: model_manifest(config["experts"][w.expert]["model"]),
    output:
        responses=f"{RESULTS}/responses/{{bench}}/{{qset}}/{{expert}}.jsonl",
        meta=f"{RESULTS}/responses/{{bench}}/{{qset}}/{{expert}}.meta.json",
    log:
        f"{LOGS}/respond/{{bench}}/{{qset}}/{{expert}}.log",
    benchmark:
        f"{BENCH}/respond/{{bench}}/{{qset}}/{{expert}}.tsv"
    conda:
        lambda w: conda_env(expert_spec(w.expert).get("backend", "transformers"))
    threads: 1
    resources:
        **rule_resources(lambda w: model_spec(config["experts"][w.expert]["model"])),
    params:
        spec=lambda w: as_json(expert_spec(w.expert)),
        model_dir=lambda w, input: os.path.dirname(input.model),
        cache=f"{RESULTS}/cache/responses/{{bench}}/{{qset}}/{{expert}}.jsonl",
    shell:
        "rgd respond --questions {input.questions} --expert {wildcards.expert} "
        "--spec {params.spec:q} --model-dir {params.model_dir} --out {output.responses} "
        "--meta {output.meta} --cache {params.cache} --threads {threads} > {log} 2>&1"
