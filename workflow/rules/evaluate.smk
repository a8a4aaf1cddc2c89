rule evaluate_classifier:
    input:
        model="results/models/{model}/model.keras",
        card="results/models/{model}/model.card.json",
        test="results/dataset/test.h5",
    output:
        metrics="results/evaluate/{model}/metrics.json",
        scores="results/evaluate/{model}/scores.h5",
        roc=report(
            "results/evaluate/{model}/roc.png",
            caption="../report/roc_method.rst",
            category="Per method",
            subcategory="{model}",
            labels={"method": "{model}", "plot": "ROC"},
        ),
        efficiency=report(
            "results/evaluate/{model}/efficiency.png",
            caption="../report/efficiency_method.rst",
            category="Per method",
            subcategory="{model}",
            labels={"method": "{model}", "plot": "efficiency vs SNR"},
        ),
    params:
        fprs=" ".join(str(f) for f in config["evaluate"]["fprs"]),
        snr_edges=" ".join(str(e) for e in config["evaluate"]["snr_edges"]),
    threads: 1
    resources:
        mem_mb=mem_mb(1500, per_input_mb=3),
        runtime=runtime_min(10, input_mb_per_min=100),
    log:
        "logs/evaluate_classifier/{model}.log",
    conda:
        "../envs/crnn.yaml"
    shell:
        "crnn evaluate --test {input.test} --model {input.model} --name {wildcards.model} "
        "--output-dir $(dirname {output.metrics}) --fpr {params.fprs} "
        "--snr-edges {params.snr_edges} > {log} 2>&1"


rule evaluate_baseline:
    input:
        test="results/dataset/test.h5",
    output:
        metrics="results/evaluate/{baseline}/metrics.json",
        scores="results/evaluate/{baseline}/scores.h5",
        roc=report(
            "results/evaluate/{baseline}/roc.png",
            caption="../report/roc_method.rst",
            category="Per method",
            subcategory="{baseline}",
            labels={"method": "{baseline}", "plot": "ROC"},
        ),
        efficiency=report(
            "results/evaluate/{baseline}/efficiency.png",
            caption="../report/efficiency_method.rst",
            category="Per method",
            subcategory="{baseline}",
            labels={"method": "{baseline}", "plot": "efficiency vs SNR"},
        ),
    params:
        fprs=" ".join(str(f) for f in config["evaluate"]["fprs"]),
        snr_edges=" ".join(str(e) for e in config["evaluate"]["snr_edges"]),
    threads: 1
    resources:
        mem_mb=mem_mb(1500, per_input_mb=3),
        runtime=runtime_min(10, input_mb_per_min=100),
    log:
        "logs/evaluate_baseline/{baseline}.log",
    conda:
        "../envs/crnn.yaml"
    shell:
        "crnn evaluate --test {input.test} --baseline {wildcards.baseline} "
        "--output-dir $(dirname {output.metrics}) --fpr {params.fprs} "
        "--snr-edges {params.snr_edges} > {log} 2>&1"
