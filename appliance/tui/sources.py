"""The sources under a grounded answer: number, title, place, label, version.

The service sends them with the answer's result (`sources`, docs/formats/
protocol.md); each line names what the answer was given, cited or not, so the
reader can find the passage in the document.
"""

from __future__ import annotations

from typing import Any

from textual.widgets import Static

from appliance.tui.text import words


class SourcesView(Static):
    DEFAULT_CSS = """
    SourcesView { color: $text-muted; padding: 0 0 0 2; height: auto; }
    """

    def __init__(self, sources: list[dict[str, Any]], language: str) -> None:
        super().__init__(sources_text(sources, language), markup=False, classes="sources")


def sources_text(sources: list[dict[str, Any]], language: str) -> str:
    lines = [words(language, "sources.title")]
    for source in sources:
        details = [str(source.get("label_name"))]
        if source.get("effective"):
            details.append(words(language, "sources.effective", date=source["effective"]))
        if source.get("superseded"):
            details.append(words(language, "sources.superseded"))
        place = f", {source['place']}" if source.get("place") else ""
        lines.append(f"[{source.get('n')}] {source.get('title')}{place} ({', '.join(details)})")
    return "\n".join(lines)
