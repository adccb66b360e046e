# Routers trained on each training source; each routes the real test set.


def train_inputs(wildcards):
    src = wildcards.source
    inputs = {
        "questions": f"{RESULTS}/data/{wildcards.bench}/{src}.questions.jsonl",
        "embeddings": f"{RESULTS}/embeddings/{wildcards.bench}/{src}.npz",
        "consensus": f"{RESULTS}/consensus/{wildcards.bench}/{wildcards.pool}/{src}.jsonl",
    }
    # Label-free by construction: only query-answer routers get the key file.
    if wildcards.router in QUERY_ANSWER:
        inputs["answers"] = f"{RESULTS}/data/{wildcards.bench}/{src}.keys.jsonl"
    return inputs


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
    params:
        experts=lambda w: " ".join(config["pools"][w.pool]),
        key_arg=lambda w, input: (
            f"--keys {input.answers}" if "answers" in input.keys() else ""
        ),
        spec=lambda w: as_json(
            {"seed": config.get("seed", 0), **config["routers"][w.router]}
        ),
    shell:
        "{RGD} train --kind {wildcards.router} --questions {input.questions} "
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
    params:
        seed=config.get("seed", 0),
    shell:
        "{RGD} route --router {input.router} --questions {input.questions} "
        "--embeddings {input.embeddings} --seed {params.seed} --out {output} > {log} 2>&1"
