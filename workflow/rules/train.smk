rule train_classifier:
    input:
        train=res("dataset/train.h5"),
        val=res("dataset/val.h5"),
        init=init_model(),
    output:
        model=res("models/{model}/model.keras"),
        card=res("models/{model}/model.card.json"),
        history=res("models/{model}/history.csv"),
    log:
        res("logs/train_classifier/{model}.log"),
    benchmark:
        res("benchmarks/train_classifier/{model}.tsv")
    conda:
        "../envs/crnn.yaml"
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=train_runtime,
    params:
        model=model_json,
        training=training_json(),
        seed=config["seed"],
    shell:
        "crnn train --train {input.train} --val {input.val} --output-dir $(dirname {output.model}) "
        "--name {wildcards.model} --model '{params.model}' --training '{params.training}' "
        "--threads {threads} --seed {params.seed} > {log} 2>&1"
