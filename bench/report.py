"""The suite's outputs from its JSON document: the table (Markdown), the notes under it, the chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SHORT = {
    "tidings": "tidings",
    "python-socketio": "python-socketio",
    "node-socket.io": "Node socket.io",
    "limit": "limit",
    "limit-per-frame": "limit (per frame)",
    "uvicorn-floor": "uvicorn floor",
}
COLORS = {
    "tidings": "#2a7ab0",
    "python-socketio": "#e0a030",
    "node-socket.io": "#5a9e4b",
    "limit": "#888888",
    "limit-per-frame": "#bbbbbb",
    "uvicorn-floor": "#c9a0dc",
}
GENERATOR_BOUND = 0.9  # the generator's core was this busy: the number is the generator's, not the server's
BACKGROUND = 0.25  # other processes used this many cores while measuring: the number is suspect


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"


def _pair(first: float | None, second: float | None) -> str:
    return f"{_ms(first)} / {_ms(second)}"


def _cell(result: dict[str, Any] | None, render: Any) -> str:
    if result is None:
        return "-"
    if "error" in result:
        return "error"
    if "skipped" in result:
        return "-"
    text = str(render(result))
    cpu = result.get("generator_cpu")
    return text + (" ‡" if cpu is not None and cpu >= GENERATOR_BOUND else "")


def _equal_rate(document: dict[str, Any], key: str) -> str:
    rate = document["equal_load"]["deliveries_per_s"].get(key)
    return "-" if rate is None else f"{rate:,.0f}/s"


def _part(result: dict[str, Any] | None, step: str) -> dict[str, Any] | None:
    """A result's `peak`, `latency` or `equal_load` part (None if it has none); an error or a skip as is."""
    if result is None or "error" in result or "skipped" in result:
        return result
    part: dict[str, Any] | None = result.get(step)
    return part


def rows(document: dict[str, Any]) -> list[tuple[str, list[str]]]:
    servers = document["servers"]
    settings = document["settings"]
    load = f"{settings['latency_load']:.0%}"
    table: list[tuple[str, list[str]]] = []

    def add(label: str, pick: Any, render: Any) -> None:
        cells = [_cell(pick(server), render) for server in servers.values()]
        if any(cell != "-" for cell in cells):  # else not measured in this run (--measures)
            table.append((label, cells))

    def pair(r: dict[str, Any]) -> str:
        if r.get("behind_messages"):
            return "behind †"
        return _pair(r["p50_ms"], r["p99_ms"])

    for size in settings["sizes"]:
        key = str(size)

        def peak(server: dict[str, Any], key: str = key) -> dict[str, Any] | None:
            result = server["fanout"].get(key)
            return result if result is None or "peak" not in result else result["peak"]

        def latency(server: dict[str, Any], key: str = key) -> dict[str, Any] | None:
            result = server["fanout"].get(key)
            return result if result is None or "latency" not in result else result["latency"]

        label = f"fan-out to {size:,}:"
        add(f"{label} deliveries/s (peak)", peak, lambda r: _count(r["deliveries_per_s"]))
        at = f"{settings['latency_rate']:,.0f}/s" if settings.get("latency_rate") else f"{load} of peak"
        add(f"{label} p50 / p99 ms at {at}", latency, pair)
        add(
            f"{label} p50 / p99 ms at {_equal_rate(document, key)} (equal load)",
            lambda server, key=key: _part(server["fanout"].get(key), "equal_load"),
            pair,
        )
        add(
            f"{label} server / generator CPU at peak",
            peak,
            lambda r: f"{r['server_cpu']:.2f} / {r['generator_cpu']:.2f}",
        )
    idle = settings["idle_connections"]
    add(
        f"idle memory: KiB per connection ({idle:,})",
        lambda server: server["idle_memory"],
        lambda r: f"{r['kib_per_connection']:.1f}",
    )
    add(
        "connection rate: connections/s",
        lambda server: server["connection_rate"],
        lambda r: _count(r["connections_per_s"]),
    )
    polling = f"long-polling, {settings['polling_clients']:,} clients:"
    add(
        f"{polling} deliveries/s (peak)",
        lambda server: _part(server["polling"], "peak"),
        lambda r: _count(r["deliveries_per_s"]),
    )
    add(
        f"{polling} p50 / p99 ms at {_equal_rate(document, 'polling')} (equal load)",
        lambda server: _part(server["polling"], "equal_load"),
        pair,
    )
    add(
        f"{polling} server / generator CPU at peak",
        lambda server: _part(server["polling"], "peak"),
        lambda r: f"{r['server_cpu']:.2f} / {r['generator_cpu']:.2f}",
    )
    echo = f"echo, {settings['echo_clients']} clients:"
    add(f"{echo} p50 / p99 ms", lambda server: server["echo"], pair)
    add(f"{echo} round trips/s", lambda server: server["echo"], lambda r: _count(r["round_trips_per_s"]))
    echo_def = f"echo, def handler, {settings['echo_clients']} clients:"
    add(f"{echo_def} p50 / p99 ms", _echo_def, lambda r: _pair(r["p50_ms"], r["p99_ms"]))
    add(f"{echo_def} round trips/s", _echo_def, lambda r: _count(r["round_trips_per_s"]))
    return table


def _echo_def(server: dict[str, Any]) -> dict[str, Any] | None:
    return server.get("echo_def")  # absent from the documents of runs before it was measured


def table(document: dict[str, Any]) -> str:
    header = ["measure", *[SHORT.get(key, key) for key in document["servers"]]]
    body = rows(document)
    widths = [max(len(header[0]), *(len(label) for label, _ in body))]
    for column in range(1, len(header)):
        widths.append(max(len(header[column]), *(len(cells[column - 1]) for _, cells in body)))

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "| " + " | ".join([first, *rest]) + " |"

    rule = "|" + "|".join(["-" * (widths[0] + 2)] + ["-" * (width + 1) + ":" for width in widths[1:]]) + "|"
    return "\n".join([line(header), rule, *(line([label, *cells]) for label, cells in body)])


def notes(document: dict[str, Any]) -> str:
    """What a reader needs under the table: pinning, the generator's share, background load."""
    lines = [f"Pinning: {document['pinning']}."]
    lines.append(
        "‡ the load generator's core was ≥90% busy: that number is (close to) the generator's ceiling, "
        "not the server's."
    )
    lines.append(
        "† behind: the server had not delivered the equal-load phase's messages a minute after it "
        "(5 s with --quick): it cannot keep up with that rate."
    )
    suspect = []
    for key, server in document["servers"].items():
        measured = [
            ("connection rate", server["connection_rate"]),
            ("echo", server["echo"]),
            ("echo, def handler", _echo_def(server)),
        ]
        fanouts = [(f"fan-out to {size}", result) for size, result in server["fanout"].items()]
        for label, result in [*fanouts, ("long-polling", server.get("polling") or {})]:
            measured += [
                (label, result.get("peak")),
                (f"{label}: latency", result.get("latency")),
                (f"{label}: latency at equal load", result.get("equal_load")),
            ]
        for label, result in measured:
            if isinstance(result, dict) and result.get("other_cpu", 0) >= BACKGROUND:
                suspect.append(f"{SHORT.get(key, key)} {label} ({result['other_cpu']:.2f} cores)")
    if suspect:
        lines.append("Other processes kept the cores busy during: " + "; ".join(suspect) + " — rerun those.")
    else:
        lines.append(f"No measure saw other processes use {BACKGROUND} cores or more.")
    return "\n".join(lines)


def chart(document: dict[str, Any], path: Path) -> str | None:
    """Draw the PNG; None if matplotlib is not installed (the `bench` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    except ImportError:
        return None
    servers = document["servers"]
    keys = list(servers)
    settings = document["settings"]
    sizes = [str(size) for size in settings["sizes"]]
    width = 0.8 / max(1, len(keys))

    def part(result: Any, *path: str) -> Any:
        for step in path:
            if not isinstance(result, dict) or result.get(step) is None:
                return None
            result = result[step]
        return result

    # The panels: (title, groups, pick, log scale); `pick(server, group)` gives the measured dict
    # and its value.
    load = f"{settings['latency_load']:.0%}"
    panels: list[tuple[str, list[str], Any, bool]] = [
        (
            "fan-out: deliveries/s at peak (log scale), by subscribers",
            sizes,
            lambda s, g: (
                part(s["fanout"].get(g), "peak"),
                part(s["fanout"].get(g), "peak", "deliveries_per_s"),
            ),
            True,
        )
    ]
    for which in ("p50", "p99"):
        panels.append(
            (
                f"fan-out: {which} latency ms at {load} of own peak (log scale)",
                sizes,
                lambda s, g, which=which: (
                    part(s["fanout"].get(g), "latency"),
                    part(s["fanout"].get(g), "latency", f"{which}_ms"),
                ),
                True,
            )
        )
    panels.append(
        (
            "idle memory: KiB of server RSS per connection",
            [f"{settings['idle_connections']:,} idle Socket.IO clients"],
            lambda s, g: (s["idle_memory"], part(s["idle_memory"], "kib_per_connection")),
            False,
        )
    )
    panels.append(
        (
            "connection rate: connections/s (handshake + connect)",
            ["new connections/s"],
            lambda s, g: (s["connection_rate"], part(s["connection_rate"], "connections_per_s")),
            False,
        )
    )
    echoes = {"async": "echo", "def": "echo_def"}  # `async def` or `def` handler, and its measure

    def echo(server: dict[str, Any], group: str) -> tuple[Any, Any]:
        handler, which = group.rsplit(" ", 1)
        result = server.get(echoes[handler])
        return result, part(result, f"{which}_ms")

    def echo_rate(server: dict[str, Any], handler: str) -> tuple[Any, Any]:
        result = server.get(echoes[handler])
        return result, part(result, "round_trips_per_s")

    clients = settings["echo_clients"]
    panels.append(
        (
            f"echo: round trip ms, {clients} clients (log scale)",
            [f"{handler} {which}" for handler in echoes for which in ("p50", "p99")],
            echo,
            True,
        )
    )
    panels.append(
        (
            f"echo: round trips/s, {clients} clients",
            list(echoes),
            echo_rate,
            False,
        )
    )

    panels.append(
        (
            "fan-out: p99 latency ms at equal load (log scale), by subscribers",
            [f"{size} at {_equal_rate(document, size)}" for size in sizes],
            lambda s, g: (
                part(s["fanout"].get(g.split()[0]), "equal_load"),
                part(s["fanout"].get(g.split()[0]), "equal_load", "p99_ms"),
            ),
            True,
        )
    )
    polling = f"{settings.get('polling_clients', 0):,} long-polling clients"
    panels.append(
        (
            "long-polling fan-out: deliveries/s at peak",
            [polling],
            lambda s, g: (part(s.get("polling"), "peak"), part(s.get("polling"), "peak", "deliveries_per_s")),
            False,
        )
    )
    panels.append(
        (
            f"long-polling: latency ms at {_equal_rate(document, 'polling')} (equal load, log scale)",
            ["p50", "p99"],
            lambda s, g: (
                part(s.get("polling"), "equal_load"),
                part(s.get("polling"), "equal_load", f"{g}_ms"),
            ),
            True,
        )
    )

    def measured(pick: Any, groups: list[str]) -> bool:
        return any(pick(server, group)[1] for server in servers.values() for group in groups)

    panels = [panel for panel in panels if measured(panel[2], panel[1])]  # --measures takes fewer
    columns = min(4, max(1, len(panels)))
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.4 * columns + 1, 4.6 * rows + 0.6), squeeze=False)
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    machine = document["machine"]
    figure.suptitle(
        f"tidings benchmark suite, {document['date'][:10]}: {machine['nproc']} cores "
        f"({machine['cpu_model']}), {document['pinning']}",
        fontsize=11,
    )

    def grouped(axis: Any, title: str, groups: list[str], pick: Any, log: bool) -> None:
        """Bars per group and server."""
        for index, key in enumerate(keys):
            picked = [pick(servers[key], group) for group in groups]
            heights = [float(value or 0) for _, value in picked]
            positions = [g + (index - (len(keys) - 1) / 2) * width for g in range(len(groups))]
            bars = axis.bar(positions, heights, width, label=SHORT.get(key, key), color=COLORS.get(key))
            for bar, (measured, _) in zip(bars, picked, strict=True):
                if isinstance(measured, dict) and (measured.get("generator_cpu") or 0) >= GENERATOR_BOUND:
                    bar.set_hatch("///")
                    bar.set_edgecolor("white")
            axis.bar_label(bars, labels=[_short(h) if h else "" for h in heights], fontsize=7, padding=2)
        axis.set_xticks(range(len(groups)), groups)
        axis.set_title(title, fontsize=10)
        if log:
            axis.set_yscale("log")
            axis.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: _short(value)))
            axis.yaxis.set_minor_formatter(NullFormatter())
            axis.margins(y=0.15)
        else:
            axis.margins(y=0.12)
        axis.grid(axis="y", alpha=0.3)
        axis.set_axisbelow(True)

    for axis, (title, groups, pick, log) in zip(axes.flat, panels, strict=False):
        grouped(axis, title, groups, pick, log)
    handles = [Patch(facecolor=COLORS.get(key)) for key in keys]
    labels = [SHORT.get(key, key) for key in keys]
    handles.append(Patch(facecolor="#888888", hatch="///", edgecolor="white"))
    labels.append("hatched: generator core ≥90% busy (the generator's ceiling)")
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    figure.tight_layout(rect=(0, 0.04, 1, 0.97))
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return str(path)


def _short(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2g}M"
    if value >= 1e3:
        return f"{value / 1e3:.3g}k"
    return f"{value:.3g}"
