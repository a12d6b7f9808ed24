"""Reads a ugatit-rs run's TensorBoard events with TensorBoard's own loader (EventAccumulator) and
checks them against the run's losses.csv: every loss term and the learning rate as scalars at
every step, and the sample grids as images of the grid's size.

    python -m venv /tmp/tbv && /tmp/tbv/bin/pip install tensorboard pillow
    /tmp/tbv/bin/python tools/oracle/check_tensorboard.py results/sample
"""
import csv
import io
import math
import sys

from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main(run_dir):
    acc = EventAccumulator(f"{run_dir}/tb", size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    with open(f"{run_dir}/losses.csv") as f:
        rows = list(csv.DictReader(f))
    names = [n for n in rows[0] if n != "step"]
    assert set(names) <= set(tags["scalars"]), sorted(set(names) - set(tags["scalars"]))
    for name in names:
        logged = {e.step: e.value for e in acc.Scalars(name)}
        for row in rows:
            step, want = int(row["step"]), float(row[name])
            got = logged[step]
            assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-6), (name, step, got, want)
    for tag in ("samples/A2B", "samples/B2A"):
        for event in acc.Images(tag):
            img = Image.open(io.BytesIO(event.encoded_image_string))
            assert img.size == (event.width, event.height), (tag, event.step, img.size)
    print(f"ok: {len(names)} scalar series over {len(rows)} steps, "
          f"{len(acc.Images('samples/A2B'))} grid images per direction")


if __name__ == "__main__":
    main(sys.argv[1])
