"""Benchmark `eyenet.preprocess` against a plain full PIL decode of the same photos, and measure a batch's peak memory.

    python bench/preprocess.py [--src FOLDER | --synthetic] [--size 256] [--reps 3] [--workers N]

Prints, in one run:
1. photos per second per core (photos / CPU seconds of one process) for our whole pipeline (decode at reduced
   DCT scale, find the disc, measure quality, crop, JPEG-encode the output) and for a plain full
   `Image.open(fn).load()` of the same files, interleaved photo by photo so both see the same machine load,
   each call freeing its images before it returns (as a loop over photos does); their ratio;
2. the peak memory of a whole `preprocess(..., store=True)` batch, sampled every 0.1 s, on the folder's
   photos and on 4x as many (the same files under other names): RSS and PSS (shared library pages split
   among the processes sharing them) summed over the main process and its workers, and the largest single
   process's RSS. It must stay under 1 GiB and not grow with the number of photos.

Default photos: the real camera photos in `shared_data('eyepacs-raw/train')` (../shared/data beside the checkout)
when present, else synthetic full-size frames (labelled so in the output, after a line saying the real ones are absent).
"""
import io, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path
import psutil
from PIL import Image
from fastcore.script import call_parse, store_true

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from eyenet.core import shared_data
from eyenet.preprocess import process_photo

def default_src():
    "The real raw camera photos beside the checkout, if present: (folder, what they are) or (None, None)."
    src = shared_data('eyepacs-raw/train')
    if src is not None and src.is_dir(): return src, 'real EyePACS camera photos'
    print("bench/preprocess.py: the real raw photos (../shared/data/eyepacs-raw/train) are absent; using synthetic frames")
    return None, None

def synthetic_src(dest):
    "Synthetic frames of the four large EyePACS cameras (5 to 15 MP, as in the real set), with sensor noise so the JPEGs weigh about what camera files do."
    import numpy as np
    from eyenet.synthetic import CAMERAS, synth_fundus
    (dest/'train').mkdir(parents=True)
    rng = np.random.default_rng(0)
    big = [(w, h) for w, h in CAMERAS if w*h > 5e6]
    for i in range(8):
        w, h = big[i % len(big)]
        a = np.asarray(synth_fundus(i % 5, size=h, aspect=w/h, seed=i)).astype(np.float32)
        a += (rng.standard_normal(a.shape[:2], dtype=np.float32)*3)[..., None]*(a > 0)   # noise in the disc only
        Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(dest/'train'/f'{10 + i}_left.jpeg', quality=90)
    return dest/'train', 'SYNTHETIC full-size frames (with sensor noise)'

def full_decode(fn, size):
    "What any pipeline pays at least: decode the whole photo (freed on return, as in a loop over photos)."
    with Image.open(fn) as im: im.load()

def pipeline(fn, size):
    "Our whole pipeline for one photo, output JPEG-encoded as `preprocess` writes it."
    img, rec = process_photo(src=fn, size=size)
    if img is not None: img.save(io.BytesIO(), 'JPEG', quality=95)

def per_core(files, size, reps):
    # Interleaving with the other pipeline changes what the allocator has at hand: if a full-size image were
    # still alive while ours runs, the next full decode would reuse its pages and look ~25% faster than a plain
    # loop of decodes; freeing each image in its call, as here, matches the plain loop (see the check line).
    "Photos per CPU second of a full decode and of our pipeline, interleaved photo by photo."
    cpu = {full_decode: 0., pipeline: 0.}
    for _ in range(reps):
        for fn in files:
            for f in cpu:
                t = time.process_time(); f(fn, size); cpu[f] += time.process_time() - t
    n = reps*len(files)
    return n/cpu[full_decode], n/cpu[pipeline]

def alone(f, files, size, reps):
    "Photos per CPU second of `f` run back to back over the files (no interleaving)."
    t = time.process_time()
    for _ in range(reps):
        for fn in files: f(fn, size)
    return reps*len(files)/(time.process_time() - t)

def tree_mem(p):
    "(RSS, PSS) of `p` and of each of its descendants, {pid: (bytes, bytes)}; PSS splits shared pages among their users."
    try: procs = [p] + p.children(recursive=True)
    except psutil.NoSuchProcess: return {}
    res = {}
    for q in procs:
        try:
            m = q.memory_full_info()
            res[q.pid] = (m.rss, getattr(m, 'pss', m.rss))
        except (psutil.NoSuchProcess, psutil.AccessDenied): pass
    return res

def batch(src, dest, size, workers):
    "Run a whole `preprocess` batch (with the array store) in a subprocess; wall seconds and peak RSS of its process tree."
    code = ("import sys; from eyenet.preprocess import preprocess\n"
            "preprocess(src=sys.argv[1], dest=sys.argv[2], size=int(sys.argv[3]), workers=int(sys.argv[4]), store=True,\n"
            "           progress=False)")
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, '-c', code, str(src), str(dest), str(size), str(workers)], cwd=HERE.parent)
    p, rss, pss, one = psutil.Process(proc.pid), 0, 0, 0
    while proc.poll() is None:
        r = tree_mem(p)
        rss, pss = max(rss, sum(v[0] for v in r.values())), max(pss, sum(v[1] for v in r.values()))
        one = max([one, *(v[0] for v in r.values())]); time.sleep(0.1)
    if proc.returncode: raise SystemExit(f"batch run failed ({proc.returncode})")
    return time.perf_counter() - t, rss, pss, one

def speed(files, size, reps):
    "Print photos per second per core of our pipeline and of a full decode, interleaved and each alone."
    full, ours = per_core(files, size, reps)
    print(f"plain full PIL decode        : {full:6.1f} photos/s/core")
    print(f"eyenet preprocess (all of it): {ours:6.1f} photos/s/core")
    print(f"ratio ours / full decode     : {ours/full:6.2f}x   (target >= 2x)")
    fa, oa = alone(full_decode, files, size, reps), alone(pipeline, files, size, reps)
    print(f"check, each alone back to back: full decode {fa:.1f}, ours {oa:.1f} photos/s/core, ratio {oa/fa:.2f}x")

def memory(files, tmp, size, workers):
    "Print the peak memory of a `preprocess` batch of the files, and of 4x as many (the same files under other names)."
    for k in (1, 4):
        d = tmp/f'src{k}'/'train'; d.mkdir(parents=True)
        for r in range(k):
            for f in files: os.symlink(f.resolve(), d/f'{r}{f.name}')
        wall, rss, pss, one = batch(d.parent, tmp/f'out{k}', size, workers)
        n, M = k*len(files), 2**20
        print(f"batch of {n:4d} photos, {workers} workers, with array store: {n/wall:5.1f} photos/s wall (start included); "
              f"peak memory of all processes: RSS {rss/M:.0f} MiB, PSS {pss/M:.0f} MiB; largest process RSS {one/M:.0f} MiB")

@call_parse
def main(src:str=None, # folder of raw photos (default: the real ones, `shared_data('eyepacs-raw/train')`, else synthetic)
         synthetic:store_true=False, # use synthetic full-size frames even when the real photos are there
         size:int=256, # output side in pixels
         reps:int=3, # passes over the photos for the per-core timing
         workers:int=os.cpu_count(), # worker processes for the batch run
        ):
    "Benchmark `eyenet.preprocess` against a plain full PIL decode of the same photos, and measure a batch's peak memory."
    tmp = Path(tempfile.mkdtemp(prefix='eyenet-bench-'))
    try:
        src, what = (Path(src), f'photos in {src}') if src else (None, None) if synthetic else default_src()
        if src is None: src, what = synthetic_src(tmp/'synth')
        files = sorted(p for p in src.iterdir() if p.suffix.lower() in ('.jpeg', '.jpg', '.png', '.tif', '.tiff'))
        mp = sum(Image.open(f).size[0]*Image.open(f).size[1] for f in files)/len(files)/1e6
        mb = sum(f.stat().st_size for f in files)/len(files)/1e6
        print(f"{len(files)} {what}, {mp:.1f} MP and {mb:.1f} MB on average, output {size} px, {os.cpu_count()} cores, "
              f"{psutil.cpu_count(logical=False)} physical; Pillow {Image.__version__}")
        speed(files, size, reps)
        memory(files, tmp, size, workers)
    finally: shutil.rmtree(tmp, ignore_errors=True)
