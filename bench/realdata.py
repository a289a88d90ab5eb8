"""Train EyeNet networks on real EyePACS photos on CPU and report what they reach on patients they never saw.

    python bench/realdata.py [--archs eyenet,resnet18,effnet-lite0] [--tasks dr,referable] [--epochs 4]
                             [--size 256] [--sizes effnet-lite0=224] [--bs 32] [--num-workers 0] [--target-sens 0.9]
                             [--limit N] [--amp] [--balance weights|sampler|none] [--out results/realdata]

Data: `eyenet.data.shared_data('eyepacs-256')`, the real photos beside the checkout (../shared/data/eyepacs-256:
4,502 real EyePACS photos, 256 px, cropped and contrast-equalised), split by patient (`eyenet.data.patient_split`,
20% of patients held out, both eyes together). Each (arch, task) is trained with `eyenet.model.train`
(class-weighted loss, fundus augmentations, one-cycle; `fine_tune` for ImageNet backbones) and scored on the
held-out patients: ROC AUC for `dr` / `referable`, with sensitivity and specificity at the operating threshold
`train` tunes on those same patients for `--target-sens` (so they describe that operating point, not an independent
estimate of it); quadratic weighted kappa (and accuracy) for `grade`; and the training time. torchvision ResNets
start from ImageNet weights only when they are in the torch hub cache (this machine is offline); otherwise they
train from scratch, and the table says so.

Writes `OUT/realdata.json` (one record per run, with the full metrics.json of each) and each model to
`OUT/<arch>-<task>/`. Says so in one line and exits when the data is absent. `--limit N` keeps about N photos
(whole patients) for a quick smoke test.
"""
import json, os, tempfile, time, warnings
from pathlib import Path
from fastcore.script import call_parse, store_true
from eyenet.data import shared_data, atomic_write, write_csv

def subset(data, limit, seed=0):
    "A label CSV with about `limit` photos, whole patients, in a temp folder."
    from eyenet.data import read_labels, find_labels
    df = read_labels(find_labels(data), data/'train')
    pats = df.patient.drop_duplicates().sample(frac=1, random_state=seed)
    keep = set(pats.iloc[:max(2, limit//2)])
    fn = Path(tempfile.mkdtemp())/'trainLabels.csv'
    return write_csv(df[df.patient.isin(keep)][['image', 'level']], fn)

def fit(data, labels, arch, task, size, epochs, bs, lr, num_workers, amp, balance, target_sens, limit, out):
    "Train one (arch, task) with `eyenet.model.train` and return its record for realdata.json."
    from eyenet.model import train
    reg = task == 'grade-reg'
    print(f"\n=== {arch} / {task} at {size} px, {epochs} epochs ===", flush=True)
    t0 = time.perf_counter()
    learn, met = train(data=data, labels=labels, task='grade' if reg else task, arch=arch, size=size, epochs=epochs, bs=bs,
                       lr=lr, out=out/f'{arch}-{task}', fallback=True, regression=reg, num_workers=num_workers,
                       amp=amp or None, balance=balance, target_sens=target_sens,
                       note='real EyePACS 256 px' + (f' (subset of {limit})' if limit else ''))
    v = met['valid']
    return dict(arch=arch, task=task, size=size, epochs=epochs, pretrained=met['pretrained'], amp=amp, balance=balance,
                auc=v.get('roc_auc'), threshold=v.get('threshold'), sensitivity=v.get('recall'), specificity=v.get('specificity'),
                qwk=v.get('qwk'), accuracy=v.get('accuracy'), n_train=met['n_train'], n_valid=met['n_valid'],
                train_minutes=round(met['train_seconds']/60, 1), wall_minutes=round((time.perf_counter()-t0)/60, 1),
                metrics=met)

def table(runs):
    "Print the runs as one table."
    f = lambda v: '   -  ' if v is None else f'{v:6.3f}'
    print(f"\nreal EyePACS photos, patient-level split; validation = patients never seen in training; CPU ({os.cpu_count()} cores)")
    print(f"{'arch':13s} {'task':10s} {'px':>4s} {'ep':>3s} {'ImageNet':>8s} {'AUC':>6s} {'thr':>6s} {'sens':>6s} {'spec':>6s} {'QWK':>6s} {'train min':>9s} {'n train/valid':>14s}")
    for r in runs:
        print(f"{r['arch']:13s} {r['task']:10s} {r['size']:4d} {r['epochs']:3d} {str(r['pretrained']):>8s} {f(r['auc'])} {f(r['threshold'])} "
              f"{f(r['sensitivity'])} {f(r['specificity'])} {f(r['qwk'])} {r['train_minutes']:9.1f} {r['n_train']:7d}/{r['n_valid']}")

@call_parse
def main(data:str=None, # dataset folder (default: the real 256 px photos, `shared_data('eyepacs-256')`)
         archs:str='eyenet,resnet18,effnet-lite0', # comma list of networks (names in `eyenet.model.ARCHS`)
         tasks:str='dr,referable', # comma list of dr, referable, grade (grade: 5 classes), grade-reg (regression)
         epochs:int=4, # training epochs
         size:int=256, # network input side in pixels
         sizes:str='effnet-lite0=224', # per-arch sizes, e.g. effnet-lite0=224,resnet18=256
         bs:int=32, # batch size
         lr:float=None, # peak learning rate (default: `train`'s)
         num_workers:int=0, # data-loader processes (`num_workers` of `eyenet.model.train`)
         amp:store_true=False, # bfloat16 autocast on CPU (1.2-1.9x faster on this machine's AVX-512 BF16 CPU)
         balance:str='weights', # weights (class-weighted loss), sampler or none
         target_sens:float=0.9, # dr / referable: sensitivity the saved threshold is tuned for (`train`'s `target_sens`)
         limit:int=0, # use about this many photos, whole patients (smoke test); 0: all
         out:str='results/realdata', # folder for realdata.json and the models
        ):
    "Train EyeNet networks on real EyePACS photos on CPU and report what they reach on patients they never saw."
    data = Path(data) if data else shared_data('eyepacs-256')
    if data is None or not (data/'trainLabels.csv').exists():
        return print(f"bench/realdata.py: the real data ({data or '../shared/data/eyepacs-256'}) is absent; nothing to do")
    warnings.filterwarnings('ignore')
    sz = {k: int(v) for k, v in (kv.split('=') for kv in sizes.split(',') if kv)}
    labels = subset(data, limit) if limit else None
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    runs = []
    for arch in archs.split(','):
        for task in tasks.split(','):
            runs.append(fit(data, labels, arch, task, sz.get(arch, size), epochs, bs, lr, num_workers, amp, balance,
                            target_sens, limit, out))
            res = json.dumps(dict(data=str(data), limit=limit, runs=runs), indent=2)
            atomic_write(out/'realdata.json', lambda f: f.write_text(res))
    table(runs)
    print(f"\nwrote {out/'realdata.json'}")
