"Tests of `eyenet.results` that fit pytest better than the notebook: `eyenet-evaluate` end to end, quality models and gates."
import json, shutil, subprocess, sys

import numpy as np, pandas as pd
import pytest, torch

from eyenet.core import write_csv
from eyenet.data import patient_split, task_table
from eyenet.model import EyeNetCNN, save_model
from eyenet.synthetic import make_sample
from eyenet.results import evaluate, GATE_VIEWS
from eyenet.score import score_photos

# what pip's console-script wrapper for `eyenet-evaluate` does (the guard matters: worker processes import this file)
WRAPPER = "import sys\nfrom eyenet.results import evaluate_cli\nif __name__ == '__main__': sys.exit(evaluate_cli())\n"


def _run_cli(tmp_path, *args):
    w = tmp_path/'eyenet_evaluate_wrapper.py'
    w.write_text(WRAPPER)
    return subprocess.run([sys.executable, str(w), *map(str, args)], capture_output=True, text=True, timeout=600, cwd=tmp_path)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    "24 raw synthetic camera photos (12 patients, a third bad captures with quality grades), untrained 64-px DR and quality CNNs."
    d = tmp_path_factory.mktemp('ev')
    data = make_sample(d/'data', n=24, seed=1, size=192, bad=0.35, mix=(0.4, 0.1, 0.3, 0.1, 0.1), workers=0)
    torch.manual_seed(0)
    save_model(EyeNetCNN(2, 64), d/'model', arch='eyenet', task='referable', size=64)
    qnet = EyeNetCNN(3, 64).eval()
    save_model(qnet, d/'quality', arch='eyenet', task='quality', size=64)
    # the quality model's threshold: the median p_reject of these photos, so that it refuses about half of them
    qcfg = json.loads((d/'quality'/'config.json').read_text())
    sc = score_photos(qnet, qcfg, sorted((data/'train').glob('*.jpeg')), workers=0, score_rejected=True, progress=False)
    save_model(qnet, d/'quality', arch='eyenet', task='quality', size=64, threshold=float(np.nanmedian(sc.p_reject)))
    write_csv(pd.read_csv(data/'trainLabels.csv')[['image', 'quality']], d/'eyeq.csv')
    return d, data


def test_cli_writes_report(setup):
    d, data = setup
    out = d/'out'
    r = _run_cli(d, d/'model', data, '--out', out, '--split', 'all', '--n-boot', 50, '--tta', '--workers', 2, '--quiet')
    assert r.returncode == 0, r.stderr
    assert 'synthetic' in r.stdout and 'ROC AUC' in r.stdout and "at the model's threshold 0.5 (the default 0.5: not tuned)" in r.stdout
    for f in ('metrics.json', 'report.md', 'predictions.csv', 'confusion.png', 'top_losses.png', 'gradcam.png'):
        assert (out/f).exists() and (out/f).stat().st_size > 0, f
    m = json.loads((out/'metrics.json').read_text())
    assert m['meta']['synthetic'] and m['meta']['split'] == 'all' and m['n_photos'] == 24
    assert 0 < m['imageability'] <= 1 and m['n_scored'] == round(m['imageability']*24)
    assert list(m['gate']) == [*GATE_VIEWS, 'patients, ungradable -> refer'] and m['gate']['ungradable -> refer']['n'] == 24
    assert m['gate']['all photos']['n'] >= m['gate']['gradable only']['n'] == m['n_scored']
    assert m['gate_used'] == 'rule-based' and 'roc_auc_difference' in m['tta']
    assert set(m['operating_points']) == {'model_threshold', 'tuned_on_this_set'}
    md = (out/'report.md').read_text()
    assert md.startswith('# EyeNet evaluation (synthetic)') and '](confusion.png)' in md and 'Accuracy (train)' in md
    assert "**The model's threshold**" in md and '**Tuned on these photos**' in md and '| all photos |' in md
    preds = pd.read_csv(out/'predictions.csv')
    assert len(preds) == 24 and {'image', 'patient', 'status', 'reason', 'gradable', 'p_referable', 'tta_p_referable'} <= set(preds.columns)
    assert set(preds.status) <= {'ok', 'rejected', 'unreadable'} and (preds.gradable == (preds.status == 'ok')).all()


def test_cli_valid_split_holds_out_patients(setup):
    d, data = setup
    out = d/'out_valid'
    r = _run_cli(d, d/'model', data, '--out', out, '--n-boot', 20, '--workers', 0)
    assert r.returncode == 0, r.stderr
    df = patient_split(task_table(data))
    preds = pd.read_csv(out/'predictions.csv', dtype={'patient': str})
    assert set(preds.patient) == set(df.loc[df.is_valid, 'patient'])


def test_cli_clear_errors(setup, tmp_path):
    d, data = setup
    r = _run_cli(tmp_path, tmp_path/'no-model', data, '--out', tmp_path/'o')
    assert r.returncode != 0 and 'eyenet-evaluate: ' in r.stderr and 'config.json' in r.stderr and 'Traceback' not in r.stderr
    r = _run_cli(tmp_path, d/'model', tmp_path/'no-data', '--out', tmp_path/'o')
    assert r.returncode != 0 and 'no-data' in r.stderr and 'not found' in r.stderr and 'Traceback' not in r.stderr
    r = _run_cli(tmp_path, d/'model', data, '--split', 'test', '--out', tmp_path/'o')
    assert r.returncode != 0 and "split must be" in r.stderr
    r = _run_cli(tmp_path, d/'model', data, '--quality-model', d/'model', '--out', tmp_path/'o')
    assert r.returncode != 0 and 'not a quality model' in r.stderr and 'Traceback' not in r.stderr


def test_all_split_warns_about_training_patients(setup, tmp_path):
    "An 'external' set that holds patients the model trained on (its metrics.json names the data) is flagged."
    d, data = setup
    m = tmp_path/'m'
    shutil.copytree(d/'model', m)
    (m/'metrics.json').write_text(json.dumps(dict(data=str(data), note='synthetic')))
    with pytest.warns(UserWarning, match='training patients'):
        res = evaluate(m, data, out=tmp_path/'o', split='all', n_boot=20, n_train=0, n_cam=0, n_top=0, workers=0, progress=False)
    assert 'used for training' in res['meta']['split_desc'] and res['meta']['synthetic']
    assert 'used for training' in (tmp_path/'o'/'report.md').read_text()


def test_model_threshold_and_tuned_threshold(setup, tmp_path):
    "Metrics at the threshold saved with the model and at the one tuned on the evaluated photos, each named."
    d, data = setup
    m = tmp_path/'m'
    torch.manual_seed(1)
    save_model(EyeNetCNN(2, 64), m, arch='eyenet', task='referable', size=64, threshold=0.4, threshold_source='validation', target=dict(sensitivity=0.9))
    res = evaluate(m, data, out=tmp_path/'o', split='all', n_boot=20, n_cam=0, n_top=0, workers=0, progress=False)
    mt = res['operating_points']['model_threshold']
    assert mt['threshold'] == res['threshold'] == 0.4 and mt['source'] == "tuned on the model's validation patients for 90% sensitivity"
    assert mt['sensitivity']['value'] == res['photo']['metrics']['recall']['value']
    assert res['operating_points']['tuned_on_this_set']['sensitivity'] >= 0.9
    md = (tmp_path/'o'/'report.md').read_text()
    assert "**The model's threshold** 0.4 (tuned on the model's validation patients for 90% sensitivity)" in md


def test_quality_model_evaluation(setup, tmp_path):
    "A quality model against human grades: reject AUC, 3-class accuracy and confusion, rejects caught, good photos refused, with CIs."
    d, data = setup
    r = _run_cli(tmp_path, d/'quality', data, '--labels', d/'eyeq.csv', '--split', 'all', '--out', tmp_path/'q', '--n-boot', 50, '--workers', 0, '--quiet')
    assert r.returncode == 0, r.stderr
    assert 'reject-vs-rest ROC AUC' in r.stdout and 'rejects caught' in r.stdout and 'good photos refused' in r.stdout
    m = json.loads((tmp_path/'q'/'metrics.json').read_text())
    assert m['task'] == 'quality' and m['n_graded'] == 24 and sum(m['grades'].values()) == 24
    for k in ('reject_auc', 'accuracy'): assert m[k]['lo'] <= m[k]['value'] <= m[k]['hi']
    assert np.array(m['confusion']['counts']).sum() == m['n_scored']
    for k in ('caught', 'good_refused'): assert set(m['at_model_threshold'][k]) == {'value', 'lo', 'hi'}
    assert m['with_rule_gate']['caught']['value'] >= m['at_model_threshold']['caught']['value']
    preds = pd.read_csv(tmp_path/'q'/'predictions.csv')
    sc = preds[preds.p_reject.notna()]
    assert m['at_model_threshold']['caught']['value'] == pytest.approx((sc.p_reject[sc.quality == 2] >= m['threshold']).mean())
    md = (tmp_path/'q'/'report.md').read_text()
    assert 'Reject-vs-rest ROC AUC' in md and 'quality model + rule-based gate' in md


def test_dr_evaluation_behind_the_learned_gate(setup, tmp_path):
    "The learned gate refuses photos (low_quality); the three IDx-DR views count them; AUC by human quality grade."
    d, data = setup
    plain = evaluate(d/'model', data, out=tmp_path/'a', split='all', n_boot=20, n_cam=0, n_top=0, n_train=0, workers=0, progress=False)
    res = evaluate(d/'model', data, out=tmp_path/'b', split='all', quality_model=d/'quality', quality=d/'eyeq.csv',
                   n_boot=20, n_cam=0, n_top=0, n_train=0, workers=0, progress=False)
    assert res['gate_used'].startswith('rule-based, then the learned quality model')
    assert res['imageability'] < plain['imageability']
    assert res['gate']['all photos']['n'] == plain['gate']['all photos']['n'] # gate ignored: the same photos
    assert res['gate']['gradable only']['n'] == res['n_scored'] < plain['n_scored']
    preds = pd.read_csv(tmp_path/'b'/'predictions.csv')
    low = preds[preds.reason == 'low_quality']
    assert len(low) and (low.status == 'rejected').all() and (low.quality_verdict == 'reject').all() and not low.gradable.any()
    h = res['by_human_quality']
    assert h['good or usable']['n'] + h['reject']['n'] == preds.p_referable.notna().sum()
    assert '### By human quality grade' in (tmp_path/'b'/'report.md').read_text()


def test_dr_config_names_its_quality_model(setup, tmp_path):
    d, data = setup
    m = tmp_path/'gated'
    shutil.copytree(d/'model', m)
    cfg = json.loads((m/'config.json').read_text())
    (m/'config.json').write_text(json.dumps(cfg | dict(quality_model=str(d/'quality'))))
    res = evaluate(m, data, out=tmp_path/'o', split='all', n_boot=20, n_cam=0, n_top=0, n_train=0, workers=0, progress=False)
    assert str(d/'quality') in res['gate_used'] and res['meta']['quality_model'] == str(d/'quality')
