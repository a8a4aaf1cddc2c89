rule write_report:
    input:
        metrics=expand("results/evaluate/{method}/metrics.json", method=methods()),
        scores=expand("results/evaluate/{method}/scores.h5", method=methods()),
        galleries=expand("results/evaluate/{method}/gallery.png", method=methods()),
        histories=expand("results/models/{model}/history.csv", model=config["models"]),
        cards=expand("results/models/{model}/model.card.json", model=config["models"]),
        robustness=robustness_outputs(),
        dataset=expand("results/dataset/{split}.h5", split=("train", "val", "test")),
    output:
        summary=report(
            "results/report/summary.html",
            caption="../report/summary.rst",
            category="1. Summary",
            labels={"figure": "summary page"},
        ),
        summary_json="results/report/summary.json",
        roc=report(
            "results/report/roc.png",
            caption="../report/roc.rst",
            category="2. Comparison",
            labels={"figure": "ROC"},
        ),
        efficiency=report(
            "results/report/efficiency.png",
            caption="../report/efficiency.rst",
            category="2. Comparison",
            labels={"figure": "efficiency vs SNR"},
        ),
        snr=report(
            "results/report/snr.png",
            caption="../report/snr.rst",
            category="2. Comparison",
            labels={"figure": "SNR at 50 % / 90 % efficiency"},
        ),
        scores=report(
            "results/report/scores.png",
            caption="../report/scores.rst",
            category="2. Comparison",
            labels={"figure": "score distributions"},
        ),
        confusion=report(
            "results/report/confusion.png",
            caption="../report/confusion.rst",
            category="2. Comparison",
            labels={"figure": "confusion matrices"},
        ),
        training=report(
            "results/report/training.png",
            caption="../report/training.rst",
            category="3. Training",
            labels={"figure": "training curves"},
        ),
    threads: 1
    resources:
        mem_mb=mem_mb(1000, per_input_mb=2),
        runtime=runtime_min(10, input_mb_per_min=100),
    log:
        "logs/write_report.log",
    conda:
        "../envs/crnn.yaml"
    shell:
        "crnn report --metrics {input.metrics} --history {input.histories} --card {input.cards} "
        "--robustness {input.robustness} --dataset {input.dataset} --output-dir $(dirname {output.summary}) "
        "> {log} 2>&1"
