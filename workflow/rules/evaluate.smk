rule evaluate_classifier:
    input:
        model=res("models/{model}/model.keras"),
        card=res("models/{model}/model.card.json"),
        test=res("dataset/test.h5"),
        # the scores of scale_out.evaluate_chunks scoring jobs (none with one)
        chunks=evaluate_chunk_scores("model"),
    output:
        metrics=res("evaluate/{model}/metrics.json"),
        scores=res("evaluate/{model}/scores.h5"),
        roc=report(
            res("evaluate/{model}/roc.png"),
            caption="../report/roc_method.rst",
            category="Per method",
            subcategory="{model}",
            labels={"method": "{model}", "plot": "ROC"},
        ),
        efficiency=report(
            res("evaluate/{model}/efficiency.png"),
            caption="../report/efficiency_method.rst",
            category="Per method",
            subcategory="{model}",
            labels={"method": "{model}", "plot": "efficiency vs SNR"},
        ),
        gallery=report(
            res("evaluate/{model}/gallery.png"),
            caption="../report/gallery.rst",
            category="4. Example traces",
            labels={"method": "{model}", "figure": "example traces"},
        ),
    log:
        res("logs/evaluate_classifier/{model}.log"),
    conda:
        "../envs/crnn.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(2500, per_input_mb=0.02),
        runtime=runtime_min(10, input_mb_per_min=100),
    params:
        settings=as_json(config["evaluate"]),
        seed=config["seed"],
        join=join_scores_args,
    shell:
        "crnn evaluate --test {input.test} --model {input.model} --name {wildcards.model} "
        "--output-dir $(dirname {output.metrics}) --settings '{params.settings}' "
        "--seed {params.seed} {params.join} > {log} 2>&1"


rule evaluate_baseline:
    input:
        test=res("dataset/test.h5"),
        # noise-only traces (label 0) for the matched filter's noise spectrum
        noise=res("dataset/val.h5"),
        chunks=evaluate_chunk_scores("baseline"),
    output:
        metrics=res("evaluate/{baseline}/metrics.json"),
        scores=res("evaluate/{baseline}/scores.h5"),
        roc=report(
            res("evaluate/{baseline}/roc.png"),
            caption="../report/roc_method.rst",
            category="Per method",
            subcategory="{baseline}",
            labels={"method": "{baseline}", "plot": "ROC"},
        ),
        efficiency=report(
            res("evaluate/{baseline}/efficiency.png"),
            caption="../report/efficiency_method.rst",
            category="Per method",
            subcategory="{baseline}",
            labels={"method": "{baseline}", "plot": "efficiency vs SNR"},
        ),
        gallery=report(
            res("evaluate/{baseline}/gallery.png"),
            caption="../report/gallery.rst",
            category="4. Example traces",
            labels={"method": "{baseline}", "figure": "example traces"},
        ),
    log:
        res("logs/evaluate_baseline/{baseline}.log"),
    conda:
        "../envs/crnn.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(2500, per_input_mb=0.02),
        runtime=runtime_min(10, input_mb_per_min=100),
    params:
        settings=as_json(config["evaluate"]),
        signal_model=signal_model_json(),
        seed=config["seed"],
        join=join_scores_args,
    shell:
        "crnn evaluate --test {input.test} --baseline {wildcards.baseline} --noise {input.noise} "
        "--output-dir $(dirname {output.metrics}) --settings '{params.settings}' "
        "--signal-model '{params.signal_model}' --seed {params.seed} {params.join} > {log} 2>&1"


if EVAL_CHUNKS > 1:

    rule score_classifier_chunk:
        input:
            model=res("models/{model}/model.keras"),
            card=res("models/{model}/model.card.json"),
            test=res("dataset/test.h5"),
        output:
            scores=temp(res("evaluate/chunks/{model}/{chunk}/scores.h5")),
        log:
            res("logs/score_classifier_chunk/{model}/{chunk}.log"),
        conda:
            "../envs/crnn.yaml"
        threads: 1
        resources:
            mem_mb=mem_mb(2500, per_input_mb=0.02),
            runtime=runtime_min(10, input_mb_per_min=100 * EVAL_CHUNKS),
        params:
            settings=as_json(config["evaluate"]),
            seed=config["seed"],
            n_chunks=EVAL_CHUNKS,
        shell:
            "crnn evaluate --test {input.test} --model {input.model} --name {wildcards.model} "
            "--output-dir $(dirname {output.scores}) --settings '{params.settings}' --seed {params.seed} "
            "--chunk {wildcards.chunk} --n-chunks {params.n_chunks} > {log} 2>&1"

    rule score_baseline_chunk:
        input:
            test=res("dataset/test.h5"),
            noise=res("dataset/val.h5"),
        output:
            scores=temp(res("evaluate/chunks/{baseline}/{chunk}/scores.h5")),
        log:
            res("logs/score_baseline_chunk/{baseline}/{chunk}.log"),
        conda:
            "../envs/crnn.yaml"
        threads: 1
        resources:
            mem_mb=mem_mb(2500, per_input_mb=0.02),
            runtime=runtime_min(10, input_mb_per_min=100 * EVAL_CHUNKS),
        params:
            settings=as_json(config["evaluate"]),
            signal_model=signal_model_json(),
            seed=config["seed"],
            n_chunks=EVAL_CHUNKS,
        shell:
            "crnn evaluate --test {input.test} --baseline {wildcards.baseline} --noise {input.noise} "
            "--output-dir $(dirname {output.scores}) --settings '{params.settings}' "
            "--signal-model '{params.signal_model}' --seed {params.seed} "
            "--chunk {wildcards.chunk} --n-chunks {params.n_chunks} > {log} 2>&1"
