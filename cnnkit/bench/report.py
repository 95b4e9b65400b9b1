"""The benchmark's tables: medians and spreads of the repeats, ratios and targets, as text or markdown;
the suite's rows, summary and CSV."""
import csv
import io

import numpy as np

# issue 10's targets: fast's median time at most this many times torch's
TARGETS = {
    **{(name, "float32"): 1.0 for name in ("mnist", "cifar", "cifar-wide", "A", "B", "C")},
    **{(name, "float64"): 0.5 for name in "ABC"},
    ("P", "float32"): 0.5, ("P", "float64"): 0.5,
}
COLUMNS = [("row", 10), ("dtype", 7), ("ref ms", 12), ("fast ms", 12), ("torch ms", 12), ("fast/torch", 10),
           ("speedup", 7), ("GEMM %", 6), ("target", 0)]
LEFT = ("row", "dtype", "target")


def summary(seconds):
    """(median, spread) of repeated timings: spread is half the min-max range over the median."""
    median = float(np.median(seconds))
    return median, (max(seconds) - min(seconds)) / (2 * median)


def timing_cell(seconds):
    """"7.12 ±4%": the median in ms and the spread (summary) in percent; "-" when not timed."""
    if seconds is None:
        return "-"
    median, spread = summary(seconds)
    return f"{number(1e3 * median)} ±{100 * spread:.0f}%"


def number(value):
    """Three significant digits, without an exponent for values up to 10**5."""
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def cells(row):
    """The table's cells for a row: a dict with name, dtype, seconds lists ref, fast, torch (None
    when not timed), gemm (fast's rate over numpy's matmul, or None) and agrees."""
    ref, fast, torch = (None if row[key] is None else summary(row[key])[0] for key in ("ref", "fast", "torch"))
    ratio = None if torch is None else fast / torch
    target = TARGETS.get((row["name"], row["dtype"]))
    verdict = "" if target is None or ratio is None else (
        f"<={target:.2f}x torch: {'met' if ratio <= target else 'missed'}")
    if row["agrees"] is False:
        verdict += " FAST DISAGREES WITH REFERENCE"
    return [row["name"], row["dtype"], *(timing_cell(row[key]) for key in ("ref", "fast", "torch")),
            "-" if ratio is None else number(ratio), "-" if ref is None else number(ref / fast) + "x",
            "-" if row["gemm"] is None else f"{100 * row['gemm']:.0f}", verdict.strip()]


def text_line(texts):
    """One line of the text table: texts aligned under COLUMNS."""
    return "  ".join(f"{text:<{width}}" if title in LEFT else f"{text:>{width}}"
                     for text, (title, width) in zip(texts, COLUMNS)).rstrip()


def markdown_line(texts, what=""):
    """One line of the markdown table, with the row's description after its name."""
    return "| " + " | ".join([texts[0], what, *texts[1:]]) + " |"


def header(markdown):
    titles = [title for title, _ in COLUMNS]
    if not markdown:
        return text_line(titles)
    aligns = ["---" if title in LEFT else "---:" for title in titles]
    return markdown_line(titles, "what") + "\n" + markdown_line(aligns, "---")


# ---------------------------------------------------------------- the suite (cnnkit bench --suite)

SUITE_COLUMNS = [("layer", 20), ("dtype", 7), ("threads", 7), ("fast ms", 12), ("torch ms", 12),
                 ("fast/torch", 10), ("shape", 0)]
SUITE_LEFT = ("layer", "dtype", "shape")
CSV_COLUMNS = ["layer", "shape", "dtype", "threads", "fast ms", "torch ms", "fast/torch"]


def suite_ratio(row):
    """fast's median over torch's for a suite row (a dict with layer, shape, dtype, threads, seconds
    lists fast and torch (None when not timed), agrees); None without torch."""
    return None if row["torch"] is None else summary(row["fast"])[0] / summary(row["torch"])[0]


def suite_cells(row):
    """The suite table's cells for a row, flagged when fast disagreed with the reference."""
    ratio = suite_ratio(row)
    shape = row["shape"] + (" FAST DISAGREES WITH REFERENCE" if row["agrees"] is False else "")
    return [row["layer"], row["dtype"], str(row["threads"]), timing_cell(row["fast"]), timing_cell(row["torch"]),
            "-" if ratio is None else number(ratio), shape]


def suite_line(texts):
    """One line of the suite's text table: texts aligned under SUITE_COLUMNS."""
    return "  ".join(f"{text:<{width}}" if title in SUITE_LEFT else f"{text:>{width}}"
                     for text, (title, width) in zip(texts, SUITE_COLUMNS)).rstrip()


def suite_header():
    return suite_line([title for title, _ in SUITE_COLUMNS])


def geometric_mean(values):
    return float(np.exp(np.mean(np.log(values))))


def suite_summary(rows):
    """One line for rows at one thread count: the geometric mean of fast/torch (overall and per dtype)
    and the worst ratio with its layer; says so when torch was not timed."""
    ratios = [(suite_ratio(row), row) for row in rows if suite_ratio(row) is not None]
    if not ratios:
        return "fast/torch: torch not timed"
    per_dtype = ", ".join(f"{dtype} {geometric_mean([r for r, row in ratios if row['dtype'] == dtype]):.3g}"
                          for dtype in dict.fromkeys(row["dtype"] for _, row in ratios))
    worst, row = max(ratios, key=lambda pair: pair[0])
    return (f"{row['threads']} threads: geometric mean fast/torch {geometric_mean([r for r, _ in ratios]):.3g} "
            f"over {len(ratios)} rows ({per_dtype}); worst {worst:.3g} ({row['layer']} {row['dtype']})")


def suite_csv(rows):
    """The suite's rows as CSV text (CSV_COLUMNS; medians in ms, empty where torch was not timed)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        ratio = suite_ratio(row)
        writer.writerow([row["layer"], row["shape"], row["dtype"], row["threads"],
                         f"{1e3 * summary(row['fast'])[0]:.4g}",
                         "" if row["torch"] is None else f"{1e3 * summary(row['torch'])[0]:.4g}",
                         "" if ratio is None else f"{ratio:.3g}"])
    return buffer.getvalue()
