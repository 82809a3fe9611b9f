"""The performance suite lives in :mod:`jaxsteer.bench.suite` (shipped in the wheel, ``jaxsteer bench``);
this module re-exports it for code in a source checkout. Run it with ``python -m benchmarks run``."""

from jaxsteer.bench.suite import (  # noqa: F401
    EXTRA,
    SECTIONS,
    VARIANTS,
    MissingExtra,
    batching,
    check_modules,
    compile_and_time,
    compile_vs_run,
    config,
    kernel_flops,
    large,
    machine,
    main,
    markdown,
    matmul_rate,
    plots,
    required_modules,
    run,
    throughput,
)
