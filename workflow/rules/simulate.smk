rule simulate_traces:
    input:
        background=measured_background(),
    output:
        traces=simulate_output(),
    log:
        simulate_log(),
    benchmark:
        simulate_benchmark()
    conda:
        "../envs/crnn.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
        runtime=simulate_runtime,
    params:
        settings=simulate_json(),
        seed=config["seed"],
        chunk=simulate_chunk_args,
    shell:
        "crnn simulate --output {output.traces} --settings '{params.settings}' "
        "--seed {params.seed} {params.chunk} > {log} 2>&1"


if SIM_CHUNKS > 1:

    rule merge_traces:
        input:
            chunks=expand(res("simulate/chunks/{chunk}.h5"), chunk=range(SIM_CHUNKS)),
        output:
            traces=res("simulate/traces.h5"),
        log:
            res("logs/merge_traces.log"),
        conda:
            "../envs/crnn.yaml"
        threads: 1
        resources:
            mem_mb=mem_mb(1000),
            runtime=runtime_min(10, input_mb_per_min=1000),
        shell:
            "crnn merge $(printf -- '--input %s ' {input.chunks}) --output {output.traces} > {log} 2>&1"
