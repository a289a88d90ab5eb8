"""Time from a raw full-size fundus photo on disk to a result (decode, quality gate, crop, model), one core.

Prints p50 / p95 milliseconds per photo for EyeNetCNN and ResNet-18, PyTorch and onnxruntime, with the part spent
before the network (decode + gate + crop + normalise) and in it; then a patient's two photos to a screening
decision with pretrained Lite0 DR and quality models (target p50 <= 250 ms), beside the DR model alone; then the
batch throughput of `predict` on all cores. Target: p50 <= 60 ms for EyeNetCNN on one core.

Photos: `shared_data('eyepacs-raw/train')/*.jpeg` (real EyePACS camera frames, ../shared/data beside the checkout)
when present, else synthetic full-size frames (labelled synthetic; the script says in one line that the real ones are
absent). The networks are untrained (random weights): timing does not depend on them.

    python bench/inference.py [--reps 3] [--size 256] [--n-batch 96]
"""
import os, tempfile, time, warnings
from pathlib import Path
import numpy as np, torch
from fastcore.script import call_parse
from eyenet.core import shared_data
from eyenet.synthetic import synth_fundus, CAMERAS
from eyenet.model import create_model, save_model
from eyenet.score import prep_photo
from eyenet.inference import Predictor, predict, export_onnx

def photos(tmp):
    "Real raw photos if present, else 8 synthetic full-size frames; and a label saying which."
    raw = shared_data('eyepacs-raw/train')
    fns = sorted(raw.glob('*.jpeg')) if raw else []
    if fns: return fns, f'{len(fns)} real EyePACS raw photos ({raw})'
    print("bench/inference.py: the real raw photos (../shared/data/eyepacs-raw/train) are absent; using synthetic frames")
    fns = []
    for i, (w, h) in enumerate(CAMERAS[:8]):
        fn = tmp/f'synth_{i}_{w}x{h}.jpeg'
        synth_fundus(i % 5, size=h, aspect=w/h, seed=i).save(fn, quality=95)
        fns.append(fn)
    return fns, f'{len(fns)} SYNTHETIC full-size frames ({CAMERAS[0][0]}x{CAMERAS[0][1]} to {CAMERAS[7][0]}x{CAMERAS[7][1]})'

def pct(ts): return np.percentile(ts, 50)*1e3, np.percentile(ts, 95)*1e3

def latency(pred, fns, reps):
    "Per-photo wall and CPU seconds of `predict` on one photo, and of its two stages."
    for fn in fns[:2]: predict(model=pred, photos=fn, progress=False)   # warm up
    tot, cpu, prep, net = [], [], [], []
    for _ in range(reps):
        for fn in fns:
            t0, c0 = time.perf_counter(), time.process_time()
            df = predict(model=pred, photos=fn, workers=0, progress=False)
            tot.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
            t0 = time.perf_counter(); _, (x,), _ = prep_photo(fn=fn, cfg=pred.cfg); prep.append(time.perf_counter() - t0)
            if x is not None:
                t0 = time.perf_counter(); pred(x[None]); net.append(time.perf_counter() - t0)
    return tot, cpu, prep, net, df

def patient_pairs(fns):
    "The photos in pairs of one patient's two eyes (Kaggle names), else consecutive pairs."
    from eyenet.data import parse_image_id
    pats = {}
    for f in fns: pats.setdefault(parse_image_id(f)[0], []).append(f)
    return [v for v in pats.values() if len(v) == 2] or [fns[i:i+2] for i in range(0, len(fns) - 1, 2)]

def patient_latency(tmp, fns, reps, size):
    "A patient's two raw photos on disk -> the screening decision (`screen`), one core, with and without the learned quality gate."
    from eyenet.screen import screen
    from eyenet.preprocess import QUALITY_NORM
    pairs = patient_pairs(fns)
    torch.manual_seed(0)
    dr = save_model(create_model(arch='effnet-lite0', n_out=2, size=size), tmp/'lite0-dr', arch='effnet-lite0', task='referable', size=size, threshold=0.5)
    q = save_model(create_model(arch='effnet-lite0', n_out=3, size=size), tmp/'lite0-q', arch='effnet-lite0', task='quality',
                   classes=['good', 'usable', 'reject'], size=size, threshold=0.5, norm=QUALITY_NORM) # as `eyenet-train --task quality` makes it
    pred, qp = Predictor(model=dr, threads=1), Predictor(model=q, threads=1)
    print(f"\none core: a patient's two raw photos on disk -> the screening decision (`screen`), pretrained EfficientNet-Lite0 "
          f"(untrained heads), {reps} x {len(pairs)} patients")
    print(f"{'models':<28}{'p50 ms':>8}{'p95 ms':>8}")
    for name, quality in (('DR + learned quality gate', qp), ('DR alone (rule gate only)', None)):
        screen(model=pred, photos=pairs[0], quality_model=quality)          # warm up
        ts = []
        for _ in range(reps):
            for pr in pairs:
                t0 = time.perf_counter(); res = screen(model=pred, photos=pr, quality_model=quality); ts.append(time.perf_counter() - t0)
        assert len(res) == 1 and res.decision.iloc[0] in ('refer', 'rescreen', 'retake')
        p50, p95 = pct(ts)
        print(f"{name:<28}{p50:8.1f}{p95:8.1f}")

def models(tmp, size):
    "Untrained EyeNetCNN and ResNet-18 saved (safetensors + ONNX) under `tmp`: {arch: folder}."
    dirs = {}
    for arch in ('eyenet', 'resnet18'):
        torch.manual_seed(0)
        net = create_model(arch=arch, n_out=2, size=size, pretrained=False)
        dirs[arch] = save_model(net, tmp/arch, arch=arch, task='referable', size=size)
        export_onnx(model=dirs[arch])
    return dirs

def throughput(dirs, fns, n_batch, ncpu):
    "Photos per second of `predict` on all cores, each network and backend."
    batch = (fns*(n_batch//len(fns) + 1))[:n_batch]
    print(f"\nall {ncpu} cores: predict() on {len(batch)} photos, bs=16, preprocessing in {ncpu} processes")
    print(f"{'network':<10}{'backend':<9}{'photos/s':>9}{'ms/photo':>10}")
    for arch, d in dirs.items():
        for backend in ('torch', 'onnx'):
            pred = Predictor(model=d, backend=backend)
            predict(model=pred, photos=batch[:ncpu*2], bs=16, progress=False)      # warm up the pool path
            t0 = time.perf_counter(); df = predict(model=pred, photos=batch, bs=16, progress=False); dt = time.perf_counter() - t0
            assert len(df) == len(batch)
            print(f"{'EyeNetCNN' if arch == 'eyenet' else arch:<10}{backend:<9}{len(batch)/dt:9.1f}{dt/len(batch)*1e3:10.1f}")

@call_parse
def main(reps:int=3, # passes over the photos for the latency percentiles
         size:int=256, # network input side
         n_batch:int=96, # photos in the throughput run (the set repeated)
        ):
    "Time from a raw full-size fundus photo on disk to a result (decode, quality gate, crop, model), one core."
    warnings.simplefilter('ignore', FutureWarning)
    tmp = Path(tempfile.mkdtemp())
    fns, what = photos(tmp)
    ncpu = os.cpu_count()
    print(f"photos: {what}\nnetworks: untrained (random weights), task referable, {size} px input")
    print(f"machine: {ncpu} cores, load average at start {os.getloadavg()[0]:.1f} (other processes share the cores)\n")
    dirs = models(tmp, size)
    print(f"one core (torch.set_num_threads(1), onnxruntime intra_op 1): photo on disk -> result, {reps} x {len(fns)} photos")
    print(f"{'network':<10}{'backend':<9}{'p50 ms':>8}{'p95 ms':>8}{'CPU p50':>9}{'prep p50':>10}{'model p50':>11}")
    torch.set_num_threads(1)
    for arch, d in dirs.items():
        for backend in ('torch', 'onnx'):
            pred = Predictor(model=d, backend=backend, threads=1)
            tot, cpu, prep, net, _ = latency(pred, fns, reps)
            p50, p95 = pct(tot)
            print(f"{'EyeNetCNN' if arch == 'eyenet' else arch:<10}{backend:<9}{p50:8.1f}{p95:8.1f}{np.median(cpu)*1e3:9.1f}"
                  f"{np.median(prep)*1e3:10.1f}{np.median(net)*1e3:11.1f}")
    patient_latency(tmp, fns, reps, size)
    torch.set_num_threads(ncpu)
    throughput(dirs, fns, n_batch, ncpu)
    print(f"\nload average at end {os.getloadavg()[0]:.1f}; target p50 <= 60 ms for EyeNetCNN on one core")
