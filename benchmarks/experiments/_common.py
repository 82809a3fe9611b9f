"""What the experiments share: summary statistics over seeds, their formatting, the record of the
machine a run used, and writing a result as JSON and markdown.

Every experiment reports mean ± sample standard deviation (``ddof = 1``) over its seeds or splits.
"""

from __future__ import annotations

import json
import os
import platform

import numpy as np


def mean_sd(values) -> dict:
    """``{"mean", "sd"}`` of the finite values (``None`` entries skipped); sd with ``ddof = 1``,
    0 for a single value; both ``None`` when nothing is left."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if v.size == 0:
        return {"mean": None, "sd": None}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0}


def pm(stat: dict | None, digits: int = 4) -> str:
    """``"mean ± sd"`` of a :func:`mean_sd` result, ``"—"`` when there is none."""
    if not stat or stat.get("mean") is None:
        return "—"
    return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"


def environment(**versions) -> dict:
    """The machine and library versions of this run (add others as keyword arguments)."""
    import flax
    import jax

    return {
        "machine": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "python": platform.python_version(), "jax": jax.__version__,
        "flax": flax.__version__, "x64": bool(jax.config.jax_enable_x64), **versions,
    }


def write(base: str, res: dict, md: str) -> None:
    """``base.json`` (the result) and ``base.md`` (its report); creates the folder."""
    os.makedirs(os.path.dirname(base) or ".", exist_ok=True)
    with open(base + ".json", "w") as fh:
        json.dump(res, fh, indent=1)
    with open(base + ".md", "w") as fh:
        fh.write(md)


def publish(base: str, res: dict, md: str, figure=None) -> None:
    """:func:`write` the result, print the report, and draw ``base.png`` with ``figure(res, path)``
    when a figure function is given (it returns the path written, or None without matplotlib)."""
    write(base, res, md)
    print(md)
    if figure is not None:
        png = figure(res, base + ".png")
        if png:
            print(f"figure: {png}")
    seconds = res.get("seconds")
    print(f"wrote {base}.json and {base}.md" + (f" in {seconds:.0f} s" if isinstance(seconds, (int, float)) else ""))
