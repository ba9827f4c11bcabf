"""``edge3u board``: the host side of the board top's serial protocol (``rtl/protocol.py``).

:class:`BoardLink` speaks to a board over a serial port; :func:`board_run` sends a run's test
images and checks every answer against the integer golden model.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge3u.rtl import protocol
from edge3u.runs import CONFIG, RunError

__all__ = ["BoardLink", "BoardError", "board_run"]


class BoardError(RuntimeError):
    """The board did not answer, or answered something else than the protocol says."""


class BoardLink:
    """One serial connection to a board top.

    ``port`` is a device path (``/dev/ttyUSB0``) or any pyserial URL; the link identifies the
    design on opening, and every image is checked against it before it is sent.
    """

    def __init__(self, port: str, *, baud: int = 115200, timeout: float = 2.0):
        import serial

        try:
            self.serial = serial.serial_for_url(port, baudrate=baud, timeout=timeout)
        except (serial.SerialException, ValueError) as error:
            raise BoardError(f"cannot open serial port {port!r}: {error}") from None
        self.port = port
        self.serial.reset_input_buffer()
        self.identity = protocol.parse_identity(self._ask(protocol.IDENTIFY,
                                                          protocol.IDENTITY_LENGTH))

    def _ask(self, request: bytes, length: int) -> bytes:
        self.serial.write(request)
        self.serial.flush()
        reply = self.serial.read(length)
        if len(reply) != length:
            raise BoardError(f"{self.port}: expected a {length}-byte reply to {request[:1]!r}, "
                             f"got {len(reply)} bytes ({reply!r}) before the timeout; is the "
                             f"board programmed with the edge3u bitstream, at this baud rate?")
        return reply

    def infer(self, pixels) -> protocol.Result:
        request = protocol.infer_request(pixels, self.identity)
        return protocol.parse_result(self._ask(request, protocol.result_length(self.identity)),
                                     self.identity)

    def cycles(self) -> int:
        return protocol.parse_cycles(self._ask(protocol.CYCLES, protocol.CYCLES_LENGTH))

    def close(self) -> None:
        self.serial.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def board_run(run: str | Path, port: str, *, images: int, baud: int = 115200,
              data_path: str | None = None, timeout: float = 2.0) -> dict:
    """Send the first ``images`` test images of the run's dataset to the board on ``port`` and
    compare class, logits and cycles with the golden model and the cycle model."""
    import torch

    from edge3u.config import load_config
    from edge3u.data import load_dataset
    from edge3u.models.golden import int_forward
    from edge3u.models.rom import load_rom
    from edge3u.rtl.elaborate import fit
    from edge3u.train.export import ROM_DIR

    run = Path(run)
    if not (run / CONFIG).exists():
        raise RunError(f"{run / CONFIG} does not exist: run `edge3u train --run {run}` first")
    config = load_config(run / CONFIG)
    net, _ = load_rom(run / ROM_DIR, config)
    cycles = fit(net, config).cycles()
    data = load_dataset(config.data.dataset, data_path or config.data.path or None)
    if not 1 <= images <= len(data.y_test):
        raise RunError(f"--images must be in 1 .. {len(data.y_test)} (the test set), not {images}")
    x = data.x_test[:images]
    want = int_forward(torch.as_tensor(x.astype(np.int64)), net)
    mismatches, correct, first = 0, 0, None
    started = time.perf_counter()
    with BoardLink(port, baud=baud, timeout=timeout) as link:
        if link.identity.pixels != x.shape[1] or link.identity.classes != want.shape[1]:
            raise BoardError(f"the board's design takes {link.identity.pixels} pixels and has "
                             f"{link.identity.classes} classes; the run's has {x.shape[1]} and "
                             f"{want.shape[1]}: program the board with this run's bitstream")
        for k in range(images):
            got = link.infer(x[k].tolist())
            expect = want[k].tolist()
            if got.logits != expect or got.cls != int(np.argmax(expect)) or got.cycles != cycles:
                mismatches += 1
                first = first or {"image": k, "board": [got.cls, got.logits, got.cycles],
                                  "golden": [int(np.argmax(expect)), expect, cycles]}
            correct += got.cls == int(data.y_test[k])
    seconds = time.perf_counter() - started
    return {"port": port, "images": images, "mismatches": mismatches,
            "board_accuracy": correct / images, "cycles_per_image": cycles,
            "images_per_s": images / seconds, "first_mismatch": first}
