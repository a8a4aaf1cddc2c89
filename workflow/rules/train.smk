rule train_classifier:
    input:
        train="results/dataset/train.h5",
        val="results/dataset/val.h5",
        init=init_model(),
    output:
        model="results/models/{model}/model.keras",
        card="results/models/{model}/model.card.json",
        history="results/models/{model}/history.csv",
    params:
        model=model_json,
        training=training_json(),
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=train_runtime,
    log:
        "logs/train_classifier/{model}.log",
    benchmark:
        "results/benchmarks/train_classifier/{model}.tsv"
    conda:
        "../envs/crnn.yaml"
    shell:
        "crnn train --train {input.train} --val {input.val} --output-dir $(dirname {output.model}) "
        "--name {wildcards.model} --model '{params.model}' --training '{params.training}' "
        "--threads {threads} --seed {params.seed} > {log} 2>&1"
