"Tests of `eyenet.results` that fit pytest better than the notebook: the `eyenet-evaluate` CLI end to end."
import json, subprocess, sys

import pandas as pd
import pytest

from eyenet.model import EyeNetCNN, save_model
from eyenet.synthetic import make_sample

# what pip's console-script wrapper for `eyenet-evaluate` does
WRAPPER = "import sys\nfrom eyenet.results import evaluate_cli\nsys.exit(evaluate_cli())\n"


def _run_cli(tmp_path, *args):
    w = tmp_path/'eyenet_evaluate_wrapper.py'
    w.write_text(WRAPPER)
    return subprocess.run([sys.executable, str(w), *args], capture_output=True, text=True, timeout=600, cwd=tmp_path)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    "12 raw synthetic camera photos (6 patients, a few ungradable) and an untrained 64-px EyeNetCNN saved to disk."
    d = tmp_path_factory.mktemp('ev')
    data = make_sample(d/'data', n=12, seed=1, size=192, bad=0.3, mix=(0.4, 0.1, 0.3, 0.1, 0.1), workers=0)
    import torch; torch.manual_seed(0)
    save_model(EyeNetCNN(2, 64), d/'model', arch='eyenet', task='referable', size=64)
    return d, data


def test_cli_writes_report(setup):
    d, data = setup
    out = d/'out'
    r = _run_cli(d, str(d/'model'), str(data), '--out', str(out), '--split', 'all', '--n-boot', '50', '--tta')
    assert r.returncode == 0, r.stderr
    assert 'synthetic' in r.stdout and 'ROC AUC' in r.stdout
    for f in ('metrics.json', 'report.md', 'predictions.csv', 'confusion.png', 'top_losses.png', 'gradcam.png'):
        assert (out/f).exists() and (out/f).stat().st_size > 0, f
    m = json.loads((out/'metrics.json').read_text())
    assert m['meta']['synthetic'] and m['meta']['split'] == 'all' and m['n_photos'] == 12
    assert 0 < m['imageability'] <= 1 and m['n_scored'] == round(m['imageability']*12)
    assert set(m['gate']) == {'gradable only', 'ungradable -> refer', 'patients, ungradable -> refer'} and m['gate']['ungradable -> refer']['n'] == 12
    assert 'roc_auc_difference' in m['tta']
    md = (out/'report.md').read_text()
    assert md.startswith('# EyeNet evaluation (synthetic)') and '](confusion.png)' in md and 'Accuracy (train)' in md
    preds = pd.read_csv(out/'predictions.csv')
    assert len(preds) == 12 and {'image', 'patient', 'gradable', 'prob_1', 'tta_prob_1'} <= set(preds.columns)


def test_cli_valid_split_holds_out_patients(setup):
    d, data = setup
    out = d/'out_valid'
    r = _run_cli(d, str(d/'model'), str(data), '--out', str(out), '--n-boot', '20')
    assert r.returncode == 0, r.stderr
    from eyenet.data import patient_split, read_labels
    df = patient_split(read_labels(data/'trainLabels.csv', data/'train'))
    preds = pd.read_csv(out/'predictions.csv', dtype={'patient': str})
    assert set(preds.patient) == set(df.loc[df.is_valid, 'patient'])


def test_cli_clear_errors(setup, tmp_path):
    d, data = setup
    r = _run_cli(tmp_path, str(tmp_path/'no-model'), str(data), '--out', str(tmp_path/'o'))
    assert r.returncode != 0 and 'config.json' in r.stderr and 'Traceback' not in r.stderr
    r = _run_cli(tmp_path, str(d/'model'), str(tmp_path/'no-data'), '--out', str(tmp_path/'o'))
    assert r.returncode != 0 and 'no-data' in r.stderr and 'not found' in r.stderr and 'Traceback' not in r.stderr
    r = _run_cli(tmp_path, str(d/'model'), str(data), '--split', 'test', '--out', str(tmp_path/'o'))
    assert r.returncode != 0 and "split must be" in r.stderr


def test_all_split_warns_about_training_patients(setup, tmp_path):
    "An 'external' set that holds patients the model trained on (its metrics.json names the data) is flagged."
    import shutil
    from eyenet.results import evaluate
    d, data = setup
    m = tmp_path/'m'
    shutil.copytree(d/'model', m)
    (m/'metrics.json').write_text(json.dumps(dict(data=str(data), note='synthetic')))
    with pytest.warns(UserWarning, match='training patients'):
        res = evaluate(m, data, out=tmp_path/'o', split='all', n_boot=20, n_train=0, n_cam=0, n_top=0, progress=False)
    assert 'used for training' in res['meta']['split_desc'] and res['meta']['synthetic']
    assert 'used for training' in (tmp_path/'o'/'report.md').read_text()
