rule build_dataset:
    input:
        traces=dataset_inputs,
    output:
        train=res("dataset/train.h5"),
        val=res("dataset/val.h5"),
        test=res("dataset/test.h5"),
    log:
        res("logs/build_dataset.log"),
    conda:
        "../envs/crnn.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(config["dataset"]["memory_budget_mb"] + 600, per_input_mb=0.015),
        runtime=runtime_min(10, input_mb_per_min=500),
    params:
        fractions=" ".join(str(f) for f in config["dataset"]["fractions"]),
        seed=config["seed"],
        budget=config["dataset"]["memory_budget_mb"],
    shell:
        "crnn dataset $(printf -- '--input %s ' {input.traces}) --train {output.train} "
        "--val {output.val} --test {output.test} --fractions {params.fractions} "
        "--seed {params.seed} --memory-budget-mb {params.budget} > {log} 2>&1"
