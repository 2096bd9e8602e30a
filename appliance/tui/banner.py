"""Classification banners: the level's name, in its colour, fixed at top and bottom."""

from __future__ import annotations

from textual.widgets import Static

from appliance.policy import Level

# Background and foreground for each policy colour: readable on any terminal.
_COLOURS = {
    "green": ("#1b5e20", "white"),
    "blue": ("#0d47a1", "white"),
    "yellow": ("#f9a825", "black"),
    "red": ("#b71c1c", "white"),
    "magenta": ("#6a1b9a", "white"),
    "cyan": ("#006064", "white"),
    "white": ("#eeeeee", "black"),
    "orange": ("#e65100", "white"),
}


class Banner(Static):
    """One line: the session level, and the current turn's label when it is higher."""

    DEFAULT_CSS = """
    Banner { width: 100%; height: 1; text-align: center; text-style: bold; }
    """

    def show(self, session_level: Level, turn_label: Level | None, language: str) -> None:
        label = turn_label if turn_label and turn_label.rank > session_level.rank else None
        shown = label or session_level
        text = f"{session_level.ko} · {session_level.en}"
        if label is not None:
            text += f"   ▲ {label.ko} · {label.en}"
        self.update(text)
        background, foreground = _COLOURS[shown.colour]
        self.styles.background = background
        self.styles.color = foreground


def label_style(level: Level) -> str:
    """The level's banner colours as a Rich style, for a label shown in a table."""
    background, foreground = _COLOURS[level.colour]
    return f"bold {foreground} on {background}"
