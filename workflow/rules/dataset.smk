rule build_dataset:
    input:
        traces=dataset_inputs,
    output:
        train="results/dataset/train.h5",
        val="results/dataset/val.h5",
        test="results/dataset/test.h5",
    params:
        fractions=" ".join(str(f) for f in config["dataset"]["fractions"]),
        seed=config["seed"],
    log:
        "logs/build_dataset.log",
    conda:
        "../envs/crnn.yaml"
    shell:
        "crnn dataset $(printf -- '--input %s ' {input.traces}) --train {output.train} "
        "--val {output.val} --test {output.test} --fractions {params.fractions} "
        "--seed {params.seed} > {log} 2>&1"
