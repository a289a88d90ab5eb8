"""Referable DR on real EyePACS photos: what fine-tuning adds over a frozen ImageNet backbone, lever by lever.

    python bench/realdata.py [--rows default,fp32,...|all] [--probes] [--screen] [--head-rows default] [--limit-checks]
                             [--external] [--norms equalize,graham,clahe,none]
                             [--epochs 2] [--num-workers 0] [--target-sens 0.9] [--limit N] [--out results/realdata]

Data: `eyenet.core.shared_data('eyepacs-256')`, the real photos beside the checkout (../shared/data/eyepacs-256:
4,502 EyePACS photos, 256 px, cropped and contrast-equalised), split by patient exactly as `eyenet-train` splits it
(`train_table(data, task='referable')`: `patient_split(valid_pct=0.2, seed=42)`, both eyes together; 3,603 training
and 899 validation photos). Every number is measured on the validation patients; nothing is tuned on them except
the saved operating threshold, which `train` tunes there (its sensitivity/specificity are not reported here).

Two kinds of rows, each with the ROC AUC of referable DR (grade >= 2) per photo and per patient (worse eye), with
patient-bootstrap 95% CIs, the AUC over the photos EyeQ graders call gradable (good or usable), the grade QWK where
the model predicts grades, and the minutes it took on this machine:

* `--probes`: logistic regressions on frozen, global-pooled ImageNet EfficientNet-Lite0/1/2 features
  (`frozen_features`, `linear_probe`: class-balanced logistic regression, its C chosen by 5-fold patient cross-validation on
  the training photos): the floor a fine-tuned recipe must beat, then the levers that cost
  seconds on top of it: five grades (referable = P(grade >= 2)), both eyes (`two_eye_features`), training
  without the photos graders reject (`eyeq-quality.csv`), the three backbones stacked, and mean+max pooling.
  Features are cached in `OUT/features-<arch>-256*.npz`, with the minutes each pass took beside them.
* `--rows`: fine-tuning runs of `eyenet.learner.train`, each one change (`ROWS`) against the `fine-tune` recipe
  (`eyenet-train --task referable --arch effnet-lite0 --recipe fine-tune --size 256 --amp true`: class-weighted loss,
  `fundus_tfms`, lr 2e-3 with fastai's `fine_tune`, 1 frozen epoch, body at lr/100). The row that wins, `lp-ft`, is
  `train`'s default recipe for a pretrained EfficientNet-Lite. `--epochs` sets the schedule of every row: 2 is the short
  schedule the levers are ranked on, 6 the full length. Each row's model goes to `OUT/<row>/` and is scored
  from what was saved; a row whose model and scores are already there is read back, so an interrupted run resumes.
* `--head-rows`: a fine-tuned row's backbone, frozen, under a two-eye logistic head (`frozen_features(model=...)`).
* `--screen`: one decision per patient (as `eyenet-screen` makes it) on the held-out patients, from the probe on frozen
  Lite0 features: the worst-eye rule against a two-eye logistic head, patient-level AUC, sensitivity and specificity at a
  threshold tuned for 90% patient sensitivity on the training patients (out of fold), with patient-bootstrap CIs.
* `--external`: another clinic's camera. Trained on EyePACS only, tested on all 455 IDRiD photos (`shared_data('idrid')`,
  expert grades, one photo per patient): the probe on frozen Lite0 features with every photo in each look of `--norms`
  (`eyenet.preprocess.NORMS`; the EyePACS photos put into it as they load, IDRiD's cropped and normalised by
  `process_photo`), then every `--rows` model in its own look; beside each, the EyePACS validation AUC and the share
  of IDRiD the rule-based gate refuses.
* `--limit-checks`: what holds the AUC back, measured with the probe: a learning curve over the share of training
  patients, and the photos shrunk to 128 and 192 px before the same features.

Every table also gives the AUC of each referable grade (2, 3, 4) against grades 0-1, and each row's AUC minus the
probe floor's and the default's on the same photos (paired patient bootstrap).
Writes `OUT/realdata.json` and prints the table, plain and as markdown (what the README shows). Says so in one line and exits when the data is absent.
`--limit N` keeps about N photos (whole patients) for a quick smoke test.
"""
import json, os, tempfile, time, warnings
from pathlib import Path
import numpy as np, pandas as pd
from fastcore.script import call_parse, store_true
from eyenet.core import shared_data, atomic_write, write_csv

DEFAULT = dict(task='referable', arch='effnet-lite0', size=256, amp='true', balance='weights', recipe='fine-tune') # the base the levers change
ROWS = { # one change each against DEFAULT
    'default':     {},
    'fp32':        dict(amp='false'),                   # bfloat16 autocast off
    'plain-loss':  dict(balance='none'),                # no class weights
    'sampler':     dict(balance='sampler'),             # balanced batches instead of weights
    'lr-find':     dict(find_lr=True),                  # lr_find's minimum instead of 2e-3
    'no-freeze':   dict(freeze_epochs=0),               # no frozen epoch first
    'lr-mult-10':  dict(lr_mult=10),                    # discriminative rates: body at lr/10 instead of lr/100
    'lr-mult-1':   dict(lr_mult=1),                     # body and head at the same rate
    'lp-ft':       dict(recipe='lp-ft'),                # head started from the linear probe (which replaces the frozen epoch), body at lr/10
    'lp-ft-none':  dict(recipe='lp-ft', norm='none'),   # LP-FT on the photos as they come, no photometric normalisation (`NORMS`)
    'no-lighting': dict(tfms=dict(max_lighting=0.)),    # flips, rotation, zoom; photos are already contrast-equalised
    'flips-only':  dict(tfms=dict(max_rotate=0., max_zoom=1., max_lighting=0.)),
    'no-aug':      dict(aug=False),
    'size-224':    dict(size=224),
    'size-288':    dict(size=288),
    'lite1':       dict(arch='effnet-lite1'),
    'lite2':       dict(arch='effnet-lite2'),
    'grade':       dict(task='grade'),                  # five grades; referable = P(grade >= 2)
    'clean':       dict(clean=True),                    # without the photos EyeQ graders reject
}

def subset(data, limit, seed=0):
    "A label CSV of at most `limit` photos of whole patients (`train_sample`), in a temp folder."
    from eyenet.data import read_labels, find_labels
    from eyenet.results import train_sample
    df = train_sample(read_labels(find_labels(data), data/'train'), limit, seed)
    return write_csv(df[['image', 'level']], Path(tempfile.mkdtemp())/'trainLabels.csv')

def split_table(data, labels, quality):
    "The referable table as `eyenet-train` splits it, with the EyeQ grade (NaN where ungraded) of each photo."
    from eyenet.learner import train_table
    from eyenet.data import read_quality
    df = train_table(data, labels, 'referable').reset_index(drop=True)
    q = read_quality(quality).set_index('image')['quality'] if quality is not None and Path(quality).exists() else pd.Series(dtype=float)
    return df.assign(quality=df.image.map(q).astype(float)) # NaN: not graded

def scores(df, p, grades=None, n_boot=1000):
    "Photo and patient AUC (worse eye) with patient-bootstrap CIs, AUC over gradable photos, and the grade QWK."
    from eyenet.metrics import bootstrap_ci, roc_auc, qwk
    from eyenet.results import fuse_eyes
    v = df[df.is_valid].assign(p=np.asarray(p, float), y=lambda d: d.referable.astype(int))
    pat = fuse_eyes(v, 'max')
    g = v.quality.isin([0, 1]).values
    r = dict(auc=bootstrap_ci(v.y.values, v.p.values, v.patient.values, roc_auc, n_boot),
             patient_auc=bootstrap_ci(pat.y.values, pat.p.values, None, roc_auc, n_boot),
             gradable_auc=bootstrap_ci(v.y.values[g], v.p.values[g], v.patient.values[g], roc_auc, n_boot),
             n_valid=len(v), n_patients=len(pat), n_gradable=int(g.sum()), p=[round(float(q), 6) for q in v.p.values])
    if grades is not None: r['qwk'] = qwk(v.level.values.astype(int), np.asarray(grades), 5)
    neg = v.level.values < 2
    r['grade_auc'] = {int(k): dict(n=int((v.level.values == k).sum()), auc=roc_auc(np.r_[np.zeros(neg.sum()), np.ones((v.level.values == k).sum())],
                                                                             np.r_[v.p.values[neg], v.p.values[v.level.values == k]])) for k in (2, 3, 4)}
    return r

def choose_c(x, df, Cs=(0.001, 0.003, 0.01, 0.03, 0.1), k=5):
    "The probe's C with the best referable AUC over `k` patient folds of the training photos (validation untouched)."
    from sklearn.model_selection import GroupKFold
    from eyenet.probe import linear_probe
    from eyenet.metrics import roc_auc
    t = df[~df.is_valid]; xt, y = x[~df.is_valid.values], t.referable.values
    cv = {C: float(np.mean([roc_auc(y[b], linear_probe(C).fit(xt[a], y[a]).predict_proba(xt[b])[:, 1])
                            for a, b in GroupKFold(k).split(xt, y, t.patient)])) for C in Cs}
    print('probe C, cross-validated AUC on the training patients: ' + ', '.join(f'{C:g}: {v:.3f}' for C, v in cv.items()), flush=True)
    return max(cv, key=cv.get), cv

def features(df, cache, **kw):
    "`frozen_features` of every photo of `df`, cached in `cache` (.npz), with the minutes the pass took (kept beside it)."
    from eyenet.probe import frozen_features
    t0, log = time.perf_counter(), Path(cache).with_suffix('.json')
    x = frozen_features(list(df.path), cache=cache, **kw)
    if time.perf_counter() - t0 > 5: log.write_text(json.dumps(dict(minutes=(time.perf_counter() - t0)/60))) # computed, not read back
    return x, json.loads(log.read_text())['minutes'] if log.exists() else float('nan')

def _probe(df, x, C, keep, grade=False):
    "Fit the probe on rows `keep` (referable, or the five grades) and return (validation referable score, grades or None)."
    from eyenet.probe import linear_probe
    from eyenet.metrics import referable_prob
    y = df.level.values if grade else df.referable.values
    pr = linear_probe(C).fit(x[keep], y[keep]).predict_proba(x[df.is_valid.values])
    return (referable_prob(pr), pr.argmax(1)) if grade else (pr[:, 1], None)

def screen_rows(df, out, n_boot=1000):
    "Patient decisions on the held-out patients from the probe on frozen Lite0 features: the worst-eye rule against a two-eye head."
    from sklearn.model_selection import GroupKFold
    from eyenet.probe import linear_probe, two_eye_features
    from eyenet.metrics import roc_auc, binary_metrics, bootstrap_ci, threshold_for_sensitivity
    from eyenet.results import fuse_eyes
    x, _ = features(df, out/'features-effnet-lite0-256.npz')
    C, _ = choose_c(x, df)
    tr, va, y = ~df.is_valid.values, df.is_valid.values, df.referable.values
    pats = lambda m, p: fuse_eyes(pd.DataFrame(dict(patient=df.patient.values[m], y=y[m], p=p)))  # a patient: the worse of its photos
    res, ps = {}, {}
    for name, xx in (('worst eye', x), ('two-eye head', two_eye_features(x, df))):
        oof = np.zeros(tr.sum())
        for a, b in GroupKFold(5).split(xx[tr], y[tr], df.patient.values[tr]):
            oof[b] = linear_probe(C).fit(xx[tr][a], y[tr][a]).predict_proba(xx[tr][b])[:, 1]
        ft = pats(tr, oof)
        thr = threshold_for_sensitivity(ft.y.values, ft.p.values, 0.9).threshold  # on training patients, out of fold
        fv = pats(va, linear_probe(C).fit(xx[tr], y[tr]).predict_proba(xx[va])[:, 1])
        fn = lambda yy, pp, t=thr: dict(auc=roc_auc(yy, pp), **{k: binary_metrics(yy, pp, t)[k] for k in ('recall', 'specificity')})
        ci = bootstrap_ci(fv.y.values, fv.p.values, None, fn, n=n_boot)
        res[name] = dict(threshold=thr, patients=len(fv), referable=int(fv.y.sum()), C=C,
                         **{k: tuple(float(v) for v in ci.loc[k, ['value', 'lo', 'hi']]) for k in ('auc', 'recall', 'specificity')})
        ps[name], yv = fv.p.values, fv.y.values
    d = bootstrap_ci(yv, np.c_[ps['worst eye'], ps['two-eye head']], None, lambda yy, P: roc_auc(yy, P[:, 1]) - roc_auc(yy, P[:, 0]), n=n_boot)
    res['two-eye minus worst eye, AUC (paired)'] = tuple(float(v) for v in d)
    print(f"\npatient decisions, {res['worst eye']['patients']} held-out patients ({res['worst eye']['referable']} referable), "
          f"probe on frozen Lite0 features (C {C:g}); threshold for 90% patient sensitivity on the training patients, out of fold")
    f = lambda t: f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}]"
    for k in ('worst eye', 'two-eye head'):
        r = res[k]; print(f"  {k:13s} AUC {f(r['auc'])}  sensitivity {f(r['recall'])}  specificity {f(r['specificity'])}  (threshold {r['threshold']:.3f})")
    print(f"  two-eye minus worst eye: AUC {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]")
    return res

def probe_rows(df, out, archs, pool='catavgmax'):
    "The linear-probe floor and the levers on frozen features, for each backbone in `archs`, then stacked backbones and another pooling."
    from eyenet.probe import two_eye_features
    rows, tr = [], ~df.is_valid.values
    clean = tr & (df.quality != 2).values
    def add(name, arch, x, C, cv, minutes, keep=tr, grade=False):
        t0 = time.perf_counter()
        p, g = _probe(df, x, C, keep, grade)
        rows.append(dict(row=name, kind='probe', arch=arch, C=C, C_cv=cv, n_train=int(keep.sum()),
                         minutes=round(minutes + (time.perf_counter() - t0)/60, 1), **scores(df, p, g)))
        print(_line(rows[-1]), flush=True)
    xs, mins = [], []
    for arch in archs:
        x, m = features(df, out/f'features-{arch}-256.npz', size=256, arch=arch)
        C, cv = choose_c(x, df)
        x2 = two_eye_features(x, df)
        add(f'probe ({arch})', arch, x, C, cv, m)
        add(f'probe, 5 grades ({arch})', arch, x, C, cv, m, grade=True)
        add(f'probe, both eyes ({arch})', arch, x2, C, cv, m)
        add(f'probe, both eyes, 5 grades ({arch})', arch, x2, C, cv, m, grade=True)
        add(f'probe, without EyeQ rejects ({arch})', arch, x, C, cv, m, keep=clean)
        xs.append(x); mins.append(m)
    if len(archs) > 1:
        x = np.concatenate(xs, 1); C, cv = choose_c(x, df)
        add(f'probe, {"+".join(a[-5:] for a in archs)} stacked', '+'.join(archs), x, C, cv, sum(mins))
        add(f'probe, {"+".join(a[-5:] for a in archs)} stacked, both eyes', '+'.join(archs), two_eye_features(x, df), C, cv, sum(mins))
    x, m = features(df, out/f'features-{archs[0]}-256-{pool}.npz', size=256, arch=archs[0], pool=pool)
    C, cv = choose_c(x, df)
    add(f'probe, {pool} pooling ({archs[0]})', archs[0], x, C, cv, m)
    add(f'probe, {pool} pooling, both eyes ({archs[0]})', archs[0], two_eye_features(x, df), C, cv, m)
    return rows

def _scored(model_dir, df):
    "Validation probabilities of the model saved in `model_dir`, cached beside it."
    from eyenet.model import load_model
    from eyenet.score import score_photos, prob_cols
    fn = Path(model_dir)/'valid_probs.npy'
    if fn.exists(): return np.load(fn)
    model, cfg = load_model(model_dir)
    v = df[df.is_valid] # crops made elsewhere: put into the model's look as they load
    probs = score_photos(model, cfg, list(v.path), preprocessed='none', workers=0, progress=False)[prob_cols(cfg)].values
    atomic_write(fn, lambda f: np.save(open(f, 'wb'), probs))
    return probs

def finetune_row(name, data, labels, quality, df, out, epochs, num_workers, target_sens):
    "Train (or read back) one ablation row and score it."
    from eyenet.learner import train
    from eyenet.metrics import referable_prob
    kw = {**DEFAULT, **ROWS[name]}
    if kw.pop('clean', False): kw['drop_rejects'] = quality
    d = out/name
    done = (d/'metrics.json').exists() and (d/'model.safetensors').exists()
    if not done:
        print(f"\n=== {name}: {ROWS[name] or 'default'}, {epochs} epochs ===", flush=True)
        train(data=data, labels=labels, epochs=epochs, out=d, num_workers=num_workers, target_sens=target_sens,
              note=f'bench/realdata.py row {name}', **kw)
    met = json.loads((d/'metrics.json').read_text())
    probs = _scored(d, df)
    grade = kw['task'] == 'grade'
    r = scores(df, referable_prob(probs) if grade else probs[:, 1], probs.argmax(1) if grade else None)
    return dict(row=name, kind='fine-tune', change=ROWS[name], arch=kw['arch'], size=kw['size'], epochs=met['epochs'],
                freeze_epochs=met['freeze_epochs'], lr=met['lr'], lr_mult=met.get('lr_mult', 100), amp=met['amp'], n_train=met['n_train'],
                minutes=round(met['train_seconds']/60, 1), **r)

def two_eye_head(name, df, out, base):
    "Row `name` with its fine-tuned backbone frozen and a two-eye logistic head on its pooled features."
    from eyenet.probe import linear_probe, two_eye_features
    d = out/name
    x, feat_min = features(df, d/'features.npz', size=base['size'], model=d)
    C, cv = choose_c(x, df)
    x2, tr = two_eye_features(x, df), ~df.is_valid.values
    p = linear_probe(C).fit(x2[tr], df.referable.values[tr]).predict_proba(x2[~tr])[:, 1]
    return dict(base, row=f'{name} + both-eyes head', kind='fine-tune + head', C=C, C_cv=cv,
                minutes=round(base['minutes'] + feat_min, 1), **scores(df, p))

def limits(df, out, fracs=(0.25, 0.5, 1.0), sizes=(128, 192, 256), seeds=(0, 1, 2)):
    "What holds the AUC back, on frozen Lite0 features: fewer training patients, and lower input resolution."
    from eyenet.probe import linear_probe
    from eyenet.metrics import roc_auc
    res, tr, va = dict(data=[], resolution=[]), ~df.is_valid.values, df.is_valid.values
    x, _ = features(df, out/'features-effnet-lite0-256.npz', size=256, arch='effnet-lite0')
    pats = df.patient[tr].unique()
    for f in fracs:
        aucs = []
        for s in (seeds if f < 1 else seeds[:1]):
            keep = tr & df.patient.isin(np.random.default_rng(s).permutation(pats)[:int(round(f*len(pats)))]).values
            aucs.append(roc_auc(df.referable.values[va], linear_probe().fit(x[keep], df.referable.values[keep]).predict_proba(x[va])[:, 1]))
        res['data'].append(dict(share=f, n_train=int(round(f*tr.sum())), auc=float(np.mean(aucs)), auc_sd=float(np.std(aucs)), runs=len(aucs)))
        print(f"probe (effnet-lite0), {f:4.0%} of the training patients: validation AUC {np.mean(aucs):.3f} (sd {np.std(aucs):.3f}, {len(aucs)} draws)", flush=True)
    for sz in sizes:
        xs, _ = features(df, out/f'features-effnet-lite0-{sz}.npz', size=sz, arch='effnet-lite0')
        r = scores(df, linear_probe().fit(xs[tr], df.referable.values[tr]).predict_proba(xs[va])[:, 1])
        res['resolution'].append(dict(size=sz, auc=r['auc']))
        print(f"probe (effnet-lite0), photos shrunk to {sz} px: validation AUC {_ci(r['auc'])}", flush=True)
    return res

FLOOR = 'probe (effnet-lite0)'

def paired(rows, df, ref, n_boot=1000):
    "Each row's photo AUC minus row `ref`'s on the same validation photos, with a paired patient-bootstrap 95% CI."
    from eyenet.metrics import bootstrap_ci, roc_auc
    base = next((r for r in rows if r['row'] == ref), None)
    if base is None: return
    v = df[df.is_valid]
    diff = lambda y, P: roc_auc(y, P[:, 0]) - roc_auc(y, P[:, 1])
    for r in rows:
        if r is not base: r[f'vs {ref}'] = bootstrap_ci(v.referable.values.astype(int), np.c_[r['p'], base['p']], v.patient.values, diff, n_boot)

def _ci(t): return '      -              ' if t is None else f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}]"
def _line(r):
    return (f"{r['row']:42s} {_ci(r['auc'])}  {_ci(r['patient_auc'])}  {_ci(r['gradable_auc'])}  "
            f"{'  -  ' if r.get('qwk') is None else format(r['qwk'], '.3f')}  {r['minutes']:6.1f}  {r['n_train']:5d}").replace('nan', '  -')

def table(rows, epochs):
    "Print the rows as one table."
    print(f"\nreferable DR, real EyePACS photos, validation patients never seen in training; CPU ({os.cpu_count()} cores); "
          f"fine-tuning rows: {epochs} epochs after their frozen ones{' (short schedule)' if epochs < 6 else ''}")
    print(f"{'row':42s} {'photo AUC [95% CI]':21s}  {'patient AUC':21s}  {'gradable-photo AUC':21s}  {'QWK':5s}  {'min':>6s}  {'train':>5s}")
    for r in rows: print(_line(r))
    print(f"\nAUC of each referable grade against grades 0-1 (how well the model finds moderate, severe, proliferative DR):")
    for r in rows: print(f"{r['row']:42s} " + '  '.join(f"grade {k}: {g['auc']:.3f} (n={g['n']})" for k, g in r['grade_auc'].items()))
    for ref in (FLOOR, 'default'):
        if any(f'vs {ref}' in r for r in rows):
            print(f"\nphoto AUC minus that of {ref!r} on the same photos (paired patient bootstrap, 95% CI):")
            for r in rows:
                if f'vs {ref}' in r: d = r[f'vs {ref}']; print(f"{r['row']:42s} {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]")

def markdown(rows, epochs):
    "The rows as the markdown table the README and `04_model` show."
    f = lambda t: '–' if t is None else f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}]"
    out = ['| row | photo AUC [95% CI] | minus the probe floor (paired) | patient AUC | gradable-photo AUC | QWK | minutes |', '|---|---|---|---|---|---|---|']
    for r in rows:
        sched = f" ({r['freeze_epochs']} frozen + {r['epochs']})" if r['kind'] != 'probe' else ''
        d = r.get(f'vs {FLOOR}')
        out.append(f"| {r['row']}{sched} | {f(r['auc'])} | {'–' if d is None else f'{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]'} | {f(r['patient_auc'])} | {f(r['gradable_auc'])} | "
                   f"{'–' if r.get('qwk') is None else format(r['qwk'], '.3f')} | {'–' if r['minutes'] != r['minutes'] else r['minutes']} |")
    return '\n'.join(out)

def _idrid_crops(src, dest, norm):
    "Every IDRiD photo cropped and normalised (`process_photo`, accepted or not) as PNG in `dest`, with the gate's records; cached."
    from eyenet.core import parallel_map
    lab = pd.read_csv(src/'trainLabels.csv')
    fn = dest/'records.csv'
    if not fn.exists():
        dest.mkdir(parents=True, exist_ok=True)
        recs = parallel_map(_crop_one, [(src/'train'/f'{i}.jpeg', dest/f'{i}.png', norm) for i in lab.image], workers=2)
        write_csv(pd.DataFrame(recs), fn)
    return lab.merge(pd.read_csv(fn, keep_default_na=False), on='image').assign(path=lambda d: [str(dest/f'{i}.png') for i in d.image])

def _crop_one(task):
    from eyenet.preprocess import process_photo
    src, out, norm = task
    img, r = process_photo(src, size=256, norm=norm)
    if img is not None: img.save(out)
    return dict(image=Path(src).stem, status=r['status'], reason=r['reason'], gradability=r['gradability'])

def _ext_auc(y, p, n_boot=1000):
    from eyenet.metrics import bootstrap_ci, roc_auc
    return bootstrap_ci(np.asarray(y), np.asarray(p, float), None, roc_auc, n_boot) # one photo per patient

def external_rows(df, out, norms, models=(), n_boot=1000):
    "Train on EyePACS, test on all of IDRiD: the probe on frozen Lite0 features in each look, and saved models; gate refusals on IDRiD."
    from eyenet.probe import linear_probe
    from eyenet.preprocess import NORMS
    idrid = shared_data('idrid')
    if idrid is None: print("bench/realdata.py --external: ../shared/data/idrid is absent; skipped"); return []
    rows, P = [], {}
    for n in norms:
        if n not in NORMS: raise SystemExit(f"bench/realdata.py: unknown norm {n!r}; choose from {', '.join(NORMS)}")
        t0 = time.perf_counter()
        ext = _idrid_crops(idrid, out/f'idrid-256-{n}', n)
        ext = ext[ext.path.map(lambda p: Path(p).exists())]   # a photo without a disc has no crop (none so far)
        x, _ = features(df, out/f'features-effnet-lite0-256-{n}.npz', norm=n)
        xe, _ = features(ext, out/f'features-idrid-256-{n}.npz')
        C, cv = choose_c(x, df)
        tr = ~df.is_valid.values
        pr = linear_probe(C).fit(x[tr], df.referable.values[tr])
        pe = pr.predict_proba(xe)[:, 1]
        P[n] = (ext.level.values >= 2, pe, pr.predict_proba(x[~tr])[:, 1])
        r = dict(row=f'probe, norm {n}', kind='external', norm=n, C=C, minutes=round((time.perf_counter() - t0)/60, 1),
                 **scores(df, pr.predict_proba(x[~tr])[:, 1], n_boot=n_boot),
                 idrid_auc=_ext_auc(ext.level.values >= 2, pe, n_boot), idrid_n=len(ext), idrid_referable=int((ext.level >= 2).sum()),
                 idrid_refused_rules=float((ext.status != 'ok').mean()), idrid_refusal_reasons=ext.reason[ext.status != 'ok'].value_counts().to_dict())
        if n != norms[0]: r['first_minus_this'] = _paired_ext(P[norms[0]], P[n], df, n_boot)
        rows.append(r); print(_ext_line(r), flush=True)
        if n != norms[0]: print(f"    {norms[0]} minus {n}, paired: IDRiD {_ci(r['first_minus_this']['idrid'])}, EyePACS valid {_ci(r['first_minus_this']['eyepacs'])}")
    M = []
    for d in models:
        from eyenet.model import load_model
        from eyenet.preprocess import norm_of
        from eyenet.score import score_photos, prob_cols
        net, cfg = load_model(d)
        n = norm_of(cfg)
        ext = _idrid_crops(idrid, out/f'idrid-256-{n}', n)
        pe = score_photos(net, cfg, list(ext.path), preprocessed=n, workers=0, progress=False)[prob_cols(cfg)[-1]].values
        met, pv = json.loads((Path(d)/'metrics.json').read_text()), _scored(d, df)[:, 1]
        M.append((ext.level.values >= 2, pe, pv))
        r = dict(row=f'{Path(d).name} (norm {n})', kind='external', norm=n, **scores(df, pv, n_boot=n_boot),
                 idrid_auc=_ext_auc(ext.level.values >= 2, pe, n_boot), idrid_n=len(ext), idrid_referable=int((ext.level >= 2).sum()),
                 minutes=round(met['train_seconds']/60, 1), patients=met.get('patients'))
        if len(M) > 1: r['first_minus_this'] = _paired_ext(M[0], M[-1], df, n_boot)
        rows.append(r); print(_ext_line(r), flush=True)
        if len(M) > 1: print(f"    {Path(models[0]).name} minus {Path(d).name}, paired: IDRiD {_ci(r['first_minus_this']['idrid'])}, EyePACS valid {_ci(r['first_minus_this']['eyepacs'])}")
    return rows

def _paired_ext(a, b, df, n_boot=1000):
    "AUC of scores `a` minus scores `b` (`(y_idrid, p_idrid, p_eyepacs_valid)` each), on IDRiD and on the EyePACS validation patients, paired bootstrap."
    from eyenet.metrics import bootstrap_ci, roc_auc
    diff = lambda y, Q: roc_auc(y, Q[:, 0]) - roc_auc(y, Q[:, 1])
    v = df[df.is_valid]
    return dict(idrid=bootstrap_ci(a[0], np.c_[a[1], b[1]], None, diff, n_boot),
                eyepacs=bootstrap_ci(v.referable.values, np.c_[a[2], b[2]], v.patient.values, diff, n_boot))

def _ext_line(r):
    return (f"{r['row']:28s} EyePACS valid AUC {_ci(r['auc'])}  IDRiD AUC {_ci(r['idrid_auc'])} ({r['idrid_n']} photos, {r['idrid_referable']} referable)"
            + (f"  rules refuse {r['idrid_refused_rules']:.1%} of IDRiD" if 'idrid_refused_rules' in r else '') + f"  {r['minutes']} min")

def _jsonable(r): return {k: (list(v) if isinstance(v, tuple) else v) for k, v in r.items()}

@call_parse
def main(data:str=None, # dataset folder (default: the real 256 px photos, `shared_data('eyepacs-256')`)
         rows:str='default', # comma list of fine-tuning rows (names in `ROWS`), or 'all', or '' for none
         probes:store_true=False, # the linear-probe rows on frozen Lite0/1/2 features
         probe_archs:str='effnet-lite0,effnet-lite1,effnet-lite2', # backbones of the probe rows
         head_rows:str='', # comma list of fine-tuning rows to also score with a two-eye logistic head on their frozen backbone
         screen:store_true=False, # patient decisions: the worst-eye rule against a two-eye head, on the probe (`eyenet.screen`'s question)
         limit_checks:store_true=False, # what limits the AUC: probe learning curve over training patients, and input resolution
         external:store_true=False, # train on EyePACS, test on all of IDRiD (`shared_data('idrid')`): the probe in each look of --norms, and every row's model
         norms:str='equalize,graham,clahe,none', # photometric looks (`eyenet.preprocess.NORMS`) the --external probe is measured in
         epochs:int=2, # epochs of every fine-tuning row after its frozen one (2: short schedule; 6: full)
         num_workers:int=0, # data-loader processes
         target_sens:float=0.9, # sensitivity the saved threshold is tuned for (`train`'s `target_sens`)
         quality:str=None, # EyeQ grades (default `shared_data('eyeq-quality.csv')`) for the gradable-photo AUC and the clean row
         limit:int=0, # use about this many photos, whole patients (smoke test); 0: all
         out:str='results/realdata', # folder for realdata.json, the feature caches and the models
        ):
    "Referable DR on real EyePACS photos: linear-probe floor and fine-tuning levers, each on the same held-out patients."
    data = Path(data) if data else shared_data('eyepacs-256')
    if data is None or not (data/'trainLabels.csv').exists():
        return print(f"bench/realdata.py: the real data ({data or '../shared/data/eyepacs-256'}) is absent; nothing to do")
    warnings.filterwarnings('ignore')
    quality = Path(quality) if quality else shared_data('eyeq-quality.csv')
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    labels = subset(data, limit) if limit else None
    df = split_table(data, labels, quality)
    names = list(ROWS) if rows == 'all' else [r for r in rows.split(',') if r]
    bad = [r for r in names if r not in ROWS]
    if bad: raise SystemExit(f"bench/realdata.py: unknown rows {bad}; choose from {', '.join(ROWS)}")
    res, lim = [], {}
    save = lambda: atomic_write(out/'realdata.json', lambda f: f.write_text(json.dumps(
        dict(data=str(data), limit=limit, epochs=epochs, rows=[_jsonable(r) for r in res], limits=lim), indent=2)))
    if probes: res += probe_rows(df, out, probe_archs.split(',')); save()
    if screen: lim['screen'] = screen_rows(df, out); save()
    for name in names:
        res.append(finetune_row(name, data, labels, quality, df, out, epochs, num_workers, target_sens)); save()
        print(_line(res[-1]), flush=True)
        if name in head_rows.split(','):
            res.append(two_eye_head(name, df, out, res[-1])); save()
            print(_line(res[-1]), flush=True)
    if limit_checks: lim.update(limits(df, out))
    if external: lim['external'] = [_jsonable(r) for r in external_rows(df, out, norms.split(','), [out/n for n in names])]; save()
    paired(res, df, FLOOR); paired(res, df, 'default'); save()
    table(res, epochs)
    print('\n' + markdown(res, epochs))
    print(f"\nwrote {out/'realdata.json'}")
