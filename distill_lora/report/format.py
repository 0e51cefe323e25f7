"""The report's cells: how a number, an interval, a size or a table is written (one home, imported by every report
module that writes one)."""

from __future__ import annotations


def digits_for(n_test: int) -> int:
    """Decimals a test metric can carry: one example moves accuracy by 1/n, so with n < 10,000 the fourth
    decimal is noise."""
    return 3 if n_test < 10_000 else 4


def mean_std(x: dict, digits: int = 3, one_seed: bool = False) -> str:
    """'0.812' for one seed, '0.812 ± 0.005' (sample std over seeds) for several."""
    if x is None or x["mean"] is None:
        return "–"
    if one_seed:
        return f"{x['mean']:.{digits}f}"
    return f"{x['mean']:.{digits}f} ± {x['std']:.{digits}f}"


def millions(n: int | None) -> str:
    return "–" if n is None else f"{n / 1e6:.2f}M"


def mib(n: int | None) -> str:
    return "–" if not n else f"{n / 2**20:.1f} MiB"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def result_digits(result: dict) -> int:
    return digits_for(len(result["test_labels"]))


def ci_text(s: dict, metric: str, d: int) -> str:
    ci = s["ci"][metric]
    if ci["low"] is None:  # every resample scored the same: no interval to give
        return f"{ci['point']:.{d}f} [no CI: every resample scores the same]"
    return f"{ci['point']:.{d}f} [{ci['low']:.{d}f}, {ci['high']:.{d}f}]"


def spread_text(x: dict, digits: int) -> str:
    return f"{x['median']:.{digits}f} [{x['min']:.{digits}f}–{x['max']:.{digits}f}]"
