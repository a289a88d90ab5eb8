"Inference: bad files in a run, the CLIs, ONNX parity and export, CoreML conversion, loading without pickles."
import json, os, pickle, shutil, subprocess, sys, tempfile
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from eyenet.synthetic import synth_fundus
from eyenet.model import create_model, save_model
from fastcore.script import CliError
from eyenet.inference import (Predictor, predict, export_onnx, export_coreml, parity, onnx_config, ort_session,
                              predict_cli, export_cli)

SIZE = 64

@pytest.fixture(scope='module')
def work(tmp_path_factory):
    "An untrained EyeNetCNN and a ResNet-18 (weights do not matter here), and a folder of good and bad files."
    d = tmp_path_factory.mktemp('inf')
    torch.manual_seed(0)
    save_model(create_model('eyenet', 2, SIZE), d/'eyenet', arch='eyenet', task='referable', size=SIZE, threshold=0.4)
    save_model(create_model('resnet18', 5, SIZE, pretrained=False), d/'resnet', arch='resnet18', task='grade', size=SIZE)
    ph = d/'photos'; ph.mkdir()
    for i in range(5): synth_fundus(i % 5, size=320, aspect=1.3, seed=i).save(ph/f'{i}_left.jpeg', quality=90)
    good = (ph/'0_left.jpeg').read_bytes()
    (ph/'cut.jpeg').write_bytes(good[:len(good)//3])          # transfer cut short
    (ph/'text.jpeg').write_text('this is not a photo\n')       # foreign file with a photo's name
    (ph/'empty.jpeg').write_bytes(b'')                         # zero bytes
    (ph/'noise.png').write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    synth_fundus(0, size=320, seed=9, defect='black').save(ph/'black.jpeg')  # a photo, but ungradable
    return d

BAD = {'cut.jpeg': 'truncated', 'text.jpeg': 'not_image', 'empty.jpeg': 'not_image', 'noise.png': 'not_image'}

def _by_name(df): return df.set_index(df.photo.map(lambda p: Path(p).name))

@pytest.mark.parametrize('workers', [0, 2])
def test_bad_files_get_rows(work, workers):
    df = predict(work/'eyenet', work/'photos', bs=2, workers=workers, progress=False)
    files = sorted(p.name for p in (work/'photos').iterdir())
    assert sorted(Path(p).name for p in df.photo) == files       # every file has exactly one row
    r = _by_name(df)
    for n, reason in BAD.items():
        assert r.loc[n, 'status'] == 'unreadable' and r.loc[n, 'reason'] == reason, (n, r.loc[n].to_dict())
        assert n in r.loc[n, 'detail']                           # the message names the file
    assert r.loc['black.jpeg', 'status'] == 'rejected' and r.loc['black.jpeg', 'reason'] == 'all_black'
    ok = df[df.status == 'ok']
    assert len(ok) == 5 and ok.label.notna().all() and (ok.threshold == 0.4).all()
    assert np.allclose(ok[['p_non-referable', 'p_referable']].sum(axis=1), 1, atol=1e-5)
    assert df.loc[df.status != 'ok', ['p_referable', 'label']].isna().all().all()

def test_pool_matches_single_process(work):
    a = predict(work/'eyenet', work/'photos', bs=3, workers=2, progress=False)
    b = predict(work/'eyenet', work/'photos', bs=16, workers=0, progress=False)
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-5)

def test_missing_file_row(work):
    df = predict(work/'eyenet', [work/'photos'/'0_left.jpeg', work/'nowhere.jpeg'], progress=False)
    assert df.status.tolist() == ['ok', 'unreadable'] and df.reason[1] == 'not_found'

def _cli(fn, *args):
    "Run a CLI the way its console script does (a file whose top level calls it with no arguments)."
    script = Path(tempfile.mkdtemp())/f'{fn}.py'
    script.write_text(f"import sys\nfrom eyenet.inference import {fn}\nif __name__ == '__main__': sys.exit({fn}())\n")
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True, timeout=300)

def test_predict_cli_writes_csv(work, tmp_path):
    out = tmp_path/'res'/'pred.csv'
    r = _cli('predict_cli', work/'eyenet', work/'photos', work/'photos'/'0_left.jpeg', '--out', out, '--workers', 2, '--quiet')
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(out)
    assert len(df) == 11 and '11 files: 6 ok, 1 rejected, 4 unreadable' in r.stderr
    assert list(df.columns) == ['photo', 'status', 'reason', 'detail', 'gradability', 'p_non-referable', 'p_referable', 'label', 'threshold']
    assert not list(out.parent.glob('.*tmp'))                     # written atomically, nothing left behind

def test_predict_cli_errors(work):
    r = _cli('predict_cli', work/'nowhere', work/'photos')
    assert r.returncode == 1 and 'eyenet-predict: ' in r.stderr and 'config.json' in r.stderr and 'Traceback' not in r.stderr
    with pytest.raises(CliError, match='no photos'): predict_cli(str(work/'eyenet'))

@pytest.mark.parametrize('name', ['eyenet', 'resnet'])
def test_onnx_parity(work, name, capsys):
    fn = export_onnx(work/name)
    assert fn == work/name/'model.onnx' and onnx_config(fn)['arch'] == json.loads((work/name/'config.json').read_text())['arch']
    d = parity(work/name, fn, work/'photos')
    assert 'max |PyTorch - ONNX|' in capsys.readouterr().out
    assert d < 1e-4
    sess = ort_session(fn, threads=1)                              # any batch size
    for n in (1, 7):
        assert sess.run(None, {'image': np.zeros((n, 3, SIZE, SIZE), np.float32)})[0].shape == (n, 5 if name == 'resnet' else 2)

def test_onnx_predict_path(work):
    export_onnx(work/'resnet')
    a = predict(work/'resnet', work/'photos', workers=0, progress=False)
    b = predict(work/'resnet'/'model.onnx', work/'photos', workers=0, progress=False)
    assert Predictor(work/'resnet'/'model.onnx').backend == 'onnx'
    assert a.label.fillna('').tolist() == b.label.fillna('').tolist() and a.threshold.isna().all()
    pc = [f'p_{g}' for g in range(5)]
    assert np.abs(a[pc].fillna(0).values - b[pc].fillna(0).values).max() < 1e-4

def test_export_cli(work, tmp_path):
    out = tmp_path/'x.onnx'
    r = _cli('export_cli', work/'eyenet', '--format', 'onnx', '--out', out)
    assert r.returncode == 0, r.stderr
    assert out.exists() and 'max |PyTorch - ONNX|' in r.stdout
    with pytest.raises(CliError, match='onnx or coreml'): export_cli(str(work/'eyenet'), format='tflite')

def test_loading_never_unpickles(work, monkeypatch):
    export_onnx(work/'eyenet')
    def boom(*a, **k): raise AssertionError('a model file was unpickled')
    for mod, name in ((torch, 'load'), (pickle, 'load'), (pickle, 'loads'), (pickle, 'Unpickler')):
        monkeypatch.setattr(mod, name, boom)
    for m in (work/'eyenet', work/'eyenet'/'model.onnx'):
        df = predict(Predictor(m), work/'photos'/'1_left.jpeg', progress=False)
        assert df.status[0] == 'ok'
    assert sorted(p.name for p in (work/'eyenet').iterdir()) == ['config.json', 'model.onnx', 'model.safetensors']

def test_cam_overlays(work, tmp_path):
    df = predict(work/'eyenet', work/'photos', cam=tmp_path/'cam', workers=0, progress=False)
    ok = df[df.status == 'ok']
    assert sorted(Path(p).name for p in ok.cam) == sorted(p.name for p in (tmp_path/'cam').iterdir())
    assert len(ok) == 5 and df.loc[df.status != 'ok', 'cam'].isna().all()

def test_coreml_conversion(work, tmp_path):
    ct = pytest.importorskip('coremltools', reason="coremltools not installed (optional extra: pip install 'eyenet[coreml]')")
    out = export_coreml(work/'eyenet', tmp_path/'m.mlpackage')
    assert (out/'Manifest.json').exists()
    spec = ct.models.MLModel(str(out), skip_model_load=True).get_spec()  # prediction itself needs macOS
    assert json.loads(spec.description.metadata.userDefined['eyenet_config'])['task'] == 'referable'
    assert [i.name for i in spec.description.input] == ['image'] and [o.name for o in spec.description.output] == ['probs']

def test_coreml_missing_is_clear(work, monkeypatch):
    import builtins
    real = builtins.__import__
    def imp(name, *a, **k):
        if name == 'coremltools': raise ImportError('no coremltools')
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, '__import__', imp)
    with pytest.raises(ImportError, match=r"eyenet\[coreml\]"): export_coreml(work/'eyenet')

def test_onnx_without_config_is_refused(work, tmp_path):
    fn = tmp_path/'plain.onnx'
    torch.onnx.export(create_model('eyenet', 2, SIZE).eval(), (torch.zeros(1, 3, SIZE, SIZE),), str(fn), dynamo=False, input_names=['image'])
    with pytest.raises(ValueError, match='no EyeNet config'): Predictor(fn)

def test_predict_cli_prints_table(work, capsys):
    predict_cli(str(work/'eyenet'), str(work/'photos'/'2_left.jpeg'), str(work/'photos'/'text.jpeg'), workers=0, quiet=True)
    out, err = capsys.readouterr()
    assert '2_left.jpeg' in out and 'not_image' in out and 'referable' in out
    assert '2 files: 1 ok, 0 rejected, 1 unreadable' in err

def test_worker_crash_does_not_stop_the_run(work, monkeypatch):
    "A photo whose worker process dies (even when retried alone, `parallel_unordered` then yields a `WorkerDied`) gets a row; the others are scored."
    import eyenet.score as res
    from eyenet.core import WorkerDied
    def parallel_unordered(fn, items, workers=None, preload=None): # the pool, except that the worker preparing 3_left.jpeg dies
        for i,x in enumerate(items): yield i, WorkerDied('the worker process died on item') if Path(x).name == '3_left.jpeg' else fn(x)
    monkeypatch.setattr(res, 'parallel_unordered', parallel_unordered)
    df = _by_name(predict(work/'eyenet', work/'photos', workers=2, progress=False))
    assert len(df) == 10 and (df.status == 'ok').sum() == 4
    assert df.loc['3_left.jpeg', ['status', 'reason']].tolist() == ['unreadable', 'crashed'] and '3_left.jpeg' in df.loc['3_left.jpeg', 'detail']

@pytest.fixture(scope='module')
def quality(work):
    "An untrained quality CNN saved with threshold 0: it refuses every photo it sees."
    torch.manual_seed(0)
    return save_model(create_model('eyenet', 3, SIZE), work/'quality', arch='eyenet', task='quality', size=SIZE, threshold=0.)

def test_predict_with_quality_model(work, quality):
    df = _by_name(predict(work/'eyenet', work/'photos', workers=0, quality_model=quality, progress=False))
    good = [f'{i}_left.jpeg' for i in range(5)]
    assert (df.loc[good, 'status'] == 'rejected').all() and (df.loc[good, 'reason'] == 'low_quality').all()
    assert df.loc[good, 'p_reject'].between(0, 1).all() and (df.loc[good, 'quality_verdict'] == 'reject').all()
    assert df.loc[good, 'detail'].str.contains('p_reject').all() and df.loc[good, ['p_referable', 'label']].isna().all().all()
    assert df.loc['black.jpeg', 'reason'] == 'all_black' and np.isnan(df.loc['black.jpeg', 'p_reject']) # no crop: the rules refused it
    assert list(df.columns[:7]) == ['photo', 'status', 'reason', 'detail', 'gradability', 'p_reject', 'quality_verdict']

def test_predict_cli_quality_model_from_config(work, quality, tmp_path):
    "`eyenet-predict` uses the quality model a DR model's config.json names (relative to the model folder)."
    m = tmp_path/'dr'
    shutil.copytree(work/'eyenet', m, ignore=shutil.ignore_patterns('*.onnx'))
    (m/'config.json').write_text(json.dumps(json.loads((m/'config.json').read_text()) | dict(quality_model=os.path.relpath(quality, m))))
    out = tmp_path/'p.csv'
    r = _cli('predict_cli', m, work/'photos', '--out', out, '--workers', 0, '--quiet')
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(out)
    assert (df.reason == 'low_quality').sum() == 5 and '10 files: 0 ok, 6 rejected, 4 unreadable' in r.stderr

def test_preprocess_cli_with_quality_model(work, quality, tmp_path):
    src = tmp_path/'src'; (src/'train').mkdir(parents=True)
    for f in sorted((work/'photos').glob('*_left.jpeg')): shutil.copy(f, src/'train'/f.name)
    r = _cli('preprocess_cli', '--help')
    assert r.returncode == 0 and '--quality-model' in r.stdout and '--size' in r.stdout and '--quiet' in r.stdout, r.stderr
    r = _cli('preprocess_cli', src, tmp_path/'dest', '--size', SIZE, '--workers', 0, '--quality-model', quality, '--quiet')
    assert r.returncode == 0, r.stderr
    man = pd.read_csv(tmp_path/'dest'/'manifest.csv')
    assert (man.reason == 'low_quality').sum() == 5 and man.p_reject.notna().sum() == 5 and 'low_quality 5' in r.stdout
    assert not list((tmp_path/'dest'/'train').glob('*.jpeg'))                 # refused crops are removed
    r = _cli('preprocess_cli', src, tmp_path/'dest2', '--quality-model', work/'eyenet', '--workers', 0, '--quiet')
    assert r.returncode == 1 and 'eyenet-preprocess: ' in r.stderr and 'not a quality model' in r.stderr
