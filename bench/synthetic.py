"""Speed of the synthetic fundus generator: photos per second per core (target: >= 20 at 1024 px).

    python bench/synthetic.py [N]
"""
import io, time
from fastcore.script import call_parse
from eyenet.synthetic import synth_fundus

def rate(size, n, aspect=1.0, jpeg=False):
    "Photos per CPU-second of this process (one core) and per wall-second, grades 0-4 in turn."
    synth_fundus(2, size, aspect=aspect)                      # warm up
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        img = synth_fundus(i % 5, size, aspect=aspect, seed=i)
        if jpeg: img.save(io.BytesIO(), 'JPEG', quality=90)
    return n/(time.process_time()-c0), n/(time.perf_counter()-t0)

@call_parse(pos=['n'])
def main(n:int=50, # synthetic photos per row (the 10 MP row makes a tenth of them, at least 5)
        ):
    "Speed of the synthetic fundus generator: photos per second per core (target: >= 20 at 1024 px)."
    print(f"synth_fundus, {n} synthetic photos per row, grades 0-4 in turn, one process")
    print(f"{'frame':>22} {'photos/CPU-s':>13} {'photos/wall-s':>14}")
    for size, aspect, jpeg, what in ((512, 1.0, False, '512x512'), (1024, 1.0, False, '1024x1024'),
                                     (1024, 1.0, True, '1024x1024 + JPEG q90'), (1024, 1.5, False, '1536x1024'),
                                     (2592, 1.5, False, '3888x2592 (10 MP)')):
        cpu, wall = rate(size, n if size <= 1024 else max(5, n//10), aspect, jpeg)
        print(f"{what:>22} {cpu:13.1f} {wall:14.1f}")
