"""`newsletter` commands as separate processes, for tests that need real signals
(SIGTERM, SIGINT, kill -9) or several processes sharing one send."""

from __future__ import annotations

import os
import subprocess
import sys
import time


def start(folder, *args: str) -> subprocess.Popen:
    """`newsletter ARGS` in the folder, without the test run's NEWSLETTER_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", *args],
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_worker(folder, *args: str) -> subprocess.Popen:
    return start(folder, "worker", *args)


def wait_for(condition, process: subprocess.Popen | None = None, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process is not None:
            assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "waited in vain"
        time.sleep(0.02)


def subscribe(cli, folder, count: int) -> None:
    (folder / "list.csv").write_text(
        "email\n" + "".join(f"r{i}@example.com\n" for i in range(count))
    )
    assert cli("subscribers", "import", "list.csv").exit_code == 0


def check_often(folder) -> None:
    with (folder / "newsletter.toml").open("a") as f:
        f.write('\n[schedule]\ncheck_every = "0.2s"\n')


def follow(process: subprocess.Popen) -> list[str]:
    """Collect the process's output lines as they come (the list grows meanwhile)."""
    import threading

    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")))
    reader.daemon = True
    reader.start()
    process.follower = reader
    return lines


def loaded_after(code: str, names: list[str], cwd=None) -> tuple[list[str], str]:
    """Which of `names` a fresh interpreter has imported after running `code` (in the
    order given), and what it printed: what a command pays for at start-up."""
    script = (
        f"import sys\n{code}\n"
        f"print('LOADED:', ' '.join(n for n in {names!r} if n in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, env=env
    )
    assert "LOADED:" in result.stdout, result.stderr
    return result.stdout.rsplit("LOADED:", 1)[1].split(), result.stdout
