"""Train EyeNet networks on real EyePACS photos on CPU and report what they reach on patients they never saw.

    python bench/realdata.py [--archs eyenet,resnet18,effnet-lite0] [--tasks dr,referable] [--epochs 4]
                             [--size 256] [--sizes effnet-lite0=224] [--bs 32] [--workers 0]
                             [--limit N] [--amp] [--balance weights|sampler|none] [--out results/realdata]

Data: ../shared/data/eyepacs-256 (4,502 real EyePACS photos, 256 px, cropped and contrast-equalised), split by
patient (`eyenet.data.patient_split`, 20% of patients held out, both eyes together). Each (arch, task) is trained
with `eyenet.model.train` (class-weighted loss, fundus augmentations, one-cycle; `fine_tune` for ImageNet
backbones) and scored on the held-out patients: ROC AUC, sensitivity and specificity at the 0.5 threshold for
`dr` / `referable`, quadratic weighted kappa (and accuracy) for `grade`, with the training time. Nothing is tuned
on the held-out patients. torchvision ResNets start from ImageNet weights only when they are in the torch hub
cache (this machine is offline); otherwise they train from scratch, and the table says so.

Writes `OUT/realdata.json` (one record per run, with the full metrics.json of each) and each model to
`OUT/<arch>-<task>/`. Exits quietly when the data is absent. `--limit N` keeps about N photos (whole patients)
for a quick smoke test.
"""
import argparse, json, os, sys, tempfile, time, warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent/'shared'/'data'/'eyepacs-256'

def subset(data, limit, seed=0):
    "A label CSV with about `limit` photos, whole patients, in a temp folder."
    import pandas as pd
    from eyenet.data import read_labels, find_labels
    df = read_labels(find_labels(data), data/'train')
    pats = df.patient.drop_duplicates().sample(frac=1, random_state=seed)
    keep = set(pats.iloc[:max(2, limit//2)])
    fn = Path(tempfile.mkdtemp())/'trainLabels.csv'
    df[df.patient.isin(keep)][['image', 'level']].to_csv(fn, index=False)
    return fn

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--data', default=str(DATA))
    ap.add_argument('--archs', default='eyenet,resnet18,effnet-lite0')
    ap.add_argument('--tasks', default='dr,referable', help="comma list of dr, referable, grade (grade: 5 classes), grade-reg (regression)")
    ap.add_argument('--epochs', type=int, default=4)
    ap.add_argument('--size', type=int, default=256)
    ap.add_argument('--sizes', default='effnet-lite0=224', help='per-arch sizes, e.g. effnet-lite0=224,resnet18=256')
    ap.add_argument('--bs', type=int, default=32)
    ap.add_argument('--lr', type=float, default=None)
    ap.add_argument('--workers', type=int, default=0)
    ap.add_argument('--amp', action='store_true', help="bfloat16 autocast on CPU (1.2-1.9x faster on this machine's AVX-512 BF16 CPU)")
    ap.add_argument('--balance', default='weights', help='weights (class-weighted loss), sampler or none')
    ap.add_argument('--limit', type=int, default=0, help='use about this many photos (smoke test); 0: all')
    ap.add_argument('--out', default='results/realdata')
    a = ap.parse_args()
    data = Path(a.data)
    if not (data/'trainLabels.csv').exists():
        print(f"bench/realdata.py: {data} not found; nothing to do (the real photos are not part of the project)")
        return
    warnings.filterwarnings('ignore')
    from eyenet.model import train, has_weights
    sizes = {k: int(v) for k, v in (kv.split('=') for kv in a.sizes.split(',') if kv)}
    labels = subset(data, a.limit) if a.limit else None
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    runs = []
    for arch in a.archs.split(','):
        for task in a.tasks.split(','):
            reg = task == 'grade-reg'
            t = 'grade' if reg else task
            size = sizes.get(arch, a.size)
            print(f"\n=== {arch} / {task} at {size} px, {a.epochs} epochs ===", flush=True)
            t0 = time.perf_counter()
            learn, met = train(data, labels, task=t, arch=arch, size=size, epochs=a.epochs, bs=a.bs, lr=a.lr,
                               out=out/f'{arch}-{task}', fallback=True, regression=reg, num_workers=a.workers, amp=a.amp or None,
                               balance=None if a.balance == 'none' else a.balance,
                               note='real EyePACS 256 px' + (f' (subset of {a.limit})' if a.limit else ''))
            v = met['valid']
            runs.append(dict(arch=arch, task=task, size=size, epochs=a.epochs, pretrained=met['pretrained'], amp=a.amp, balance=a.balance,
                             auc=v.get('auc'), sensitivity=v.get('sensitivity'), specificity=v.get('specificity'),
                             qwk=v.get('qwk'), accuracy=v.get('accuracy'), n_train=met['n_train'], n_valid=met['n_valid'],
                             train_minutes=round(met['train_seconds']/60, 1), wall_minutes=round((time.perf_counter()-t0)/60, 1),
                             metrics=met))
            (out/'realdata.json').write_text(json.dumps(dict(data=str(data), limit=a.limit, runs=runs), indent=2))
    f = lambda v: '   -  ' if v is None else f'{v:6.3f}'
    print(f"\nreal EyePACS photos, patient-level split; validation = patients never seen in training; CPU ({os.cpu_count()} cores)")
    print(f"{'arch':13s} {'task':10s} {'px':>4s} {'ep':>3s} {'ImageNet':>8s} {'AUC':>6s} {'sens':>6s} {'spec':>6s} {'QWK':>6s} {'train min':>9s} {'n train/valid':>14s}")
    for r in runs:
        print(f"{r['arch']:13s} {r['task']:10s} {r['size']:4d} {r['epochs']:3d} {str(r['pretrained']):>8s} {f(r['auc'])} "
              f"{f(r['sensitivity'])} {f(r['specificity'])} {f(r['qwk'])} {r['train_minutes']:9.1f} {r['n_train']:7d}/{r['n_valid']}")
    print(f"\nwrote {out/'realdata.json'}")

if __name__ == '__main__': main()
