"""Prometheus text exposition (format 0.0.4) for the agents' GET /metrics."""

import math


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value):
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _header(full, name, help_text):
    kind = "counter" if name.endswith("_total") else "gauge"
    return [f"# HELP {full} {_escape_help(help_text)}", f"# TYPE {full} {kind}"]


def _escape_help(text):
    return " ".join(str(text).split()).replace("\\", "\\\\")


def render(prefix, gauges, labeled, help_texts):
    """Render ``{prefix}_{name} value`` lines for ``gauges`` {name: value} and
    ``{prefix}_{name}{k="v",...} value`` for ``labeled`` {name: [(labels, value), ...]}.

    Each metric gets ``# HELP`` (from ``help_texts`` {name: text}; a metric without one is a
    KeyError, so no metric ships undocumented) and ``# TYPE`` (names ending in ``_total`` are
    counters, others gauges). Values of None are skipped.
    """
    lines = []
    for name in sorted(gauges):
        value = gauges[name]
        if value is None:
            continue
        full = f"{prefix}_{name}"
        lines += _header(full, name, help_texts[name])
        lines.append(f"{full} {_number(value)}")
    for name in sorted(labeled):
        samples = [(labels, value) for labels, value in labeled[name] if value is not None]
        full = f"{prefix}_{name}"
        lines += _header(full, name, help_texts[name])
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{full}{{{label_text}}} {_number(value)}")
    return "\n".join(lines) + "\n"
