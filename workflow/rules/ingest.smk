rule ingest_traces:
    input:
        source=ingest_input,
    output:
        traces="results/ingest/{source}.h5",
    params:
        args=ingest_args,
    log:
        "logs/ingest_traces/{source}.log",
    conda:
        "../envs/crnn.yaml"
    shell:
        "crnn ingest --input {input.source} --output {output.traces} {params.args} > {log} 2>&1"
