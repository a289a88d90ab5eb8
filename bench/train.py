"""Training throughput of EyeNetCNN and eyenet-seed at 256 px on this machine's CPU: real loader vs in-memory tensors.

    python bench/train.py [--nets eyenet,eyenet-seed] [--bs 32] [--seed-bs 512] [--chunk 32] [--steps 12]
                          [--seed-steps 1] [--rounds 4] [--num-workers 0] [--amp both|fp32|bf16] [--store DIR]

Each network (and precision) trains in its own process through the same fastai `Learner`
(`eyenet.learner.eyenet_learner`: class-weighted loss, Adam, channels-last) fed two ways:

- real loader: `eyenet_dls` over 256 px JPEGs (decode, fundus augmentations, normalisation; or `--store`'s array);
- in memory: batches that loader already made, held in RAM as normalised tensors (the fastest any loader could be).

The two feeds run in alternating timed blocks (`--rounds` each), so that both see the same machine load, and the
script prints images/s (wall clock), CPU ms per image, the loader/in-memory ratio and the peak RSS (training from
the loader alone, and with the in-memory copy). eyenet-seed trains at `--seed-bs` (512, the original Keras batch):
one optimiser step per 512 photos, the gradient accumulated over chunks of `--chunk` photos (fastai
`GradientAccumulation`), which is the same update as one 512 batch (the network has no BatchNorm) without holding
512 photos' activations at once. `--amp bf16` adds bfloat16 autocast on CPU (`eyenet.learner.CPUBFloat16`).

Reference (issue): the original Keras `cnn.py` trains at 4.45 images/s on 2 cores with 19.8 GiB resident at
batch 512. Targets: eyenet-seed >= 4.45 images/s with <= 9.9 GiB; EyeNetCNN >= 40 images/s on 2 cores through the
real loader, and the loader >= 0.8x the in-memory rate.

Photos: `shared_data('eyepacs-256')` (real EyePACS, 256 px, ../shared/data beside the checkout) when present, else
the synthetic sample cropped to 256 px (labelled synthetic, after a line saying the real photos are absent).
Timings depend on what else runs on the machine: the load average is printed.
"""
import json, os, resource, subprocess, sys, tempfile, time, warnings
from pathlib import Path
from typing import Annotated
from fastcore.script import call_parse
from eyenet.core import shared_data

def gflops(net):
    "GFLOP per image per training step of `net` at 256 px (`eyenet.model.train_gflops`)."
    from eyenet.model import create_model, train_gflops
    return train_gflops(create_model(net, 2, 256), 256)

def photos():
    "Real 256 px photos if present, else the synthetic sample cropped to 256 px."
    real = shared_data('eyepacs-256')
    if real is not None and (real/'trainLabels.csv').exists(): return real, f'real EyePACS 256 px photos ({real})'
    print("bench/train.py: the real photos (../shared/data/eyepacs-256) are absent; using the synthetic sample")
    from eyenet.synthetic import sample_data
    from eyenet.preprocess import preprocess
    d = Path(tempfile.gettempdir())/'eyenet-bench-train-256'
    preprocess(src=sample_data(), dest=d, size=256, workers=0, progress=False)
    return d, 'SYNTHETIC sample cropped to 256 px'

def time_one(a):
    "Run one network/precision in this process, real loader and in-memory blocks interleaved; print a JSON line."
    warnings.filterwarnings('ignore')
    import torch
    from fastai.vision.all import Callback, CancelFitException, DataLoader, GradientAccumulation
    from eyenet.data import read_labels, patient_split, find_labels
    from eyenet.learner import eyenet_dls, eyenet_learner
    from eyenet.model import ARCHS
    data = Path(a['data'])
    df = patient_split(read_labels(find_labels(data), data/'train'))
    chunk = a['chunk'] if a['bs'] > a['chunk'] else a['bs']
    dls = eyenet_dls(df=df, task='dr', size=256, bs=chunk, balance='weights', num_workers=a['num_workers'], store=a['store'],
                     stats=ARCHS[a['net']].stats)
    class Accumulate(GradientAccumulation):
        "fastai's `GradientAccumulation`, counting on across timing blocks."
        def before_fit(self): self.count = getattr(self, 'count', 0)
    cbs = [Accumulate(a['bs'])] if a['bs'] > chunk else []
    learn = eyenet_learner(dls=dls, arch=a['net'], pretrained=False, amp=a['amp'] == 'bf16', cbs=cbs)
    real = dls.train

    class Clock(Callback):
        "Time `n` photos (whole optimiser steps) from the start of the epoch, loading included; then stop."
        order = 99
        def __init__(self, n): self.n = n
        def before_train(self): self.seen, self.t0, self.c0 = 0, time.perf_counter(), time.process_time()
        def after_batch(self):
            self.seen += len(self.learn.yb[0])
            if self.seen >= self.n:
                self.wall, self.cpu = time.perf_counter() - self.t0, time.process_time() - self.c0
                raise CancelFitException()

    def block(dl, n):
        learn.dls.loaders[0] = dl
        clock = Clock(n)
        with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=clock)
        return clock.wall, clock.cpu

    per = max(chunk, a['bs']*a['steps']//a['rounds']//chunk*chunk)   # photos per timed block
    block(real, chunk)                                     # warm up: one chunk through the real loader
    rss_loader = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/2**20
    xs, ys, it = [], [], iter(real)                        # the loader's own batches, kept in RAM
    while sum(map(len, xs)) < per:
        x, y = next(it)
        xs.append(x.as_subclass(torch.Tensor).clone()); ys.append(y.as_subclass(torch.Tensor).clone())
    mem = DataLoader(list(zip(torch.cat(xs), torch.cat(ys))), bs=chunk, shuffle=True, drop_last=True)
    block(mem, chunk)                                      # warm up the in-memory path too
    tot = {'loader': [0., 0.], 'memory': [0., 0.]}
    for r in range(a['rounds']):                           # interleave: both feeds see the same machine load
        for feed, dl in (('loader', real), ('memory', mem)) if r % 2 == 0 else (('memory', mem), ('loader', real)):
            w, c = block(dl, per)
            tot[feed][0] += w; tot[feed][1] += c
    n = per*a['rounds']
    res = {f: dict(ips=n/w, cpu_ms=1e3*c/n) for f, (w, c) in tot.items()}
    print('\n' + json.dumps(dict(a, **res, images=n, rss_loader_gib=rss_loader,
                          rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/2**20, threads=torch.get_num_threads())))

def run(cfg):
    "Run `time_one(cfg)` in a fresh process (this script with `--one`) and return its JSON result."
    r = subprocess.run([sys.executable, __file__, '--one', json.dumps(cfg)], capture_output=True, text=True)
    lines = [l for l in r.stdout.splitlines() if l.startswith('{')]
    if r.returncode or not lines: raise SystemExit(f"bench run {cfg} failed:\n{r.stderr[-3000:]}")
    return json.loads(lines[-1])

def table(rows):
    "Print the runs as one table, with what the ratios mean and the targets."
    print(f"{'network':12s} {'prec':5s} {'batch':>5s} {'loader img/s':>12s} {'memory img/s':>12s} {'ratio':>6s} "
          f"{'CPU ms/img (loader/mem)':>24s} {'CPU ratio':>9s} {'GFLOP/img':>9s} {'peak RSS GiB (loader/+mem)':>27s}")
    for net, amp, bs, r in rows:
        l, m = r['loader'], r['memory']
        print(f"{net:12s} {amp:5s} {bs:5d} {l['ips']:12.2f} {m['ips']:12.2f} {l['ips']/m['ips']:6.2f} "
              f"{l['cpu_ms']:14.1f} / {m['cpu_ms']:6.1f} {m['cpu_ms']/l['cpu_ms']:9.2f} {gflops(net):9.1f} "
              f"{r['rss_loader_gib']:12.2f} / {r['rss_gib']:.2f}")
    print("\nratio: loader images/s over in-memory images/s (wall clock; sensitive to other load on the machine); "
          "CPU ratio: in-memory CPU ms per image over the loader's (what the loader costs, whatever the load).")
    print("\nreference: Keras cnn.py (eyenet-seed) 4.45 images/s, 19.8 GiB at batch 512 on 2 cores. "
          "Targets: eyenet-seed >= 4.45 images/s and <= 9.9 GiB; EyeNetCNN >= 40 images/s through the loader, ratio >= 0.8.")

@call_parse
def main(nets:str='eyenet,eyenet-seed', # comma list of networks to time
         bs:int=32, # batch size of EyeNetCNN
         seed_bs:int=512, # batch size of eyenet-seed (the Keras one)
         chunk:int=32, # photos per forward/backward pass for eyenet-seed
         steps:int=12, # timed optimiser steps of EyeNetCNN, per feed
         seed_steps:int=1, # timed optimiser steps of eyenet-seed, per feed (1-3 min each)
         rounds:int=4, # timed blocks per feed, loader and in-memory alternating
         num_workers:int=0, # data-loader processes (`num_workers` of `eyenet.learner.train`)
         amp:Annotated[str, "precision: fp32, bf16 (bfloat16 autocast on CPU) or both, one after the other",
                       dict(choices=['both', 'fp32', 'bf16'])]='both',
         store:str=None, # array store folder (eyenet-preprocess --store) instead of JPEGs
         one:str=None, # internal: the JSON config of one run, when the script calls itself in a fresh process
        ):
    "Training throughput of EyeNetCNN and eyenet-seed at 256 px on this machine's CPU: real loader vs in-memory tensors."
    if one: return time_one(json.loads(one))
    data, what = photos()
    print(f"bench/train.py: {what}; {os.cpu_count()} CPU cores, torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}; "
          f"load average before: {os.getloadavg()[0]:.1f}")
    from eyenet.learner import resolve_amp
    on, why = resolve_amp('auto')
    print(f"--amp auto (the default of eyenet-train) chooses {'bf16' if on else 'fp32'} on this machine: {why}")
    amps = ['fp32', 'bf16'] if amp == 'both' else [amp]
    rows = []
    for net in nets.split(','):
        nbs, nsteps = (seed_bs, seed_steps) if net == 'eyenet-seed' else (bs, steps)
        for prec in amps:
            r = run(dict(net=net, bs=nbs, chunk=chunk, steps=nsteps, rounds=rounds, num_workers=num_workers, amp=prec,
                         data=str(data), store=store))
            for feed in ('loader', 'memory'):
                print(f"  {net:12s} {prec} bs {nbs:4d} {feed:7s}: {r[feed]['ips']:6.2f} images/s  {r[feed]['cpu_ms']:7.1f} CPU ms/image", flush=True)
            print(f"  {'':12s} peak RSS {r['rss_loader_gib']:.2f} GiB training from the loader, {r['rss_gib']:.2f} GiB with the in-memory copy; "
                  f"{r['images']} timed photos per feed", flush=True)
            rows.append((net, prec, nbs, r))
    print(f"\nload average after: {os.getloadavg()[0]:.1f}\n")
    table(rows)
