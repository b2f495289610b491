"""README's result tables, experiments/RESULTS.md and `aigc-jax list`'s status strings against the result
files they quote.

The rule. Every row of a README table that links a result file (`experiments/results/*.json` or
`benchmarks/results/*.json`) has a headline figure: the numbers in the first bold span (`**...**`) of its
`result` column that holds one (`**0.9405**`; `**0.2400 / 0.0579**` and `**78.1 vs 104.1**` give two). Its
result file is the first such link in the row's last column (`result file` / `file`). Each headline
number must equal some number in that file's `metrics` (searched through nested dicts and lists) rounded
to as many decimals as README writes: |value - figure| <= half a unit in the last written place, so
0.9405 may be written 0.9405, 0.941 or 0.94 (a tie may go either way), and 0.938 fails. Written forms:
thousands separators are dropped ("13,044" is 13044); a trailing "x" or "×" is dropped (ratios are
stored as plain numbers, e.g. `speedup`); a trailing "%" means the file holds a fraction, compared x 100.

Every other bold number in a `result` cell must likewise match the metrics of one of the files the row
links (e.g. the cnn row's seed figure, in cnn_fashion__seed.json). A figure computed from several files (a
ratio, a mean over seeds) is listed in `DERIVED` with its formula, and checked by it rather than skipped,
the headline too.

experiments/RESULTS.md, the history behind each row: every bold number in one of its list items must match
the metrics of a file that item links (links are relative to experiments/), or a `DERIVED` formula of its
section, whose heading names the system as the row's first cell does (`cnn_fashion` in backticks).

`aigc-jax list`: each `;`-separated part of a status string that holds a number starts with `LABEL:`, whose
last word is the preset ("cpu", "h200 full", "cpu oracle"); every free-standing number in the part must
match `experiments/results/SYSTEM__PRESET.json`'s metrics by the same rounding. Numbers glued to letters
are not metrics and are not checked: a count ("10-fold"), hardware ("h200"), or a ratio between two
runs ("0.51x").
"""

import decimal
import json
import pathlib
import re
from collections.abc import Callable, Iterator

import pytest

from aigc_jax import systems

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
HISTORY = ROOT / "experiments" / "RESULTS.md"

_LINK = re.compile(r"\]\(((?:experiments/|benchmarks/)?results/[^)\s]+\.json)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
# a figure as README writes it: optional thousands separators, decimals, then an optional × or %
_FIGURE = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?\s?([×x%])?(?![\w.])")
# a number in a status string, with whatever letters or hyphen are glued to it
_STATUS_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)([\w-]*)")


def _metrics(name: str) -> dict:
    return json.loads((ROOT / name).read_text())["metrics"]


def _linked_files(document: pathlib.Path, text: str) -> list[pathlib.Path]:
    """The result files `text` links, in order, each once, resolved from `document`'s folder."""
    return [(document.parent / link).resolve() for link in dict.fromkeys(_LINK.findall(text))]


def _file_values(where: str, path: pathlib.Path) -> list[float]:
    assert path.exists(), f"{where}: {path.relative_to(ROOT)} does not exist"
    return list(_numbers(json.loads(path.read_text())["metrics"]))


def _linked_values(where: str, document: pathlib.Path, text: str) -> list[float]:
    return [v for path in _linked_files(document, text) for v in _file_values(where, path)]


# Bold figures computed from two result files: (row's system or benchmark cell prefix, figure as written)
# -> (formula, reason).
def _dcgan_over_mlp_fd(run: str) -> Callable[[], float]:
    """The fd target's ratio, the DCGAN's fd over the MLP GAN's, in the result files of one run name."""
    return lambda: (
        _metrics(f"experiments/results/dcgan_fashion__{run}.json")["fd_fashion"]
        / _metrics(f"experiments/results/gan_mlp_fashion__{run}.json")["fd_fashion"]
    )


def _mean_test_accuracy(*runs: str) -> Callable[[], float]:
    """The mean test accuracy of cnn_fashion's result files of these run names."""
    files = [f"experiments/results/cnn_fashion__{run}.json" for run in runs]
    return lambda: sum(_metrics(f)["test_accuracy"] for f in files) / len(files)


DERIVED: dict[tuple[str, str], tuple[Callable[[], float], str]] = {
    ("`cnn_fashion`", "0.9408"): (
        _mean_test_accuracy(
            "cpu_zen5_33000_steps", "cpu_zen5_33000_steps_seed1", "cpu_zen5_33000_steps_seed2"
        ),
        "the mean of the 33,000-step preset's three seeds",
    ),
    ("`dcgan_fashion`", "0.468×"): (_dcgan_over_mlp_fd("full"), "the target's ratio in the full-preset run"),
    ("`dcgan_fashion`", "0.515×"): (_dcgan_over_mlp_fd("cpu"), "the target's ratio in the cpu-preset run"),
    ("`dcgan_fashion`", "0.567×"): (
        _dcgan_over_mlp_fd("cpu_seed1"),
        "the target's ratio in the second seed's run",
    ),
    ("`dcgan_fashion`", "0.427×"): (
        _dcgan_over_mlp_fd("cpu_zen5_xla_convs"),
        "the target's ratio in the Zen 5 run",
    ),
    ("`dcgan_fashion`", "0.446×"): (
        _dcgan_over_mlp_fd("cpu_zen5_xla_convs_seed1"),
        "the target's ratio in the second seed's Zen 5 run",
    ),
    ("`dcgan_fashion`", "0.526×"): (
        _dcgan_over_mlp_fd("cpu_zen5"),
        "the target's ratio in the first Zen 5 run",
    ),
    ("`dcgan_fashion`", "0.518×"): (
        _dcgan_over_mlp_fd("cpu_zen5_threaded_convs"),
        "the target's ratio in the Zen 5 run with convolutions on XLA's threads",
    ),
    ("`dcgan_fashion`", "0.490×"): (
        _dcgan_over_mlp_fd("cpu_zen5_threaded_convs_seed1"),
        "the target's ratio in the second seed's Zen 5 run with convolutions on XLA's threads",
    ),
    ("`dcgan_fashion`", "0.083×"): (
        _dcgan_over_mlp_fd("cpu_zen5_quarter_convs"),
        "the target's ratio in the Zen 5 run with the DCGAN's 3×3 blocks",
    ),
    ("`dcgan_fashion`", "0.072×"): (
        _dcgan_over_mlp_fd("cpu_zen5_quarter_convs_seed1"),
        "the target's ratio in the second seed's Zen 5 run with the DCGAN's 3×3 blocks",
    ),
    ("`dcgan_fashion`", "0.512×"): (
        _dcgan_over_mlp_fd("cpu_30min"),
        "the target's ratio in the 30-minute run",
    ),
}


def _derived(first_cell: str, written: str) -> Callable[[], float] | None:
    """The DERIVED formula for a figure as written in the row that `first_cell` starts, if one is listed."""
    return next(
        (f for (prefix, w), (f, _) in DERIVED.items() if w == written and first_cell.startswith(prefix)), None
    )


def _numbers(value: object) -> Iterator[float]:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield float(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)


def _figures(text: str) -> list[tuple[str, decimal.Decimal, int, bool]]:
    """(as written, value, decimals, is_percent) for each figure in `text`."""
    found = []
    for match in _FIGURE.finditer(text):
        whole, fraction, suffix = match.group(1), match.group(2) or "", match.group(3)
        value = decimal.Decimal(whole.replace(",", "") + fraction)
        found.append((match.group(0), value, max(len(fraction) - 1, 0), suffix == "%"))
    return found


def _matches(value: float, figure: decimal.Decimal, decimals: int, percent: bool = False) -> bool:
    if percent:
        value *= 100
    half_unit = decimal.Decimal(5) / decimal.Decimal(10) ** (decimals + 1)
    # repr(value) is the shortest decimal that reads back as the same float: 0.9405 stays 0.9405
    return abs(decimal.Decimal(repr(value)) - figure) <= half_unit


def _matching_any(numbers: list[float], figure: decimal.Decimal, decimals: int, percent: bool) -> bool:
    return any(_matches(v, figure, decimals, percent) for v in numbers)


def _split_row(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _result_rows() -> list[tuple[int, dict[str, str], str]]:
    """(line number, cells by header, the whole row) for each table row that links a result file."""
    lines = README.read_text().splitlines()
    rows = []
    header: list[str] | None = None
    for number, line in enumerate(lines, start=1):
        if not line.startswith("|"):
            header = None
            continue
        if header is None:
            header = _split_row(line)
            continue
        if set(line.replace("|", "").strip()) <= {"-", ":", " "}:
            continue  # the separator under the header
        if not _LINK.search(line):
            continue
        cells = _split_row(line)
        assert len(cells) == len(header), (
            f"README.md:{number}: {len(cells)} cells under {len(header)} headers"
        )
        rows.append((number, dict(zip(header, cells, strict=True)), line))
    return rows


ROWS = _result_rows()


def _row_id(row: tuple[int, dict[str, str], str]) -> str:
    number, cells, _ = row
    return f"line{number}:{next(iter(cells.values()))[:40]}"


def test_readme_has_result_tables():
    headers = {tuple(cells) for _, cells, _ in ROWS}
    assert len(ROWS) >= 15, "the systems and benchmark tables should both be found"
    for cells in headers:
        assert "result" in cells, cells


@pytest.mark.parametrize("row", ROWS, ids=_row_id)
def test_headline_figure_matches_its_result_file(row):
    number, cells, _ = row
    links = _linked_files(README, list(cells.values())[-1])
    assert links, f"README.md:{number}: the last column links no result file"
    values = _file_values(f"README.md:{number}", links[0])
    headline = next((b for b in _BOLD.findall(cells["result"]) if _figures(b)), None)
    assert headline is not None, f"README.md:{number}: no bold figure in the result column"
    for written, figure, decimals, percent in _figures(headline):
        derived = _derived(next(iter(cells.values())), written)
        if derived is not None:  # a headline computed from several files, e.g. a mean over seeds
            assert _matches(derived(), figure, decimals, percent), f"README.md:{number}: {written!r}"
            continue
        assert _matching_any(values, figure, decimals, percent), (
            f"README.md:{number}: headline {written!r} matches no metric of {links[0].name} "
            f"at {decimals} decimals"
        )


def _assert_bold_figures_match(where: str, first_cell: str, text: str, values: list[float]) -> None:
    for bold in _BOLD.findall(text):
        for written, figure, decimals, percent in _figures(bold):
            derived = _derived(first_cell, written)
            if derived is not None:
                assert _matches(derived(), figure, decimals, percent), f"{where}: {written!r}"
                continue
            assert _matching_any(values, figure, decimals, percent), (
                f"{where}: bold {written!r} matches no metric of the files linked there"
            )


@pytest.mark.parametrize("row", ROWS, ids=_row_id)
def test_every_bold_figure_matches_a_linked_result_file(row):
    number, cells, line = row
    where = f"README.md:{number}"
    values = _linked_values(where, README, line)
    _assert_bold_figures_match(where, next(iter(cells.values())), cells["result"], values)


def _history_items() -> list[tuple[int, str, str]]:
    """(line number, section heading, text) of each list item in experiments/RESULTS.md: a `- ` line and
    the indented lines that continue it."""
    items: list[list] = []
    heading, in_item = "", False
    for number, line in enumerate(HISTORY.read_text().splitlines(), start=1):
        if line.startswith("## "):
            heading, in_item = line[3:].strip(), False
        elif line.startswith("- "):
            items.append([number, heading, line[2:]])
            in_item = True
        elif in_item and line.startswith("  "):
            items[-1][2] += " " + line.strip()
        else:
            in_item = False
    return [tuple(item) for item in items]


HISTORY_ITEMS = [item for item in _history_items() if _LINK.search(item[2]) or _BOLD.search(item[2])]


def test_results_history_has_items_for_the_systems():
    headings = {heading for _, heading, _ in HISTORY_ITEMS}
    assert {"`cnn_fashion`", "`dcgan_fashion`", "`unet_fashion_scenes`"} <= headings, headings


@pytest.mark.parametrize("item", HISTORY_ITEMS, ids=lambda item: f"line{item[0]}:{item[1]}")
def test_every_bold_figure_of_the_results_history_matches_a_file_its_item_links(item):
    number, heading, text = item
    where = f"experiments/RESULTS.md:{number}"
    values = _linked_values(where, HISTORY, text)
    if not values and any(_figures(bold) for bold in _BOLD.findall(text)):
        pytest.fail(f"{where}: bold figures but no linked result file")
    _assert_bold_figures_match(where, heading, text, values)


def test_derived_figures_are_shown():
    lines = README.read_text().splitlines()
    for prefix, written in DERIVED:
        in_readme = any(line.startswith(f"| {prefix}") and f"**{written}**" in line for line in lines)
        in_history = any(h.startswith(prefix) and f"**{written}**" in text for _, h, text in HISTORY_ITEMS)
        assert in_readme or in_history, f"DERIVED lists {written!r} for {prefix}, which no document shows"


@pytest.mark.parametrize("spec", systems.REGISTRY.values(), ids=lambda s: s.name)
def test_list_status_figures_match_result_files(spec):
    for part in spec.status.split(";"):
        numbers = [(m.group(1), m.group(2)) for m in _STATUS_NUMBER.finditer(part)]
        checked = [n for n, glued in numbers if not glued]
        if not checked:
            continue
        label, sep, _ = part.partition(":")
        assert sep, f"{spec.name}: status part {part.strip()!r} has figures but no 'PRESET:' label"
        preset = label.split()[-1]
        path = ROOT / "experiments" / "results" / f"{spec.name}__{preset}.json"
        assert path.exists(), (
            f"{spec.name}: status label {label.strip()!r} -> {path.name}, which does not exist"
        )
        values = list(_numbers(json.loads(path.read_text())["metrics"]))
        for written in checked:
            figure = decimal.Decimal(written)
            decimals = len(written.partition(".")[2])
            assert _matching_any(values, figure, decimals, False), (
                f"{spec.name}: status {written!r} ({label.strip()}) matches no metric of {path.name}"
            )


@pytest.mark.parametrize(
    ("figure", "value", "ok"),
    [
        ("0.9405", 0.9405, True),
        ("0.941", 0.9405, True),  # a tie may round either way
        ("0.94", 0.9405, True),
        ("0.938", 0.9405, False),  # the stale `aigc-jax list` figure
        ("561", 561.7505647099997, False),
        ("562", 561.7505647099997, True),
        ("0.094", 8.958270219421387 - 8.863734893798828, False),
        ("0.095", 8.958270219421387 - 8.863734893798828, True),
        ("13,044", 13044, True),
        ("26.7×", 26.701122969332516, True),
        ("94.1%", 0.941, True),
        ("93.9%", 0.9405, False),
    ],
)
def test_rounding_rule(figure, value, ok):
    [(_, parsed, decimals, percent)] = _figures(figure)
    assert _matches(value, parsed, decimals, percent) is ok
