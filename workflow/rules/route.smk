# Routers trained on each training source; each routes the real test set.


rule train_router:
    input:
        unpack(train_inputs),
    output:
        directory(results_path("routers/{bench}/{pool}/{source}/{router}")),
    log:
        log_path("train/{bench}/{pool}/{source}/{router}"),
    benchmark:
        timing_path("train/{bench}/{pool}/{source}/{router}")
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        **rule_resources(),
    params:
        experts=pool_members,
        key_arg=key_arg,
        spec=lambda w: as_json(router_spec(w)),
    shell:
        "rgd train --kind {wildcards.router:q} --questions {input.questions:q} "
        "--embeddings {input.embeddings:q} --consensus {input.consensus:q} "
        "--experts {params.experts:q} {params.key_arg:q} --spec {params.spec:q} "
        "--out-dir {output:q} --threads {threads} > {log:q} 2>&1"


rule route:
    input:
        router=results_path("routers/{bench}/{pool}/{source}/{router}"),
        questions=questions("test"),
        embeddings=results_path("embeddings/{bench}/test.npz"),
    output:
        results_path("routes/{bench}/{pool}/{source}/{router}.jsonl"),
    log:
        log_path("route/{bench}/{pool}/{source}/{router}"),
    benchmark:
        timing_path("route/{bench}/{pool}/{source}/{router}")
    conda:
        "../../envs/core.yaml"
    resources:
        **rule_resources(),
    params:
        seed=config["seed"],
    shell:
        "rgd route --router {input.router:q} --questions {input.questions:q} "
        "--embeddings {input.embeddings:q} --seed {params.seed:q} --out {output:q} > {log:q} 2>&1"
