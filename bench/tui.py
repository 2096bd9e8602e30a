"""Terminal UI: keystroke-to-screen latency while a real answer streams.

The embedded model answers a long prompt in a worker thread while keys are
posted to the prompt field as the terminal driver posts them; each keystroke
is timed from the key event until the field holds it and the refresh it
scheduled has had its turn. Target: p95 <= 50 ms.
Last line: `tui_keystroke_p95_ms: <value>`.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from appliance import catalog
from appliance.audit import AuditLog
from appliance.config import EngineSettings
from appliance.engine import Engine
from appliance.policy import load_policy, shipped_policy
from appliance.tui import AppContext, ApplianceApp
from appliance.tui.chat import PromptArea

KEYS = 80
PROMPT = "Write a long, detailed essay about the history of the Korean peninsula."


async def measure(app: ApplianceApp) -> tuple[list[float], int]:
    latencies: list[float] = []
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("enter")  # development mode
        field = app.screen.query_one("#prompt", PromptArea)
        field.text = PROMPT
        await pilot.press("enter")
        while not app.screen._pending and app.screen._turn is None:
            await pilot.pause(0.01)
        streamed_before = len(app.screen.conversation.messages)
        for index in range(KEYS):
            key = "abcdefghij"[index % 10]
            start = time.perf_counter()
            app.simulate_key(key)  # the key event, as the terminal driver posts it
            while not field.text.endswith(key):
                await asyncio.sleep(0.0005)
            await asyncio.sleep(0)  # let the refresh that the change scheduled run
            latencies.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(0.02)  # a fast typist: 50 keys a second at most
        streaming = app.screen._turn is not None
        app.screen.action_cancel()
        while app.screen._turn is not None:
            await pilot.pause(0.05)
    return latencies, int(streaming) + streamed_before


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        entry = catalog.load_catalog().default_entry
        path = catalog.prepare(entry, home)
        policy = load_policy(shipped_policy("default"))
        with Engine(path, EngineSettings(context_length=2048), verified=True) as engine:
            log = AuditLog(home / "audit")
            context = AppContext(home, policy, log, engine, entry.content_id, "bench", "bench")
            latencies, still_streaming = asyncio.run(measure(ApplianceApp(context)))
            log.close()
    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[int(len(latencies) * 0.95) - 1]
    state = "still streaming" if still_streaming else "answer had ended"
    print(f"{KEYS} keystrokes while the model streamed ({state} after the last key):")
    print(f"  p50 {p50:.1f} ms  p95 {p95:.1f} ms  max {latencies[-1]:.1f} ms")
    print(f"tui_keystroke_p95_ms: {p95:.1f}")


if __name__ == "__main__":
    main()
