"""Model: the eyenet-train CLI end to end and its arguments, exact save/load round trip, the quality task, and
(slow, `EYENET_SLOW=1`) two-process data-parallel training on CPU (gloo) through fastai's distributed path."""
import json, os, socket, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from PIL import Image
from eyenet.synthetic import sample_data
from eyenet.preprocess import preprocess
from eyenet.core import write_csv
from fastcore.script import CliError
from eyenet.learner import train, train_cli, train_table, eyenet_dls, eyenet_learner
from eyenet.model import load_model, prepare_image, predict_probs, EyeNetSeed, has_weights

SIZE = 64
ROOT = Path(__file__).resolve().parents[1]
CLI = "import sys\nfrom eyenet.learner import train_cli\nif __name__ == '__main__': sys.exit(train_cli())\n"  # pip's entry point
SLOW = os.environ.get('EYENET_SLOW') == '1'  # the repository's switch for tests that take minutes of CPU

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

@pytest.fixture(scope='module')
def qcsv(tmp_path_factory):
    "An EyeQ-style `image,quality` CSV made from the synthetic sample's own quality grades."
    fn = tmp_path_factory.mktemp('q')/'quality.csv'
    write_csv(pd.read_csv(sample_data()/'trainLabels.csv')[['image', 'quality']], fn)
    return fn

def _env():
    return {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'}

def _cli(script, *args):
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300)

def _check_run(out, processes=1, task='referable', classes=('non-referable', 'referable')):
    met = json.loads((out/'metrics.json').read_text())
    assert (out/'model.safetensors').stat().st_size > 0
    cfg = json.loads((out/'config.json').read_text())
    assert (cfg['arch'], cfg['task'], cfg['size'], cfg['classes']) == ('eyenet', task, SIZE, list(classes))
    assert met['processes'] == processes and met['note'] == 'synthetic' and met['epochs'] == 1 and len(met['history']) == 1
    assert (cfg['threshold'], cfg['threshold_source']) == (met['valid']['threshold'], 'validation')
    assert 'tuned on these validation patients' in met['threshold_note']
    return met, cfg

def test_cli(script, data, tmp_path):
    out = tmp_path/'run'
    r = _cli(script, data, '--task', 'referable', '--size', SIZE, '--epochs', 1, '--bs', 16, '--num-workers', 0, '--out', out,
             '--target-sens', 0.8, '--note', 'synthetic')
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'eyenet-train: referable with eyenet' in r.stdout and 'validation: roc_auc' in r.stdout
    met, cfg = _check_run(out)
    assert cfg['target'] == {'sensitivity': 0.8} and met['valid']['recall'] >= 0.8
    assert {'roc_auc', 'recall', 'specificity', 'tp', 'fn'} <= set(met['valid'])
    net, cfg2 = load_model(out)
    assert cfg2 == cfg and not net.training

def test_cli_help(script):
    "The command's flags are `train`'s parameters (delegated), with one meaning each."
    r = _cli(script, '--help')
    assert r.returncode == 0, r.stderr[-2000:]
    for f in ('--task', '--labels', '--arch', '--num-workers', '--target-sens', '--max-refused', '--refused-of', '--no-pretrained',
              '--quiet', '--find-lr', '--amp', '--balance', '--store', '--valid-pct'): assert f in r.stdout, f
    assert '--workers ' not in r.stdout and '--progress' not in r.stdout

def test_cli_errors(script, data, tmp_path):
    r = _cli(script, tmp_path, '--out', tmp_path/'x')    # the CLI exits with the message, no traceback
    assert r.returncode != 0 and 'eyenet-train:' in r.stderr and 'no label CSV' in r.stderr and 'Traceback' not in r.stderr
    with pytest.raises(CliError, match='unknown arch'): train_cli(str(data), arch='vgg', out=str(tmp_path/'x'))
    with pytest.raises(CliError, match='eyenet-train: unknown task'): train_cli(str(data), task='colour', out=str(tmp_path/'x'))
    if not has_weights('resnet18'):   # offline machine: a clear message, not a download timeout
        with pytest.raises(CliError, match='--no-pretrained'): train_cli(str(data), arch='resnet18', out=str(tmp_path/'x'))
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

def test_quality_cli(script, qcsv, tmp_path):
    """`eyenet-train --task quality --labels CSV`: a 3-class gate, split like the DR model, its refusal threshold tuned.
    It trains on the raw synthetic sample: `preprocess`'s rules already refuse every synthetic reject."""
    src, out = sample_data(), tmp_path/'q'
    r = _cli(script, src, '--task', 'quality', '--labels', qcsv, '--arch', 'eyenet', '--size', SIZE, '--epochs', 1, '--bs', 16,
             '--out', out, '--quiet', '--note', 'synthetic') # the small CNN: the task's own default, Lite0, is trained in 04c_learner
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout == ''  # --quiet
    met, cfg = _check_run(out, task='quality', classes=('good', 'usable', 'reject'))
    v = met['valid']
    assert cfg['target'] == {'gradable_refused': 0.05} and v['gradable_refused'] <= 0.05 # the default budget: good or usable photos
    assert cfg['norm'] == 'red-free'                                        # gates train in `QUALITY_NORM`
    assert v['n_reject'] > 0 and 0 <= v['caught'] <= 1 and 0 <= v['reject_auc'] <= 1
    assert np.array(v['confusion']).shape == (3, 3) and np.array(v['confusion']).sum() == met['n_valid'] == v['n']
    q, dr = train_table(src, qcsv, 'quality'), train_table(src)
    assert set(q[q.is_valid].patient) <= set(dr[dr.is_valid].patient)       # the DR model's held-out patients
    assert not set(q[~q.is_valid].patient) & set(dr[dr.is_valid].patient)
    assert met['n_valid'] == int(q.is_valid.sum())

def test_seed_params():
    assert sum(p.numel() for p in EyeNetSeed().parameters()) == 56_207_842

def test_tensorboard(data, tmp_path):
    "`tensorboard=True` writes TensorBoard event files."
    from fastai.callback.training import ShortEpochCallback
    learn = eyenet_learner(eyenet_dls(train_table(data), 'referable', size=SIZE, bs=16), 'eyenet', tensorboard=True, log_dir=tmp_path/'tb')
    with learn.no_bar(): learn.fit(1, 1e-3, cbs=ShortEpochCallback(0.3))
    assert list((tmp_path/'tb').glob('events.out.tfevents.*'))

# Each process records the training photos of its shard (the indices `_DistributedDL` hands it) and its final weights.
RANK_SCRIPT = """
import json, sys, torch
from pathlib import Path
import eyenet.learner as m
from fastai.vision.all import rank_distrib
seen = []
class Recorded(m._DistributedDL):
    def get_idxs(self):
        idxs = super().get_idxs()
        if self.dl.shuffle: seen.append(self.dataset.items['image'].iloc[idxs].tolist())  # the training loader's epochs
        return idxs
m._DistributedDL = Recorded
kw = json.loads(sys.argv[1])
learn, met = m.train(**kw)
r, out = rank_distrib(), Path(kw['out']).parent
out.mkdir(parents=True, exist_ok=True)  # rank 1 may finish before rank 0 has written the model
torch.save(learn.model.state_dict(), out/f'weights{r}.pt')
(out/f'seen{r}.json').write_text(json.dumps(seen))
"""

def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.mark.skipif(not SLOW, reason='slow (two training processes): set EYENET_SLOW=1')
def test_distributed_two_processes_cpu(data, tmp_path):
    "Two CPU processes under torchrun train through fastai's `DistributedTrainer` (gloo): different shards, identical weights."
    fn = tmp_path/'rank.py'; fn.write_text(RANK_SCRIPT)
    out = tmp_path/'ddp'/'model'
    kw = dict(data=str(data), task='referable', size=SIZE, epochs=1, bs=8, out=str(out), note='synthetic')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', str(_free_port()), str(fn), json.dumps(kw)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    met, cfg = _check_run(out, processes=2)
    assert r.stdout.count('validation: roc_auc') == 1   # only rank 0 reports and writes
    (s0,), (s1,) = (json.loads((out.parent/f'seen{i}.json').read_text()) for i in (0, 1))  # one epoch each
    assert len(s0) == len(s1) and len(set(s0) & set(s1)) <= 1     # different shards (padded by at most one photo)
    assert set(s0) | set(s1) == set(train_table(data).query('~is_valid').image) and met['n_train'] == len(set(s0) | set(s1))
    w0, w1 = (torch.load(out.parent/f'weights{i}.pt') for i in (0, 1))
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)
    net, _ = load_model(out)
    assert all(torch.equal(net.state_dict()[k], w0[k]) for k in w0)
