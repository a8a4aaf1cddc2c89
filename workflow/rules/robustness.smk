# Robustness suite: every model and baseline scored on named shifts (other detectors' data).


rule ingest_shift_library:
    input:
        pulses=library_input,
    output:
        library=res("robustness/libraries/{shift}.h5"),
    log:
        res("logs/ingest_shift_library/{shift}.log"),
    conda:
        "../envs/crnn.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
        runtime=runtime_min(10),
    params:
        args=library_args,
    shell:
        "crnn ingest --input {input.pulses} --output {output.library} {params.args} > {log} 2>&1"


rule simulate_shift:
    input:
        requires=shift_requires,
        library=shift_library,
    output:
        traces=res("robustness/shifts/{shift}.h5"),
    log:
        res("logs/simulate_shift/{shift}.log"),
    conda:
        "../envs/crnn.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
        runtime=runtime_min(10),
    params:
        settings=shift_settings,
        seed=shift_seed,
        n_traces=ROBUSTNESS["n_traces"],
    shell:
        "crnn simulate --output {output.traces} --settings '{params.settings}' --seed {params.seed} "
        "--n-traces {params.n_traces} --signal-fraction 0.5 > {log} 2>&1"


rule evaluate_robustness:
    input:
        unpack(robustness_inputs),
    output:
        robustness=res("robustness/{method}.json"),
    log:
        res("logs/evaluate_robustness/{method}.log"),
    conda:
        "../envs/crnn.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(1500, per_input_mb=3),
        runtime=runtime_min(10, input_mb_per_min=100),
    params:
        settings=as_json(ROBUSTNESS),
        args=robustness_args,
    shell:
        "crnn robustness --name {wildcards.method} --output {output.robustness} "
        "--settings '{params.settings}' {params.args} > {log} 2>&1"
