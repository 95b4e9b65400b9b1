"""The benchmark's table: medians and spreads of the repeats, ratios and targets, as text or markdown."""
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
