rule write_report:
    input:
        metrics=expand(res("evaluate/{method}/metrics.json"), method=methods()),
        scores=expand(res("evaluate/{method}/scores.h5"), method=methods()),
        galleries=expand(res("evaluate/{method}/gallery.png"), method=methods()),
        histories=expand(res("models/{model}/history.csv"), model=config["models"]),
        cards=expand(res("models/{model}/model.card.json"), model=config["models"]),
        robustness=robustness_outputs(),
        dataset=expand(res("dataset/{split}.h5"), split=("train", "val", "test")),
        # the simulation and ingested files behind the splits: the names of their transient kinds
        sources=dataset_inputs,
    output:
        summary=report(
            res("report/summary.html"),
            caption="../report/summary.rst",
            category="1. Summary",
            labels={"figure": "summary page"},
        ),
        summary_json=res("report/summary.json"),
        roc=report(
            res("report/roc.png"),
            caption="../report/roc.rst",
            category="2. Comparison",
            labels={"figure": "ROC"},
        ),
        efficiency=report(
            res("report/efficiency.png"),
            caption="../report/efficiency.rst",
            category="2. Comparison",
            labels={"figure": "efficiency vs SNR"},
        ),
        snr=report(
            res("report/snr.png"),
            caption="../report/snr.rst",
            category="2. Comparison",
            labels={"figure": "SNR at 50 % / 90 % efficiency"},
        ),
        scores=report(
            res("report/scores.png"),
            caption="../report/scores.rst",
            category="2. Comparison",
            labels={"figure": "score distributions"},
        ),
        confusion=report(
            res("report/confusion.png"),
            caption="../report/confusion.rst",
            category="2. Comparison",
            labels={"figure": "confusion matrices"},
        ),
        efficiency_pulse=report(
            res("report/efficiency_arrival_polarisation.png"),
            caption="../report/efficiency_pulse.rst",
            category="2. Comparison",
            labels={"figure": "efficiency vs arrival time and polarisation"},
        ),
        training=report(
            res("report/training.png"),
            caption="../report/training.rst",
            category="3. Training",
            labels={"figure": "training curves"},
        ),
    log:
        res("logs/write_report.log"),
    conda:
        "../envs/crnn.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(1000, per_input_mb=2),
        runtime=runtime_min(10, input_mb_per_min=100),
    params:
        trial_rate=(
            f"--trial-rate-hz {config['report']['trial_rate_hz']}"
            if config["report"]["trial_rate_hz"] is not None
            else ""
        ),
    shell:
        "crnn report --metrics {input.metrics} --history {input.histories} --card {input.cards} "
        "--robustness {input.robustness} --dataset {input.dataset} {params.trial_rate} "
        "--output-dir $(dirname {output.summary}) "
        "> {log} 2>&1"


rule report_page:
    input:
        summary=res("report/summary.html"),
    output:
        page=res("report.html"),
    log:
        res("logs/report_page.log"),
    conda:
        "../envs/crnn.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(100),
        runtime=runtime_min(5),
    params:
        snakemake_report=SNAKEMAKE_REPORT,
    shell:
        # the run's report: the self-contained summary page; a Snakemake report of older results goes
        "(rm -f {params.snakemake_report} && cp {input.summary} {output.page}) > {log} 2>&1"
