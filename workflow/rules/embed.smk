# Question embeddings of every question set (the router's input space).


rule embed:
    input:
        questions=questions("{qset}"),
    output:
        f"{RESULTS}/embeddings/{{bench}}/{{qset}}.npz",
    log:
        f"{LOGS}/embed/{{bench}}/{{qset}}.log",
    benchmark:
        f"{BENCH}/embed/{{bench}}/{{qset}}.tsv"
    conda:
        conda_env("vllm" if config["embedder"]["kind"] == "vllm" else "transformers")
    threads: 1
    resources:
        **rule_resources(lambda w: config["embedder"].get("resources", {})),
    params:
        spec=as_json(config["embedder"]),
    shell:
        "rgd embed --questions {input.questions} --spec {params.spec:q} --out {output} "
        "--threads {threads} > {log} 2>&1"
