"""Which JSON codec for Socket.IO packets: stdlib json, orjson or msgspec, on typical packet data.

Run: .venv/bin/python bench/json_codecs.py  (msgspec comes with the `bench` extra).
Prints microseconds per encode (to str, as the wire needs) and per decode, for each codec.
"""

from __future__ import annotations

import json
import timeit

import orjson

try:
    import msgspec
except ImportError:  # the bench extra is not installed
    msgspec = None

SAMPLES = {
    "event 100 B": ["news", "x" * 100],
    "event dict": ["chat", {"user": "ada", "text": "hello there", "room": "room-42", "ts": 1732492800.5}],
    "ack list 50": [list(range(50))],
    "event 10 kB": ["blob", {"items": [{"id": i, "name": f"item {i}", "tags": ["a"]} for i in range(150)]}],
}


def codecs() -> dict[str, tuple]:
    found = {
        "json": (lambda d: json.dumps(d, separators=(",", ":")), json.loads),
        "orjson": (lambda d: orjson.dumps(d).decode(), orjson.loads),
    }
    if msgspec is not None:
        encoder, decoder = msgspec.json.Encoder(), msgspec.json.Decoder()
        found["msgspec"] = (lambda d: encoder.encode(d).decode(), decoder.decode)
    return found


def main() -> None:
    table = codecs()
    print(f"{'sample':14}" + "".join(f"{name + ' enc':>14}{name + ' dec':>14}" for name in table))
    for label, data in SAMPLES.items():
        row = f"{label:14}"
        for encode, decode in table.values():
            text = encode(data)
            runs = 20000
            enc = timeit.timeit(lambda: encode(data), number=runs) / runs * 1e6  # noqa: B023
            dec = timeit.timeit(lambda: decode(text), number=runs) / runs * 1e6  # noqa: B023
            row += f"{enc:12.2f}us{dec:12.2f}us"
        print(row)


if __name__ == "__main__":
    main()
