"Model: the eyenet-train CLI end to end, exact save/load round trip, and 2-process DDP training on CPU (gloo)."
import json, os, subprocess, sys
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from eyenet.synthetic import sample_data
from eyenet.preprocess import preprocess
from fastcore.script import CliError
from eyenet.model import train, train_cli, load_model, prepare_image, predict_probs, EyeNetSeed, has_weights

SIZE = 64
ROOT = Path(__file__).resolve().parents[1]
CLI = "import sys\nfrom eyenet.model import train_cli\nif __name__ == '__main__': sys.exit(train_cli())\n"  # pip's entry point

@pytest.fixture(scope='module')
def script(tmp_path_factory):
    "A file that runs `eyenet-train` the way its console script does."
    fn = tmp_path_factory.mktemp('cli')/'eyenet_train.py'
    fn.write_text(CLI)
    return fn

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    "The synthetic sample, cropped to 64 px."
    d = tmp_path_factory.mktemp('model')/'sample-64'
    preprocess(sample_data(), d, size=SIZE, workers=0, progress=False)
    return d

def _env():
    return {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'}

def _cli(script, *args):
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300)

def _check_run(out, processes=1):
    met = json.loads((out/'metrics.json').read_text())
    assert (out/'model.safetensors').stat().st_size > 0
    cfg = json.loads((out/'config.json').read_text())
    assert (cfg['arch'], cfg['task'], cfg['size'], cfg['classes']) == ('eyenet', 'referable', SIZE, ['non-referable', 'referable'])
    assert met['processes'] == processes and met['note'] == 'synthetic' and met['epochs'] == 1
    assert {'auc', 'sensitivity', 'specificity'} <= set(met['valid']) and len(met['history']) == 1
    return met, cfg

def test_cli(script, data, tmp_path):
    out = tmp_path/'run'
    r = _cli(script, data, '--task', 'referable', '--size', SIZE, '--epochs', 1, '--bs', 16, '--out', out, '--note', 'synthetic')
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'eyenet-train: referable with eyenet' in r.stdout and 'validation: auc' in r.stdout
    met, cfg = _check_run(out)
    net, cfg2 = load_model(out)
    assert cfg2 == cfg and not net.training

def test_cli_errors(script, data, tmp_path):
    r = _cli(script, tmp_path, '--out', tmp_path/'x')    # the CLI exits with the message, no traceback
    assert r.returncode != 0 and 'eyenet-train:' in r.stderr and 'no label CSV' in r.stderr and 'Traceback' not in r.stderr
    with pytest.raises(CliError, match='unknown arch'): train_cli(str(data), arch='vgg', out=str(tmp_path/'x'))
    if not has_weights('resnet18'):   # offline machine: a clear message, not a download timeout
        with pytest.raises(CliError, match='--pretrained false'): train_cli(str(data), arch='resnet18', out=str(tmp_path/'x'))
    assert not (tmp_path/'x'/'model.safetensors').exists()

def test_roundtrip_exact(data, tmp_path):
    "The saved model gives bit-identical predictions to the trained one, on photos prepared by `prepare_image`."
    learn, met = train(data, task='referable', size=SIZE, epochs=1, bs=16, out=tmp_path/'m', progress=False, note='synthetic')
    net, cfg = load_model(tmp_path/'m')
    ref = learn.model.to(memory_format=torch.contiguous_format).cpu().eval()
    for (k, a), (k2, b) in zip(ref.state_dict().items(), net.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    paths = list(learn.dls.valid_ds.items['path'])
    x = torch.stack([prepare_image(Image.open(p), cfg) for p in paths])
    np.testing.assert_array_equal(predict_probs(net, x), predict_probs(ref, x))
    assert predict_probs(net, x).shape == (len(paths), 2)

def test_seed_params():
    assert sum(p.numel() for p in EyeNetSeed().parameters()) == 56_207_842

def test_ddp_two_processes_cpu(script, data, tmp_path):
    "Two processes train one epoch with DistributedDataParallel over gloo, launched by torchrun."
    out = tmp_path/'ddp'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', '29517', str(script),
           str(data), '--task', 'referable', '--size', str(SIZE), '--epochs', '1', '--bs', '8', '--out', str(out), '--note', 'synthetic']
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    met, cfg = _check_run(out, processes=2)
    assert r.stdout.count('validation: auc') == 1   # only rank 0 reports and writes
    load_model(out)

def test_tensorboard(data, tmp_path):
    "`tensorboard=True` writes TensorBoard event files."
    from fastai.callback.training import ShortEpochCallback
    from eyenet.data import read_labels, find_labels, patient_split
    from eyenet.model import eyenet_dls, eyenet_learner
    df = patient_split(read_labels(find_labels(data), data/'train'))
    learn = eyenet_learner(eyenet_dls(df, 'referable', size=SIZE, bs=16), 'eyenet', tensorboard=True, log_dir=tmp_path/'tb')
    with learn.no_bar(): learn.fit(1, 1e-3, cbs=ShortEpochCallback(0.3))
    assert list((tmp_path/'tb').glob('events.out.tfevents.*'))
