"""Imageability on real photos: EyeNet's learned quality model against the rule-based gate and a linear probe, on held-out patients.

    python bench/quality.py [--epochs 4] [--size 256] [--arch effnet-lite0] [--amp auto] [--recipe fine-tune] [--out results/quality] [--skip_train]

Data: `shared_data('eyepacs-256')` (4,502 EyePACS photos, 256 px, cropped and contrast-equalised), the EyeQ human
quality grades `shared_data('eyeq-quality.csv')` (0 good, 1 usable, 2 reject; 1,642 of the 256 px photos are graded)
and the 24 raw camera photos `shared_data('eyepacs-raw')`. Patients are split as for every EyeNet task
(`patient_split(valid_pct=0.2, seed=42)` of the whole DR table), so the held-out patients are those a DR model
trained by `eyenet-train` never saw. Everything reported below is measured on those held-out patients; every
threshold is chosen on the training patients only (out-of-fold for the probe), except where a line says otherwise.

In one run, side by side:
1. the rule-based gate (`process_photo`: its verdict, and its `gradability` score);
2. the simplest learned baseline: a logistic regression on frozen ImageNet EfficientNet-Lite0 features (global-pooled);
3. EyeNet's learned quality model, trained by `eyenet.learner.train(task='quality')` and scored by `eyenet.results.evaluate`;
4. the referable-DR AUC (linear probe on the same frozen features) on photos graders call good/usable vs reject
   (`eyenet.results.auc_by_quality`, as `05_results` shows it);
5. the gate's verdicts on the raw camera photos against their EyeQ grades.

Writes `OUT/quality.json` and prints a table. Exits with one line when the real data is absent.
"""
import json, time, warnings
from pathlib import Path
import numpy as np, pandas as pd
from fastcore.script import call_parse, store_true

def _oof(x, y, groups, C=0.05, k=5):
    "Out-of-fold probe scores over patient folds (to choose a threshold without touching held-out patients)."
    from sklearn.model_selection import GroupKFold
    from eyenet.probe import linear_probe
    s = np.zeros(len(y))
    for tr, te in GroupKFold(k).split(x, y, groups): s[te] = linear_probe(C, scale=True).fit(x[tr], y[tr]).predict_proba(x[te])[:, 1]
    return s

def gate_rates(p_reject, quality, thr, groups, n_boot=1000):
    "Rejects caught and good photos refused when a bare reject score (rules, probe) refuses at `thr`: `quality_cis` of it."
    from eyenet.results import quality_cis
    p = np.asarray(p_reject, float)
    ci = quality_cis(quality, np.c_[1 - p, np.zeros_like(p), p], groups, thr, n_boot)
    return dict(threshold=thr, **{k: (ci[k]['value'], ci[k]['lo'], ci[k]['hi']) for k in ('caught', 'good_refused')})

def auc_ci(y, p, groups, n_boot=1000):
    from eyenet.metrics import bootstrap_ci, roc_auc
    return bootstrap_ci(np.asarray(y), np.asarray(p, float), groups, roc_auc, n_boot)

def _fmt(ci): return f"{ci[0]:.3f} [{ci[1]:.3f}, {ci[2]:.3f}]"

def _rule_scores(paths):
    "Rule-based gate on each photo: (status, reason, gradability)."
    from eyenet.preprocess import process_photo
    rows = []
    for p in paths:
        _, r = process_photo(p, size=256)
        rows.append((r['status'], r['reason'], r['gradability']))
    return pd.DataFrame(rows, columns=['status', 'reason', 'gradability'])

@call_parse
def main(epochs:int=4, # epochs of the learned quality model (after the recipe's frozen ones)
         size:int=256, # input side of the learned model
         arch:str='effnet-lite0', # backbone of the learned model
         bs:int=32, # batch size
         amp:str='auto', # mixed precision: auto (a GPU, or a CPU with native bfloat16), true or false
         recipe:str='fine-tune', # training recipe of the learned model (`eyenet.learner.RECIPES`); the README's figures: fine-tune
         skip_train:store_true=False, # only the baselines (rule-based gate, linear probe)
         model:str=None, # an already trained quality model folder to score instead of training one
         n_boot:int=1000, # bootstrap resamples
         out:str='results/quality', # output folder
        ):
    "Imageability on real photos: learned quality model vs rule-based gate vs linear probe, on held-out patients."
    from eyenet.core import shared_data
    from eyenet.data import read_labels, find_labels, patient_split
    from eyenet.metrics import refusal_threshold
    from eyenet.probe import linear_probe
    data, eyeq, raw = shared_data('eyepacs-256'), shared_data('eyeq-quality.csv'), shared_data('eyepacs-raw')
    if data is None or eyeq is None:
        print("bench/quality.py: the real photos or EyeQ grades (../shared/data) are absent; nothing to do"); return
    warnings.filterwarnings('ignore')
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    res = dict(data=str(data), labels=str(eyeq))
    df = patient_split(read_labels(find_labels(data), data/'train', quality=eyeq), valid_pct=0.2, seed=42)
    df['quality'] = df['quality'].astype(float) # EyeQ grade, NaN where the photo has none
    from eyenet.probe import frozen_features
    x = frozen_features(df['path'].tolist(), 256, cache=out/'lite0-features.npz')
    tr, va = ~df.is_valid.values, df.is_valid.values
    g = df['quality'].notna().values
    res['n'] = dict(graded_train=int((tr&g).sum()), graded_valid=int((va&g).sum()), valid_patients=int(df[va&g].patient.nunique()),
                    rejects_valid=int((df.quality[va&g] == 2).sum()), good_valid=int((df.quality[va&g] == 0).sum()))
    print(f"graded photos: {res['n']['graded_train']} training, {res['n']['graded_valid']} held-out "
          f"({res['n']['valid_patients']} patients; {res['n']['rejects_valid']} rejects, {res['n']['good_valid']} good)")
    qt, qv = df[tr&g], df[va&g]
    yt, yv = (qt.quality == 2).astype(int).values, (qv.quality == 2).astype(int).values

    # 1. the rule-based gate
    t0 = time.perf_counter()
    rt, rv = _rule_scores(qt.path.tolist()), _rule_scores(qv.path.tolist())
    thr = refusal_threshold(qt.quality.values, 1 - rt.gradability.values)
    res['rules'] = dict(auc=auc_ci(yv, 1 - rv.gradability.values, qv.patient.values, n_boot),
                        verdict_caught=float((rv.status[yv == 1] != 'ok').mean()), verdict_good_refused=float((rv.status[qv.quality.values == 0] != 'ok').mean()),
                        at_threshold=gate_rates(1 - rv.gradability.values, qv.quality.values, thr, qv.patient.values, n_boot),
                        reasons=rv.reason[rv.status != 'ok'].value_counts().to_dict(), seconds=round(time.perf_counter() - t0, 1))

    # 2. linear probe on frozen Lite0 features: reject vs rest, threshold out-of-fold on training patients
    pr = linear_probe(0.05, scale=True).fit(x[tr&g], yt)
    pv = pr.predict_proba(x[va&g])[:, 1]
    thr = refusal_threshold(qt.quality.values, _oof(x[tr&g], yt, qt.patient.values))
    res['probe'] = dict(auc=auc_ci(yv, pv, qv.patient.values, n_boot), at_threshold=gate_rates(pv, qv.quality.values, thr, qv.patient.values, n_boot))

    # 4. referable DR on photos graders call gradable vs reject (probe trained on every training photo)
    dr = linear_probe(0.01, scale=True).fit(x[tr], df.referable.values[tr])
    pd_v = dr.predict_proba(x[va])[:, 1]
    from eyenet.results import auc_by_quality  # the same numbers `05_results` shows
    dv = df[va].assign(**{'p_non-referable': 1 - pd_v, 'p_referable': pd_v})
    res['dr_by_quality'] = auc_by_quality(dv, dict(task='referable', classes=['non-referable', 'referable']), n_boot)
    res['dr_probe_all'] = auc_ci(dv.referable.values, pd_v, dv.patient.values, n_boot) # every held-out photo: the floor a DR model must beat

    # 3. the learned quality model
    if not skip_train or model:
        from eyenet.learner import train
        from eyenet.results import evaluate
        if model is None:
            t0 = time.perf_counter()
            _, met = train(data, labels=eyeq, task='quality', arch=arch, size=size, epochs=epochs, bs=bs, amp=amp, recipe=recipe,
                           out=out/'model', note='real EyePACS 256 px, EyeQ grades')
            model = out/'model'
            res['learned_train'] = dict(minutes=round((time.perf_counter() - t0)/60, 1), valid=met.get('valid'))
        ev = evaluate(model, data, labels=eyeq, out=out/'eval', preprocessed=True, n_boot=n_boot, progress=False) # the 256 px photos are crops already
        res['learned'] = ev.get('quality', ev)
        res['learned_model'] = str(model)

    # 5. the raw camera photos
    if raw is not None:
        rr = read_labels(find_labels(raw), raw/'train', quality=eyeq)
        rs = _rule_scores(rr.path.tolist())
        rr = rr.assign(quality=rr.quality.astype(float), status=rs.status.values, reason=rs.reason.values, gradability=rs.gradability.values)
        if model is not None:
            from eyenet.inference import predict
            pq = predict(model, rr.path.tolist(), progress=False)
            rr['p_reject'] = pq.assign(image=pq.photo.map(lambda s: Path(s).stem)).set_index('image')['p_reject'].reindex(rr.image).values if 'p_reject' in pq else np.nan
        res['raw'] = rr.drop(columns=['path']).to_dict('records')

    (out/'quality.json').write_text(json.dumps(res, indent=2, default=float))
    print(f"\nreject vs rest on held-out patients (ROC AUC [95% CI]; caught / good refused at the threshold chosen on training patients)")
    for k in ('rules', 'probe'):
        a = res[k]['at_threshold']
        print(f"  {k:8s} AUC {_fmt(res[k]['auc'])}; threshold {a['threshold']:.3f}: caught {_fmt(a['caught'])}, good refused {_fmt(a['good_refused'])}")
    print(f"  rules' own verdicts today: caught {res['rules']['verdict_caught']:.3f}, good refused {res['rules']['verdict_good_refused']:.3f}")
    if 'learned' in res: print(f"  learned: {json.dumps(res['learned'], default=float)[:600]}")
    print(f"\nreferable DR AUC, linear probe on frozen features, all {len(dv)} held-out photos: {_fmt(res['dr_probe_all'])}")
    print("\nreferable DR AUC (linear probe on frozen features), held-out patients, by human quality grade:")
    for k in ('good or usable', 'reject', 'good', 'usable'):
        v = res['dr_by_quality'][k]; a = v['roc_auc']
        print(f"  {k:15s} n={v['n']:4d} referable={v['positives']:3d} AUC {_fmt((a['value'], a['lo'], a['hi']))}")
    d = res['dr_by_quality']['difference']; print(f"  difference      {_fmt((d['value'], d['lo'], d['hi']))}")
    if 'raw' in res:
        print("\nraw camera photos: EyeQ grade vs the gate")
        for r in res['raw']: print(f"  {r['image']:12s} EyeQ {r['quality'] if r['quality'] == r['quality'] else '-'}  rules {r['status']:8s} {r['reason']:14s} gradability {r['gradability']:.3f}" + (f"  p_reject {r['p_reject']:.3f}" if 'p_reject' in r else ''))
    print(f"\nwrote {out/'quality.json'}")
