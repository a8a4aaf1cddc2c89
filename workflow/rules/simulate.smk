rule simulate_traces:
    input:
        background=measured_background(),
    output:
        traces="results/simulate/traces.h5",
    params:
        settings=simulate_json(),
        seed=config["seed"],
    log:
        "logs/simulate_traces.log",
    benchmark:
        "results/benchmarks/simulate_traces.tsv"
    conda:
        "../envs/crnn.yaml"
    shell:
        "crnn simulate --output {output.traces} --settings '{params.settings}' "
        "--seed {params.seed} > {log} 2>&1"
