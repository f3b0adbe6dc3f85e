"""DKIM benchmark: the same list sent into Postfix's `smtp-sink` on loopback,
unsigned, RSA-2048-signed and Ed25519-signed, each signed in the send's own
process (what `[dkim] processes` comes to on two cores) and on one signing
process, in alternating rounds (so that a noisy moment of the machine hits every
kind), with the delivery log written as in production; then the per-message
cost of signing alone. Besides the rate it prints the CPU time a message costs
the send's own process and the whole machine (sink and signing processes too).

Target: a signed send at least 0.8x an unsigned send's throughput.

    make bench                              # 2,000 subscribers, 3 rounds (< 60 s)
    .venv/bin/python bench/dkim.py -n 10000 -r 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from send import ISSUE, one_send, prepare_folder, start_sink

from newsletter.compose import render
from newsletter.compose.issue import load_issue
from newsletter.config import Config, load_config
from newsletter.mail.dkim import load_key
from newsletter.mail.message import MessageFactory, Recipient
from newsletter.storage import db
from newsletter.storage.delivery_log import DeliveryLog
from newsletter.tokens import Signer, secret_of

KEYS = ("rsa-2048", "ed25519")
KINDS = ("unsigned", *KEYS, *(f"{key}, 1 process" for key in KEYS))
TARGET = 0.8


def write_configs(folder: Path) -> dict[str, Config]:
    """One newsletter.toml per kind, side by side in the same folder (same database)."""
    keys = {
        "rsa-2048": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
    }
    base = (folder / "newsletter.toml").read_text()
    configs = {"unsigned": load_config(folder / "newsletter.toml", environ={})}
    for kind, key in keys.items():
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (folder / f"{kind}.pem").write_bytes(pem)
        for name, processes in ((kind, 0), (f"{kind}, 1 process", 1)):
            toml = folder / f"{kind}-{processes}.toml"
            toml.write_text(
                base + f'\n[dkim]\nselector = "nl"\ndomain = "example.com"\n'
                f'key_file = "{kind}.pem"\nprocesses = {processes}\n'
            )
            configs[name] = load_config(toml, environ={})
    return configs


def machine_busy() -> float:
    """Seconds of CPU the whole machine has spent busy (Linux's /proc/stat)."""
    ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def sign_costs(configs: dict[str, Config]) -> tuple[int, dict[str, float]]:
    """(message size, median µs a signature adds to building one message, per kind):
    the factory's way (literal pieces canonicalized once), and the whole-message way
    that any other message takes."""
    recipients = [Recipient(i, f"r{i}@example.com", f"Reader {i}") for i in range(300)]
    builds = {kind: _build_costs(configs[kind], recipients) for kind in ("unsigned", *KEYS)}
    costs = {kind: builds[kind] - builds["unsigned"] for kind in KEYS}
    config = configs["unsigned"]
    factory = MessageFactory(
        render.prepare(load_issue(ISSUE), config), config, Signer(secret_of(config))
    )
    messages = [factory.build(r) for r in recipients]
    for kind in KEYS:
        key = load_key(configs[kind])
        samples = []
        for message in messages:
            start = time.perf_counter()
            key.sign(message)
            samples.append(time.perf_counter() - start)
        costs[f"{kind} (whole message)"] = statistics.median(samples) * 1e6
    # The signer this replaced, for scale (a dev dependency: the tests verify with it).
    # This file's folder comes off the path first, or `import dkim` finds this file.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    try:
        import dkim

        pem = (configs["rsa-2048"].root / "rsa-2048.pem").read_bytes()
        start = time.perf_counter()
        for message in messages[:20]:
            dkim.sign(message, b"nl", b"example.com", pem, linesep=b"\r\n")
        costs["rsa-2048 (dkimpy, whole message)"] = (time.perf_counter() - start) / 20 * 1e6
    except ImportError:
        pass
    return len(messages[0]), costs


def _build_costs(config: Config, recipients: list[Recipient]) -> float:
    factory = MessageFactory(
        render.prepare(load_issue(ISSUE), config), config, Signer(secret_of(config))
    )
    samples = []
    for recipient in recipients:
        start = time.perf_counter()
        factory.build(recipient)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description="DKIM send benchmark")
    parser.add_argument("-n", "--subscribers", type=int, default=2_000)
    parser.add_argument("-c", "--connections", type=int, default=8)
    parser.add_argument("-r", "--rounds", type=int, default=3)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
    cpus: dict[str, list[float]] = {kind: [] for kind in KINDS}  # this process's, all threads
    machine: dict[str, list[float]] = {kind: [] for kind in KINDS}
    with tempfile.TemporaryDirectory(prefix="newsletter-bench-dkim-") as tmp:
        folder, port, _ = prepare_folder(tmp, args.connections, args.subscribers)
        configs = write_configs(folder)
        log = DeliveryLog(db.connect(configs["unsigned"]))
        sink, sink_name = start_sink(port, folder)
        try:
            for round_ in range(args.rounds):
                for i, kind in enumerate(KINDS):
                    cpu, busy = time.process_time(), machine_busy()
                    rate, _, sent = one_send(log, configs[kind], round_ * len(KINDS) + i)
                    cpus[kind].append((time.process_time() - cpu) / max(sent, 1))
                    machine[kind].append((machine_busy() - busy) / max(sent, 1))
                    if sent != args.subscribers:
                        raise SystemExit(f"{kind}: only {sent} of {args.subscribers} were sent")
                    rates[kind].append(rate)
        finally:
            sink.terminate()
            sink.wait()
        size, costs = sign_costs(configs)
    print(f"subscribers: {args.subscribers:,}; message size {size / 1024:.1f} KB; "
          f"{args.connections} connections; {args.rounds} rounds; sink: {sink_name}")  # fmt: skip
    unsigned = statistics.median(rates["unsigned"])
    for kind in KINDS:
        each = ", ".join(f"{r:,.0f}" for r in rates[kind])
        median = statistics.median(rates[kind])
        ratio = "" if kind == "unsigned" else f"  ratio {median / unsigned:.2f}x"
        cpu = statistics.median(cpus[kind]) * 1e6
        whole = statistics.median(machine[kind]) * 1e6
        print(f"{kind:>19}: {median:,.0f} msg/s (rounds: {each}){ratio}; CPU a message: "
              f"{cpu:,.0f} µs the send's process, {whole:,.0f} µs the machine")  # fmt: skip
    print(f"target: signed / unsigned >= {TARGET}x")
    for kind, micros in costs.items():
        print(f"signing adds to one message, {kind}: {micros:,.0f} µs")


if __name__ == "__main__":
    main()
