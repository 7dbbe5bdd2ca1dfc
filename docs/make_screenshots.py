"""Write SVG screenshots of the app for the README from an ensui home that holds a
finished experiment (e.g. the quickstart's `.ensui`):

    python docs/make_screenshots.py HOME [--out docs]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from ensui.app import EnsuiApp
from ensui.home import Home


async def shoot(home: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    app = EnsuiApp(Home(home), readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(2.0)
        for mode, shots in (("jobs", [("jobs", [])]),
                            ("results", [("results", []), ("figure_b", ["]", "]"])])):
            await pilot.press({"jobs": "3", "results": "4"}[mode])
            await pilot.pause(3.0)
            for name, keys in shots:
                for key in keys:
                    await pilot.press(key)
                    await pilot.pause(0.5)
                app.save_screenshot(f"app_{name}.svg", str(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("home", type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = ap.parse_args()
    asyncio.run(shoot(args.home, args.out))


if __name__ == "__main__":
    main()
