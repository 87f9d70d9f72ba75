"""The report of every method side by side: one self-contained HTML page and a Markdown summary.

Pure rendering: plain dicts and lists in (one `ReportInput` per method, read from the stages'
outputs by the caller), text out. This module assembles both formats section by section; the
pieces live beside it, in `features.report`:

- `features.report.inputs`: `ReportInput`, `ReportSettings` and lenient lookups of their values.
- `features.report.text`: summary rows, the classifier chosen on val, ranking sentences.
- `features.report.tables`: headers and text cells of every table.
- `features.report.plots`: the matplotlib figures as PNG bytes.
- `features.report.html`: escaping, tables, images and the page around the sections.

Plots are embedded as base64 data URIs, so the page needs no other file, and the same input
gives the same bytes. Anything missing for a method (no DLSA run, no analysis) is said in its
section instead of failing.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from features.report.html import Section, html_bold, html_page, html_table, img, note, paragraph
from features.report.inputs import (
    SHOT_COLUMNS,
    ReportInput,
    ReportSettings,
    dig,
    fmt,
)
from features.report.plots import (
    cluster_plot,
    confusion_plot,
    per_class_plot,
    plot_style,
    rho_plot,
    separation_plot,
    shot_group_plot,
    tsne_plot,
)
from features.report.tables import (
    DLSA_HEADER,
    FILTER_HEADER,
    SEPARABILITY_HEADER,
    SUMMARY_HEADER,
    dlsa_cells,
    filter_cells,
    posterior_cells,
    probe_reasons,
    separability_cells,
    summary_cells,
)
from features.report.text import (
    MARKS_LEGEND,
    SummaryRow,
    chosen_classifier,
    groups_line,
    missing_notes,
    ranking,
    seeds_line,
    summary_rows,
)


def render_report(
    inputs: Sequence[ReportInput], settings: ReportSettings | None = None
) -> tuple[str, str]:
    """The HTML page (plots embedded) and the Markdown summary of some methods.

    Args:
        inputs: One entry per method, in the order to show them.
        settings: Group definitions and title; None = defaults.

    Returns:
        (html, markdown); the same arguments give the same strings.
    """
    settings = settings or ReportSettings()
    with plot_style():
        sections = _sections(list(inputs), settings)
    return html_page(sections, settings), _markdown(list(inputs), settings)


# --- HTML sections ---------------------------------------------------------------------------


def _sections(inputs: list[ReportInput], settings: ReportSettings) -> list[Section]:
    """The page's sections in order; each says what is missing for which method."""
    missing = missing_notes(inputs)
    return [
        Section("summary", "Classifiers: test accuracy per shot group",
                _summary_blocks(inputs, settings)),
        Section(
            "per-class", "Accuracy per shot group and per class", _accuracy_blocks(inputs, settings)
        ),
        Section("confusion", "Confusion between frequency bins", _confusion_blocks(inputs)),
        Section("features", "Feature quality: head vs tail", _feature_blocks(inputs, missing)),
        Section("dlsa", "DLSA: flow filters", _dlsa_blocks(inputs, missing)),
        Section("ranking", "Ranking", _ranking_blocks(inputs, settings)),
    ]


def _summary_blocks(inputs: list[ReportInput], settings: ReportSettings) -> list[str]:
    """Glance table (classifier chosen on val), every row folded, backbones."""
    rows = summary_rows(inputs)
    blocks = [
        paragraph(
            "Test accuracy of the classifiers trained on each method's frozen features, overall "
            "and per shot group, with Matthews correlation (MCC), normalised mutual information "
            "(NMI) and expected calibration error (ECE, lower is better). At a glance: each "
            "method with the classifier that has the best val accuracy."
        ),
        paragraph(seeds_line(settings) + " " + MARKS_LEGEND),
    ]
    glance = [
        SummaryRow(item.method, kind, item.classify[kind])
        for item in inputs
        if (kind := chosen_classifier(item)) is not None
    ]
    if glance:
        blocks.append(html_table(SUMMARY_HEADER, summary_cells(
            glance, bold=html_bold, marks=settings.marks, prefix="glance:")))
    missing = [item.method for item in inputs if not item.classify]
    if missing:
        blocks.append(note(f"No classifier results for: {', '.join(missing)}."))
    if rows:
        # every method x classifier is long (tens of rows): folded, so the plots stay in view
        table = html_table(SUMMARY_HEADER, summary_cells(rows, bold=html_bold,
                                                         marks=settings.marks))
        blocks.append(
            f"<details><summary>All {len(rows)} rows: every method \u00d7 classifier, and "
            "\u201ckind + DLSA\u201d for the DLSA cascade in front of that base classifier "
            f"(click to open)</summary>\n{table}\n</details>"
        )
    backbones = [
        [
            item.method,
            item.backbone or str((item.analysis and item.analysis.backbone) or "\u2013"),
            fmt(dig(item.pretrain, ("best_epoch",)), digits=0),
            fmt(dig(item.pretrain, ("best_val_acc",))),
        ]
        for item in inputs
        if item.pretrain is not None or item.analysis is not None or item.backbone
    ]
    if backbones:
        blocks.append(
            paragraph("Backbones: the pretraining epoch chosen on val and its val accuracy.")
        )
        blocks.append(html_table(["method", "backbone", "best epoch", "val accuracy"], backbones))
    return blocks


def _accuracy_blocks(inputs: list[ReportInput], settings: ReportSettings) -> list[str]:
    """Plots of accuracy per shot group and per class against training count."""
    blocks = [
        paragraph(
            "Each method is shown with the classifier that has the best val accuracy (named "
            "under its bars); the table above has all of them."
        )
    ]
    for png, alt in (
        (shot_group_plot(inputs), "accuracy per shot group"),
        (per_class_plot(inputs, settings), "per-class accuracy against training count"),
    ):
        blocks.append(img(png, alt) if png else note(f"No data for the {alt} plot."))
    return blocks


def _confusion_blocks(inputs: list[ReportInput]) -> list[str]:
    """The confusion between frequency bins of each backbone's own head."""
    blocks = [
        paragraph(
            "Confusion of each backbone's own classifier head on test (DLSA Fig. 1): classes "
            "sorted by training frequency and cut into bins, bin 1 the most frequent. Rows are "
            "true bins and sum to 1; mass right of the diagonal means tail images predicted as "
            "more frequent classes."
        )
    ]
    png = confusion_plot(inputs)
    blocks.append(
        img(png, "confusion between frequency bins")
        if png
        else note("No confusion matrix: no method has an analysis of a bank with logits yet.")
    )
    lacking = [item.method for item in inputs if item.confusion is None]
    if png and lacking:
        blocks.append(note(f"No confusion matrix for: {', '.join(lacking)}."))
    return blocks


def _feature_blocks(inputs: list[ReportInput], missing: dict[str, list[str]]) -> list[str]:
    """Separability table, probe notes, positive posterior, rho/k-means/t-SNE plots."""
    blocks = [
        paragraph(
            "How each backbone's features place head and tail classes, on the test split "
            "against the train split. \u03c1 = D_intra / D_inter (MBIB Eq. 15\u201317; lower "
            "means tighter, better separated classes), per view of the bank; kNN purity: share "
            "of a test image's nearest train neighbours (cosine) of its own class; k-means "
            "purity: share of each cluster's majority class (train); head/tail: balanced "
            "accuracy of a linear probe telling tail images from head images."
        )
    ]
    if missing["analysis"]:
        blocks.append(note(f"No feature analysis for: {', '.join(missing['analysis'])}."))
    analysed = [item for item in inputs if item.analysis is not None]
    if not analysed:
        return blocks
    blocks.append(html_table(SEPARABILITY_HEADER, separability_cells(analysed)))
    reasons = probe_reasons(analysed)
    if reasons:
        blocks.append(note("Head/tail probe not measured: " + "; ".join(reasons) + "."))
    posterior = posterior_cells(analysed)
    if posterior:
        blocks.append(
            paragraph(
                "Mean positive posterior (MBIB Sec. 4.5): the backbone head's softmax "
                "probability of the true class, averaged per class, then per group "
                "(ideally 1)."
            )
        )
        blocks.append(html_table(["method", *SHOT_COLUMNS], posterior))
    for png, alt in (
        (rho_plot(analysed), "rho per shot group"),
        (cluster_plot(analysed), "k-means cluster sizes and purity"),
        (tsne_plot(inputs), "t-SNE of test features, head and tail"),
    ):
        blocks.append(img(png, alt) if png else note(f"No data for the {alt} plot."))
    return blocks


def _dlsa_blocks(inputs: list[ReportInput], missing: dict[str, list[str]]) -> list[str]:
    """DLSA against its base classifiers, separation accuracy per filter."""
    blocks = [
        paragraph(
            "Each DLSA filter routes the images its flow finds most likely to a cluster-aided "
            "classifier. Separation accuracy: the share of routed test images that belong to "
            "tail classes (DLSA Fig. 7); chance is the tail share of the images reaching the "
            "filter. Routed share: the share of all test images the filter routes. Routed "
            "rows: on the test images a filter routes, the accuracy of its cluster-aided "
            "classifier and of the base classifier; a filter helps only where the first is "
            "higher."
        ),
        paragraph(
            "\u201cGated\u201d uses the number of filters chosen on val rows no epoch was "
            "chosen on (filters kept, per seed; 0 is the base alone), and only filters that beat "
            "the base there by a sign test (dlsa.gate_alpha), so it does not lower val accuracy "
            "and leaves the base only on evidence; \u201call filters\u201d is the paper's "
            "cascade, on which the paper's "
            "claim is judged. Rows the kept filters leave go to a classifier of the base's kind "
            "fitted on those rows (dlsa.remainder: refit)."
        ),
    ]
    if missing["dlsa"]:
        if len(missing["dlsa"]) == len(inputs):
            blocks.append(note("No DLSA results: the dlsa stage has no output for any method."))
            return blocks
        blocks.append(
            note(
                f"The dlsa stage has no output for: {', '.join(missing['dlsa'])}; "
                "they are left out here."
            )
        )
    comparison = dlsa_cells(inputs)
    if comparison:
        blocks.append(
            paragraph("Test accuracy of each base classifier alone and with the cascade:")
        )
        blocks.append(html_table(DLSA_HEADER, comparison))
    png = separation_plot(inputs)
    if png:
        blocks.append(img(png, "separation accuracy per filter"))
    cells = filter_cells(inputs)
    if cells:
        blocks.append(html_table(FILTER_HEADER, cells))
    return blocks


def _ranking_blocks(inputs: list[ReportInput], settings: ReportSettings) -> list[str]:
    """The ranking sentences as a list."""
    items = "".join(f"<li>{html.escape(sentence)}</li>"
                    for sentence in ranking(inputs, settings.marks))
    return [
        paragraph("Generated from the numbers above. A difference is \u201cresolved\u201d when a "
                  "paired bootstrap over the test rows puts it above zero at the 5 % level, "
                  "and \u201cnot resolved\u201d otherwise: then more test rows or seeds are "
                  "needed to tell the two apart."),
        f"<ul>{items}</ul>",
    ]


# --- Markdown --------------------------------------------------------------------------------


def _markdown(inputs: list[ReportInput], settings: ReportSettings) -> str:
    """The Markdown summary: the tables of the page without its plots, and the ranking."""
    lines = [f"# {_md_text(settings.title)}", "", groups_line(settings), "",
             seeds_line(settings) + " " + MARKS_LEGEND, ""]
    lines += ["## Classifiers: test accuracy per shot group", ""]
    rows = summary_rows(inputs)
    if rows:
        lines += _md_table(SUMMARY_HEADER, summary_cells(rows, bold=lambda t: f"**{t}**",
                                                         marks=settings.marks))
    missing = missing_notes(inputs)
    if missing["classify"]:
        lines += [f"No classifier results for: {', '.join(missing['classify'])}.", ""]
    lines += ["## Feature quality: head vs tail", ""]
    analysed = [item for item in inputs if item.analysis is not None]
    if analysed:
        lines += _md_table(SEPARABILITY_HEADER, separability_cells(analysed))
        posterior = posterior_cells(analysed)
        if posterior:
            lines += ["Mean positive posterior of the backbone's head:", ""]
            lines += _md_table(["method", *SHOT_COLUMNS], posterior)
    if missing["analysis"]:
        lines += [f"No feature analysis for: {', '.join(missing['analysis'])}.", ""]
    lines += ["## DLSA: flow filters", ""]
    comparison = dlsa_cells(inputs)
    if comparison:
        lines += _md_table(DLSA_HEADER, comparison)
    cells = filter_cells(inputs)
    if cells:
        lines += _md_table(FILTER_HEADER, cells)
    if missing["dlsa"]:
        lines += [f"The dlsa stage has no output for: {', '.join(missing['dlsa'])}.", ""]
    lines += ["## Ranking", "", *(f"- {sentence}" for sentence in ranking(inputs, settings.marks)),
              ""]
    return "\n".join(lines)


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A pipe table, first two columns left-aligned and the numbers right-aligned."""
    aligns = ["---" if i < 2 else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(map(_md_text, header)) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(map(_md_text, row)) + " |" for row in rows]
    return [*lines, ""]


def _md_text(text: str) -> str:
    """A cell or title with pipes escaped and line breaks flattened."""
    return str(text).replace("|", "\\|").replace("\n", " ")
