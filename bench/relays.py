"""Relays benchmark: a send spread over two relays, each paced by its own `rate`,
against the same send through one such relay. Each relay is a Postfix `smtp-sink`
on loopback, far faster than the rate, so the rate is what limits: two relays at
R msg/s should deliver close to 2R.

Prints msg/s for one and for two relays and, for each, total / (relays x R)
(target >= 0.9: the pool loses little to the split, to startup and to the tail).

    make bench
    .venv/bin/python bench/relays.py -n 3200 -r 400
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from send import ISSUE, free_port, seed, start_sink

from newsletter.compose import scaffold
from newsletter.config import load_config
from newsletter.mail.message import MessageFactory
from newsletter.service import sending
from newsletter.service.runner import Runner
from newsletter.storage import db
from newsletter.storage.delivery_log import DeliveryLog
from newsletter.tokens import Signer, secret_of


def relay_config(folder: Path, name: str, ports: list[int], rate: float, connections: int):
    """A config beside newsletter.toml whose [[smtp.relays]] are the sinks on `ports`."""
    text = (folder / "newsletter.toml").read_text()
    tables = "".join(
        f'[[smtp.relays]]\nname = "sink{i}"\nhost = "127.0.0.1"\nport = {port}\n'
        f'security = "none"\nrate = {rate}\nconnections = {connections}\n\n'
        for i, port in enumerate(ports, 1)
    )
    path = folder / name
    path.write_text(text.replace("[database]", tables + "[database]"))
    return load_config(path, environ={})


def one_send(log: DeliveryLog, config, slug: str) -> tuple[float, int]:
    """(msg/s, sent) of a whole send of the sample issue to every subscriber."""
    new = sending.new_send(sending.plan(config, ISSUE))
    record = log.start(dataclasses.replace(new, slug=slug))
    factory = MessageFactory(
        sending.stored_prepared(record, "there"), config, Signer(secret_of(config))
    )
    start = time.perf_counter()
    report = asyncio.run(Runner(log, record.id, factory, config.smtp).run())
    return report.sent / (time.perf_counter() - start), report.sent


def main() -> None:
    parser = argparse.ArgumentParser(description="Relays benchmark")
    parser.add_argument("-n", "--subscribers", type=int, default=1600)
    parser.add_argument("-r", "--rate", type=float, default=200.0, help="msg/s per relay")
    parser.add_argument("-c", "--connections", type=int, default=4, help="per relay")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="newsletter-bench-relays-") as tmp:
        folder = Path(tmp) / "letter"
        scaffold.init(folder)
        toml = folder / "newsletter.toml"
        subprocess.run(
            [sys.executable, "-m", "newsletter", "db", "upgrade", "--config", str(toml)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        seed(folder / "subscribers.db", args.subscribers)
        ports = [free_port(), free_port()]
        sinks = [start_sink(port, folder) for port in ports]
        setups = {
            count: relay_config(folder, f"{count}.toml", ports[:count], args.rate, args.connections)
            for count in (1, 2)
        }
        log = DeliveryLog(db.connect(setups[1]))
        rates: dict[int, list[float]] = {1: [], 2: []}
        try:
            for round_ in range(args.rounds):  # alternating: a noisy moment hits both
                for count, config in setups.items():
                    rate, sent = one_send(log, config, f"relays-{count}-{round_}")
                    if sent != args.subscribers:
                        raise SystemExit(f"only {sent} of {args.subscribers} were sent")
                    rates[count].append(rate)
        finally:
            for process, _ in sinks:
                process.terminate()
                process.wait()
    print(f"subscribers: {args.subscribers:,}; R = {args.rate:g} msg/s per relay; "
          f"{args.connections} connections per relay; sinks: {sinks[0][1]}")  # fmt: skip
    for count, measured in rates.items():
        median = statistics.median(measured)
        print(f"{count} relay(s): " + ", ".join(f"{r:,.0f}" for r in measured)
              + f" msg/s; median {median:,.0f}; total / ({count} x R) = "
              f"{median / (count * args.rate):.2f}  (target >= 0.9)")  # fmt: skip
    speedup = statistics.median(rates[2]) / statistics.median(rates[1])
    print(f"two relays / one relay: {speedup:.2f}x  (ideal 2.00x)")


if __name__ == "__main__":
    main()
