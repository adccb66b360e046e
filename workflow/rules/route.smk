# Routers trained on each training source; each routes the real test set.


rule train_router:
    input:
        unpack(train_inputs),
    output:
        directory(f"{RESULTS}/routers/{{bench}}/{{pool}}/{{source}}/{{router}}"),
    log:
        f"{LOGS}/train/{{bench}}/{{pool}}/{{source}}/{{router}}.log",
    benchmark:
        f"{BENCH}/train/{{bench}}/{{pool}}/{{source}}/{{router}}.tsv"
    conda:
        "../../envs/core.yaml"
    resources:
        **rule_resources(),
    params:
        experts=lambda w: " ".join(config["pools"][w.pool]),
        key_arg=lambda w, input: (
            f"--keys {input.answers}" if "answers" in input.keys() else ""
        ),
        spec=lambda w: as_json(
            {"seed": config.get("seed", 0), **config["routers"][w.router]}
        ),
    shell:
        "rgd train --kind {wildcards.router} --questions {input.questions} "
        "--embeddings {input.embeddings} --consensus {input.consensus} --experts {params.experts} "
        "{params.key_arg} --spec {params.spec:q} --out-dir {output} > {log} 2>&1"


rule route:
    input:
        router=f"{RESULTS}/routers/{{bench}}/{{pool}}/{{source}}/{{router}}",
        questions=questions("test"),
        embeddings=f"{RESULTS}/embeddings/{{bench}}/test.npz",
    output:
        f"{RESULTS}/routes/{{bench}}/{{pool}}/{{source}}/{{router}}.jsonl",
    log:
        f"{LOGS}/route/{{bench}}/{{pool}}/{{source}}/{{router}}.log",
    benchmark:
        f"{BENCH}/route/{{bench}}/{{pool}}/{{source}}/{{router}}.tsv"
    conda:
        "../../envs/core.yaml"
    resources:
        **rule_resources(),
    params:
        seed=config.get("seed", 0),
    shell:
        "rgd route --router {input.router} --questions {input.questions} "
        "--embeddings {input.embeddings} --seed {params.seed} --out {output} > {log} 2>&1"
