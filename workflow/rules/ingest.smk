rule ingest_traces:
    input:
        source=ingest_input,
    output:
        traces=res("ingest/{source}.h5"),
    log:
        res("logs/ingest_traces/{source}.log"),
    conda:
        "../envs/crnn.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(1000, per_input_mb=6),
        runtime=runtime_min(10, input_mb_per_min=100),
    params:
        args=ingest_args,
    shell:
        "crnn ingest --input {input.source} --output {output.traces} {params.args} > {log} 2>&1"
