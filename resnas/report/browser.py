"""A PNG of a report page, taken by headless Chromium (plotly's own PNG export needs Chrome too)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import UserError
from ..files import atomic_write_bytes


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def screenshot(html_path: Path, png_path: Path, *, width: int = 1300, height: int = 2600) -> Path:
    """A PNG of the rendered page, taken by headless Chromium (plotly's own PNG export needs Chrome too)."""
    chromium = find_chromium()
    if chromium is None:
        raise UserError("PNG export needs Chromium on the PATH (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "page.png"
        subprocess.run([chromium, *headless_flags(tmp), f"--window-size={width},{height}",
                        f"--screenshot={shot}", "--virtual-time-budget=15000", html_path.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)
        return atomic_write_bytes(png_path, shot.read_bytes())


def headless_flags(profile_dir: str) -> list[str]:
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile_dir}"]
