"""Imageability on real photos: EyeNet's learned quality model against the rule-based gate and a linear probe, on held-out patients.

    python bench/quality.py [--epochs 4] [--size 256] [--arch effnet-lite0] [--amp auto] [--recipe fine-tune] [--out results/quality] [--skip-train]
                             [--model DIR] [--norms equalize,red-free,none,graham,clahe] [--shared DR_MODEL]
                             [--norm LOOK] [--refused-of good|gradable] [--max-refused 0.05] [--no-grade-balance] [--dr-model DIR]

Data: `shared_data('eyepacs-256')` (4,502 EyePACS photos, 256 px, cropped and contrast-equalised), the EyeQ human
quality grades `shared_data('eyeq-quality.csv')` (0 good, 1 usable, 2 reject; 1,642 of the 256 px photos are graded)
and the 24 raw camera photos `shared_data('eyepacs-raw')`. Patients are split as for every EyeNet task
(`patient_split(valid_pct=0.2, seed=42)` of the whole DR table), so the held-out patients are those a DR model
trained by `eyenet-train` never saw. Everything reported below is measured on those held-out patients; every
threshold is chosen on the training patients only (out-of-fold for the probe), except where a line says otherwise.

In one run, side by side:
1. the rule-based gate (`process_photo`: its verdict, and its `gradability` score);
2. the simplest learned baseline: a logistic regression on frozen ImageNet EfficientNet-Lite0 features (global-pooled);
   with `--shared`, the same probe on a DR model's fine-tuned backbone: could one backbone serve both heads?
3. EyeNet's learned quality model, trained by `eyenet.learner.train(task='quality')` and scored by `eyenet.results.evaluate`;
4. the referable-DR AUC (linear probe on the same frozen features) on photos graders call good/usable vs reject
   (`eyenet.results.auc_by_quality`, as `05_results` shows it);
5. the gate's verdicts on the raw camera photos against their EyeQ grades;
6. another clinic's camera, `shared_data('idrid')` (455 photos, every one graded by experts): the share each gate refuses;
7. with `--norms`: the probe gate with every photo in each photometric look, on IDRiD and the raw photos (features shared with `bench/realdata.py --external`);
8. where disease and a bad photo go together: the share of photos graders rejected at each DR grade, and each gate's refusals by
   DR grade (held-out good or usable photos, and IDRiD).
9. the learned gate in the screening pipeline, beside a DR model (`--dr-model`, default: an LP-FT referable model with 0
   epochs, the probe as a network, trained here): a photo the gate refuses but the DR model is sure is referable
   (`refer_anyway`, specificity 99% on its validation patients) is referred instead of refused. Held-out graded photos,
   IDRiD and the raw photos: refused, referred anyway (and how many of those are referable), by DR grade; with the rules
   beside, as `predict` runs them (the learned gate decides the photos the rules refuse by a photographic margin alone,
   `eyenet.score.MARGIN`), and as it was before, every rule refusal kept.

Every threshold refuses at most `--max-refused` of the `--refused-of` photos of the training patients ('good', or 'gradable':
good or usable), the learned model's on its validation patients as `eyenet-train` tunes it (defaults: `eyenet-train`'s).

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

def probe_gate(x, quality, groups, C=0.05, max_refused=0.1, of='good'):
    "The reject-vs-rest probe fitted on the features `x` of graded photos, and its threshold chosen out of fold over patient `groups` (`refusal_threshold`)."
    from eyenet.probe import linear_probe
    from eyenet.metrics import refusal_threshold
    y = (np.asarray(quality) == 2).astype(int)
    return linear_probe(C, scale=True).fit(x, y), refusal_threshold(quality, _oof(x, y, groups, C), max_refused, of)

def gate_rates(p_reject, quality, thr, groups, n_boot=1000):
    "Rejects caught and good photos refused when a bare reject score (rules, probe) refuses at `thr`: `quality_cis` of it."
    from eyenet.results import quality_cis
    p = np.asarray(p_reject, float)
    ci = quality_cis(quality, np.c_[1 - p, np.zeros_like(p), p], groups, thr, n_boot)
    return dict(threshold=thr, **{k: (ci[k]['value'], ci[k]['lo'], ci[k]['hi']) for k in ('caught', 'good_refused', 'gradable_refused')})

def auc_ci(y, p, groups, n_boot=1000):
    from eyenet.metrics import bootstrap_ci, roc_auc
    return bootstrap_ci(np.asarray(y), np.asarray(p, float), groups, roc_auc, n_boot)

def _fmt(ci): return f"{ci[0]:.3f} [{ci[1]:.3f}, {ci[2]:.3f}]"

def _rule_scores(paths):
    "Rule-based gate on each photo: (status, reason, gradability, the rule it passes by the least margin)."
    from eyenet.preprocess import process_photo, worst_rule
    rows = []
    for p in paths:
        _, r = process_photo(p, size=256)
        rows.append((r['status'], r['reason'], r['gradability'], worst_rule(r)))
    return pd.DataFrame(rows, columns=['status', 'reason', 'gradability', 'worst'])

def by_grade(refused, level):
    "Share refused at each DR grade 0-4 (the grade as a string key, for JSON)."
    return {str(k): float(v) for k, v in pd.Series(np.asarray(refused, bool)).groupby(np.asarray(level)).mean().items()}

def probe_by_norm(norms, fdir, eyeq, raw, n_boot=1000, max_refused=0.1, of='good'):
    "The reject-vs-rest probe on frozen Lite0 features with every photo in each look: dev held-out rates, and the share of IDRiD and raw photos refused."
    import sys; sys.path.insert(0, str(Path(__file__).parent))
    from realdata import split_table, features, _idrid_crops
    from eyenet.core import shared_data
    from eyenet.data import read_quality
    from eyenet.preprocess import process_photo
    df = split_table(shared_data('eyepacs-256'), None, eyeq)
    q = read_quality(eyeq).set_index('image')['quality']
    fns = sorted((raw/'train').glob('*.jpeg'))
    rq = np.array([q.get(f.stem, np.nan) for f in fns], float)
    g, tr, va = df.quality.notna().values, ~df.is_valid.values, df.is_valid.values
    res = {}
    for n in norms:
        x, _ = features(df, fdir/f'features-effnet-lite0-256-{n}.npz', norm=n)
        ext = _idrid_crops(shared_data('idrid'), fdir/f'idrid-256-{n}', n)
        xe, _ = features(ext, fdir/f'features-idrid-256-{n}.npz')
        rd = fdir/f'raw-256-{n}'; rd.mkdir(exist_ok=True)
        for f in fns:
            if not (rd/f'{f.stem}.png').exists(): process_photo(f, norm=n)[0].save(rd/f'{f.stem}.png')
        xr, _ = features(pd.DataFrame(dict(path=[str(rd/f'{f.stem}.png') for f in fns])), fdir/f'features-raw-256-{n}.npz')
        pr, thr = probe_gate(x[tr&g], df.quality.values[tr&g], df.patient.values[tr&g], max_refused=max_refused, of=of)
        pv, qv = pr.predict_proba(x[va&g])[:, 1], df.quality.values[va&g]
        gu = np.isin(rq, [0, 1])
        ie = pr.predict_proba(xe)[:, 1] >= thr
        res[n] = dict(threshold=float(thr), auc=auc_ci(qv == 2, pv, df.patient.values[va&g], n_boot), caught=float((pv[qv == 2] >= thr).mean()),
                      good_refused=float((pv[qv == 0] >= thr).mean()), gradable_refused=float((pv[qv < 2] >= thr).mean()),
                      idrid_refused=float(ie.mean()), idrid_by_grade=by_grade(ie, ext.level.values),
                      idrid_nonreferable_refused=float(ie[ext.level.values < 2].mean()),
                      raw_graded=int(gu.sum()), raw_refused=int((pr.predict_proba(xr)[:, 1][gu] >= thr).sum()))
    return res

def pipeline(dr_model, model, dev, dev_rules, idrid_fns, idrid_level, raw_rows):
    """The learned gate beside a DR model, as `predict` runs them: what it refuses, and what it refers anyway (`refer_anyway`).
    Beside it, as before the learned gate decided the rules' margin photos (`eyenet.score.MARGIN`): every rule refusal kept."""
    from eyenet.model import load_model
    from eyenet.score import score_photos, quality_gate, MARGIN
    from eyenet.preprocess import PHOTOGRAPHIC
    net, cfg = load_model(dr_model)
    qg = quality_gate(model)
    run = lambda paths, pre=False: score_photos(net, cfg, [str(p) for p in paths], preprocessed=pre, quality=qg, progress=False)
    def rates(sc): return sc.reason.eq('low_quality').values, sc.quality_verdict.eq('refer anyway').values
    def rules_refused(sc): return sc.gradability.values < MARGIN[2] # the rules' own verdict: gradability under the cut is a refusal (0 where a rule fails)
    res = dict(dr_model=str(dr_model), refer_anyway=cfg.get('refer_anyway'), threshold=cfg.get('threshold'))
    sv = run(dev.path, 'none') # the 256 px crops, put into each model's look on load (no rules: they are combined below)
    r, a = rates(sv); q, ref = dev.quality.values, dev.referable.values.astype(bool)
    rule = (dev_rules.status != 'ok').values; hard = rule & ~(dev_rules.reason.eq(MARGIN[3]) & dev_rules.worst.isin(PHOTOGRAPHIC)).values # the rules on the same crops; the learned gate decides their photographic margins
    either = lambda rl: (rl | (r & ~a), a & ~rl) # refused by a rule or by the learned gate (not referred), and referred anyway
    (x, xa), (y, ya) = either(hard), either(rule)
    res['dev'] = dict(n=len(dev), caught=float(r[q == 2].mean()), rejects_referred_anyway=float(a[q == 2].mean()),
                      caught_or_referred=float((r | a)[q == 2].mean()), gradable_refused=float(r[q < 2].mean()), good_refused=float(r[q == 0].mean()),
                      referred_anyway=int(a.sum()), referred_anyway_referable=int((a & ref).sum()),
                      with_rules=dict(caught=float(x[q == 2].mean()), caught_or_referred=float((x | xa)[q == 2].mean()), good_refused=float(x[q == 0].mean()), gradable_refused=float(x[q < 2].mean())),
                      with_rules_margin=dict(caught=float(y[q == 2].mean()), caught_or_referred=float((y | ya)[q == 2].mean()), good_refused=float(y[q == 0].mean()), gradable_refused=float(y[q < 2].mean())),
                      margin_rejects=int((rule & ~hard & (q == 2)).sum()), margin_rejects_passed=int((rule & ~hard & (q == 2) & ~r & ~a).sum()))
    si = run(idrid_fns); r, a = rates(si)
    res['idrid'] = dict(n=len(si), learned_refused=float(r.mean()), refused_any_gate=float((si.status != 'ok').mean()), by_grade=by_grade(r, idrid_level),
                        any_gate_by_grade=by_grade(si.status != 'ok', idrid_level), rules_refused=float(rules_refused(si).mean()),
                        margin_accepted=int(((si.status == 'ok').values & rules_refused(si) & ~a).sum()),
                        refused_any_gate_margin=float((rules_refused(si) | (si.status != 'ok').values).mean()), # as before the learned gate decided the margin
                        nonreferable_refused=float(r[idrid_level < 2].mean()), referred_anyway=int(a.sum()), referred_anyway_referable=int((a & (idrid_level >= 2)).sum()))
    if raw_rows is not None:
        g = raw_rows[raw_rows.quality.isin([0, 1])]
        sr = run(g.path); r, a = rates(sr)
        res['raw'] = dict(n=len(g), learned_refused=int(r.sum()), referred_anyway=int(a.sum()), refused_any_gate=int((sr.status != 'ok').sum()),
                          refused_any_gate_margin=int((rules_refused(sr) | (sr.status != 'ok').values).sum()))
    return res

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
         shared:str=None, # a DR model folder (EfficientNet-Lite): also the reject probe on its fine-tuned backbone, one backbone for both heads
         norms:str='', # also the probe gate with every photo in each of these looks (e.g. 'equalize,none,graham,clahe'), on IDRiD and the raw photos
         features_dir:str='results/realdata', # where `bench/realdata.py --external` caches the features of those looks (shared, computed when absent)
         norm:str=None, # the look the learned model trains in (default: `eyenet-train`'s for the quality task)
         refused_of:str=None, # the refusal budget counts 'good' or 'gradable' (good or usable) photos: the learned model's and the probes' (default: `eyenet-train`'s)
         max_refused:float=None, # the share of them the thresholds may refuse (default: `eyenet-train`'s)
         no_grade_balance:store_true=False, # fit the learned model's probe head unweighted (default: `grade_weights`, as `eyenet-train`)
         dr_model:str=None, # a binary DR model to run the learned gate beside (default: train an LP-FT referable model, 0 epochs, in OUT/dr-model)
        ):
    "Imageability on real photos: learned quality model vs rule-based gate vs linear probe, on held-out patients."
    from eyenet.core import shared_data
    from eyenet.data import read_labels, find_labels, patient_split
    from eyenet.metrics import refusal_threshold
    from eyenet.probe import linear_probe
    import inspect
    from eyenet.learner import train
    budget = {k: v if v is not None else inspect.signature(train).parameters[k].default for k, v in dict(max_refused=max_refused, refused_of=refused_of).items()}
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
    yv = (qv.quality == 2).astype(int).values

    # 1. the rule-based gate
    t0 = time.perf_counter()
    rt, rv = _rule_scores(qt.path.tolist()), _rule_scores(qv.path.tolist())
    thr = refusal_threshold(qt.quality.values, 1 - rt.gradability.values, budget['max_refused'], budget['refused_of'])
    res['rules'] = dict(auc=auc_ci(yv, 1 - rv.gradability.values, qv.patient.values, n_boot),
                        verdict_caught=float((rv.status[yv == 1] != 'ok').mean()), verdict_good_refused=float((rv.status[qv.quality.values == 0] != 'ok').mean()),
                        at_threshold=gate_rates(1 - rv.gradability.values, qv.quality.values, thr, qv.patient.values, n_boot),
                        reasons=rv.reason[rv.status != 'ok'].value_counts().to_dict(), seconds=round(time.perf_counter() - t0, 1))

    # 2. linear probe on frozen Lite0 features: reject vs rest, threshold out-of-fold on training patients
    res['budget'] = budget
    pr, thr = probe_gate(x[tr&g], qt.quality.values, qt.patient.values, max_refused=budget['max_refused'], of=budget['refused_of'])
    pv = pr.predict_proba(x[va&g])[:, 1]
    res['probe'] = dict(auc=auc_ci(yv, pv, qv.patient.values, n_boot), at_threshold=gate_rates(pv, qv.quality.values, thr, qv.patient.values, n_boot))

    # 2b. one backbone for both: the reject probe on a DR model's fine-tuned backbone (its features, in its look), threshold out of fold
    if shared:
        from eyenet.model import load_model
        from eyenet.preprocess import norm_of
        xs = frozen_features(df['path'].tolist(), 256, model=shared, norm=norm_of(load_model(shared)[1]), cache=out/'shared-features.npz')
        pr_s, thr = probe_gate(xs[tr&g], qt.quality.values, qt.patient.values, max_refused=budget['max_refused'], of=budget['refused_of'])
        ps = pr_s.predict_proba(xs[va&g])[:, 1]
        res['shared'] = dict(model=str(shared), auc=auc_ci(yv, ps, qv.patient.values, n_boot), at_threshold=gate_rates(ps, qv.quality.values, thr, qv.patient.values, n_boot))

    # 4. referable DR on photos graders call gradable vs reject (probe trained on every training photo)
    dr = linear_probe(0.01, scale=True).fit(x[tr], df.referable.values[tr])
    pd_v = dr.predict_proba(x[va])[:, 1]
    from eyenet.results import auc_by_quality  # the same numbers `05_results` shows
    dv = df[va].assign(**{'p_non-referable': 1 - pd_v, 'p_referable': pd_v})
    res['dr_by_quality'] = auc_by_quality(dv, dict(task='referable', classes=['non-referable', 'referable']), n_boot)
    res['dr_probe_all'] = auc_ci(dv.referable.values, pd_v, dv.patient.values, n_boot) # every held-out photo: the floor a DR model must beat
    # graders' rejects by DR grade: where disease and a bad photo go together in the labels a gate learns from
    gr = df[g]
    res['reject_share_by_grade'] = {str(k): dict(n=int(len(v)), reject=float((v.quality == 2).mean())) for k, v in gr.groupby('level')}

    # 3. the learned quality model
    if not skip_train or model:
        from eyenet.results import evaluate
        if model is None:
            t0 = time.perf_counter()
            _, met = train(data, labels=eyeq, task='quality', arch=arch, size=size, epochs=epochs, bs=bs, amp=amp, recipe=recipe, norm=norm,
                           out=out/'model', note='real EyePACS 256 px, EyeQ grades', grade_balance=not no_grade_balance, **budget)
            model = out/'model'
            res['learned_train'] = dict(minutes=round((time.perf_counter() - t0)/60, 1), valid=met.get('valid'))
        ev = evaluate(model, data, labels=eyeq, out=out/'eval', preprocessed='none', n_boot=n_boot, progress=False) # crops made elsewhere: put in the model's look on load
        res['learned'] = ev.get('quality', ev)
        ep = pd.read_csv(out/'eval'/'predictions.csv').merge(df[['image', 'level']], on='image', suffixes=('_', ''))
        ep = ep[ep.quality.isin([0, 1]) & ep.p_reject.notna()]
        res['learned_gradable_refused_by_grade'] = by_grade(ep.p_reject >= res['learned']['threshold'], ep.level.values)
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

    # 6. another clinic's camera: every IDRiD photo carries an expert DR grade, so a refusal is most likely a false one
    idrid = shared_data('idrid')
    if idrid is not None:
        fns = sorted((idrid/'train').glob('*.jpeg'))
        rs = _rule_scores(fns)
        res['idrid'] = dict(n=len(fns), rules_refused=float((rs.status != 'ok').mean()), rules_reasons=rs.reason[rs.status != 'ok'].value_counts().to_dict())
        res['idrid']['rules_margin_worst'] = rs.worst[rs.reason == 'low_gradability'].value_counts().to_dict() # the rule each margin refusal passed only just
        if model is not None:
            from eyenet.inference import predict
            thr = json.loads((Path(model)/'config.json').read_text())['threshold'] # the model's own, as `predict` uses it
            pq = predict(model, fns, progress=False).set_index('photo').reindex([str(f) for f in fns])
            learned = (pq.p_reject >= thr).values
            lv = pd.read_csv(idrid/'trainLabels.csv').set_index('image').level.reindex([f.stem for f in fns]).values
            res['idrid'].update(learned_threshold=thr, learned_refused=float(learned.mean()), learned_p_reject_median=float(pq.p_reject.median()),
                                learned_by_grade=by_grade(learned, lv), learned_nonreferable_refused=float(learned[lv < 2].mean()),
                                either_refused=float((learned | (rs.status != 'ok').values).mean()))
        if 'raw' in res and model is not None:
            g = [r for r in res['raw'] if r['quality'] in (0, 1)]
            res['raw_graded_good_usable'] = dict(n=len(g), rules_refused=sum(r['status'] != 'ok' for r in g),
                                                 learned_refused=sum(r.get('p_reject', 0) >= thr for r in g))

    # 9. the gate in the pipeline: a refused photo the DR model is sure is referable goes on to be referred
    if model is not None and idrid is not None:
        if dr_model is None:
            t0 = time.perf_counter()
            train(data, task='referable', arch='effnet-lite0', recipe='lp-ft', epochs=0, out=out/'dr-model', note='real EyePACS 256 px', progress=False)
            dr_model = out/'dr-model'; res['dr_model_minutes'] = round((time.perf_counter() - t0)/60, 1)
        rr9 = read_labels(find_labels(raw), raw/'train', quality=eyeq).assign(quality=lambda d: d.quality.astype(float)) if raw is not None else None
        res['pipeline'] = pipeline(dr_model, model, qv, rv, fns, lv, rr9)

    # 7. the probe gate in each photometric look: which look lets a gate learned on EyePACS hold on other cameras
    if norms and idrid is not None:
        res['probe_by_norm'] = probe_by_norm(norms.split(','), Path(features_dir), eyeq, raw, n_boot, budget['max_refused'], budget['refused_of'])

    (out/'quality.json').write_text(json.dumps(res, indent=2, default=float))
    _g = lambda v: ' '.join(f"{k}:{x:.0%}" for k, x in v.items()) # shares by DR grade
    print("\nEyeQ grades by DR grade (all graded photos): share graded reject " + ', '.join(f"grade {k} {v['reject']:.0%} of {v['n']}" for k, v in res['reject_share_by_grade'].items()))
    print(f"\nreject vs rest on held-out patients (ROC AUC [95% CI]; caught / good refused / good or usable refused at the threshold chosen on training patients, "
          f"budget: at most {budget['max_refused']:.0%} of {budget['refused_of']} photos)")
    for k in ('rules', 'probe', 'shared'):
        if k not in res: continue
        a = res[k]['at_threshold']
        print(f"  {k:8s} AUC {_fmt(res[k]['auc'])}; threshold {a['threshold']:.3f}: caught {_fmt(a['caught'])}, good refused {_fmt(a['good_refused'])}, gradable refused {_fmt(a['gradable_refused'])}")
    print(f"  rules' own verdicts today: caught {res['rules']['verdict_caught']:.3f}, good refused {res['rules']['verdict_good_refused']:.3f}")
    if 'learned' in res:
        L = res['learned']; a = L['at_model_threshold']; v = lambda d: f"{d['value']:.3f} [{d['lo']:.3f}, {d['hi']:.3f}]"
        print(f"  learned  AUC {v(L['reject_auc'])}; threshold {L['threshold']:.3f} ({L['threshold_source']}): caught {v(a['caught'])}, good refused {v(a['good_refused'])}, "
              f"gradable refused {v(a['gradable_refused'])}" + (f"; tuned on this set: caught {v(L['tuned_on_this_set']['caught'])}" if 'tuned_on_this_set' in L else ''))
        print(f"  learned, good or usable photos refused by DR grade: {_g(res['learned_gradable_refused_by_grade'])}")
    print(f"\nreferable DR AUC, linear probe on frozen features, all {len(dv)} held-out photos: {_fmt(res['dr_probe_all'])}")
    print("\nreferable DR AUC (linear probe on frozen features), held-out patients, by human quality grade:")
    for k in ('good or usable', 'reject', 'good', 'usable'):
        v = res['dr_by_quality'][k]; a = v['roc_auc']
        print(f"  {k:15s} n={v['n']:4d} referable={v['positives']:3d} AUC {_fmt((a['value'], a['lo'], a['hi']))}")
    d = res['dr_by_quality']['difference']; print(f"  difference      {_fmt((d['value'], d['lo'], d['hi']))}")
    if 'raw' in res:
        print("\nraw camera photos: EyeQ grade vs the gate")
        for r in res['raw']: print(f"  {r['image']:12s} EyeQ {r['quality'] if r['quality'] == r['quality'] else '-'}  rules {r['status']:8s} {r['reason']:14s} gradability {r['gradability']:.3f}" + (f"  p_reject {r['p_reject']:.3f}" if 'p_reject' in r else ''))
    if 'idrid' in res:
        i = res['idrid']
        print(f"\nIDRiD, another clinic's camera, {i['n']} photos all graded by experts: rules refuse {i['rules_refused']:.1%} {i['rules_reasons']} (margin refusals by the rule passed only just: {i['rules_margin_worst']})"
              + (f"; learned model refuses {i['learned_refused']:.1%} at its threshold {i['learned_threshold']:.3f} (median p_reject {i['learned_p_reject_median']:.3f}); either gate: {i['either_refused']:.1%}" if 'learned_refused' in i else ''))
        if 'learned_by_grade' in i: print(f"  learned model by DR grade: {_g(i['learned_by_grade'])}; non-referable photos (grades 0-1) refused {i['learned_nonreferable_refused']:.1%}")
    if 'raw_graded_good_usable' in res:
        r = res['raw_graded_good_usable']; print(f"raw camera photos graded good or usable: {r['n']}; refused by the rules {r['rules_refused']}, by the learned model {r['learned_refused']}")
    if 'pipeline' in res:
        P = res['pipeline']; d, i = P['dev'], P['idrid']
        print(f"\nthe learned gate beside the DR model {P['dr_model']} (refer anyway at p_referable >= {P['refer_anyway']:.3f}; its threshold {P['threshold']:.3f}):")
        print(f"  held-out graded photos ({d['n']}): rejects refused {d['caught']:.3f}, referred anyway {d['rejects_referred_anyway']:.3f} (refused or referred {d['caught_or_referred']:.3f}); good refused {d['good_refused']:.3f}, good or usable refused {d['gradable_refused']:.3f}; "
              f"referred anyway {d['referred_anyway']} photos, {d['referred_anyway_referable']} of them referable")
        print(f"  IDRiD ({i['n']}): the learned gate refuses {i['learned_refused']:.1%} (by grade {_g(i['by_grade'])}; grades 0-1 {i['nonreferable_refused']:.1%}); "
              f"referred anyway {i['referred_anyway']}, {i['referred_anyway_referable']} of them referable; refused by either gate {i['refused_any_gate']:.1%}")
        print(f"  IDRiD, refused by either gate {i['refused_any_gate']:.1%} (by grade {_g(i['any_gate_by_grade'])}); the rules alone {i['rules_refused']:.1%}; "
              f"{i['margin_accepted']} photos the rules refused by a photographic margin alone accepted by the learned gate; every rule refusal kept: {i['refused_any_gate_margin']:.1%}")
        for k, lab in (('with_rules', 'the rules beside (margin left to the learned gate)'), ('with_rules_margin', 'the rules beside, every rule refusal kept')):
            w = d[k]; print(f"  held-out graded photos, {lab}: rejects refused {w['caught']:.3f} (refused or referred {w['caught_or_referred']:.3f}); good refused {w['good_refused']:.3f}, good or usable {w['gradable_refused']:.3f}")
        print(f"  held-out rejects the rules refuse by a photographic margin alone: {d['margin_rejects']}, of them passed by the learned gate (neither refused nor referred): {d['margin_rejects_passed']}")
        if 'raw' in P: print(f"  raw photos graded good or usable: {P['raw']['learned_refused']} of {P['raw']['n']} refused by the learned gate, {P['raw']['referred_anyway']} referred anyway; "
                             f"by either gate {P['raw']['refused_any_gate']} (every rule refusal kept: {P['raw']['refused_any_gate_margin']})")
    for n, r in res.get('probe_by_norm', {}).items():
        print(f"probe gate, norm {n:9s}: dev AUC {_fmt(r['auc'])}, caught {r['caught']:.3f}, good refused {r['good_refused']:.3f}, gradable refused {r['gradable_refused']:.3f} (threshold {r['threshold']:.3f}) | "
              f"IDRiD refused {r['idrid_refused']:.1%} (by grade {_g(r['idrid_by_grade'])}; grades 0-1 {r['idrid_nonreferable_refused']:.1%}) | raw good/usable refused {r['raw_refused']} of {r['raw_graded']}")
    print(f"\nwrote {out/'quality.json'}")
