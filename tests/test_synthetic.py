"Tests of `eyenet.synthetic` that fit pytest better than the notebook: the CLI, racing processes, a killed writer."
import os, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from eyenet.synthetic import CAMERAS, DEFECT_QUALITY, DEFECTS, make_sample, sample_data

# what pip's console-script wrapper for `eyenet-synth` does
WRAPPER = "import sys\nfrom eyenet.synthetic import synth_cli\nif __name__ == '__main__':\n    sys.exit(synth_cli())\n"


def _umask():
    u = os.umask(0); os.umask(u); return u


def _run_cli(tmp_path, *args):
    w = tmp_path/'eyenet_synth_wrapper.py'
    w.write_text(WRAPPER)
    return subprocess.run([sys.executable, str(w), *args], capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_cli_writes_kaggle_layout(tmp_path):
    r = _run_cli(tmp_path, str(tmp_path/'s'), '--n', '6', '--seed', '3', '--size', '128')
    assert r.returncode == 0, r.stderr
    assert 'wrote 6 synthetic photos' in r.stdout
    lbl = pd.read_csv(tmp_path/'s'/'trainLabels.csv')
    assert list(lbl.columns) == ['image', 'level', 'quality']
    assert (tmp_path/'s').stat().st_mode & 0o005 == (0o777 & ~_umask()) & 0o005   # not private like a mkdtemp folder
    assert sorted(o.name for o in (tmp_path/'s'/'train').iterdir()) == sorted(lbl.image + '.jpeg')
    # same seed through the library: same bytes
    make_sample(tmp_path/'lib', n=6, seed=3, size=128)
    for o in (tmp_path/'s'/'train').iterdir(): assert o.read_bytes() == (tmp_path/'lib'/'train'/o.name).read_bytes()


def test_cli_refuses_existing_and_bad_n(tmp_path):
    (tmp_path/'s').mkdir(); (tmp_path/'s'/'keep.txt').write_text('mine')
    r = _run_cli(tmp_path, str(tmp_path/'s'), '--n', '4')
    assert r.returncode == 1 and r.stderr.startswith('eyenet-synth: ') and 'not empty' in r.stderr and 'Traceback' not in r.stderr
    assert (tmp_path/'s'/'keep.txt').read_text() == 'mine'
    r = _run_cli(tmp_path, str(tmp_path/'t'), '--n', '5')
    assert r.returncode == 1 and r.stderr.startswith('eyenet-synth: ') and 'even' in r.stderr
    assert not (tmp_path/'t').exists()


def test_cli_quiet_and_workers(tmp_path):
    "`--quiet` prints nothing; `--workers 2` paints on two worker processes, the same bytes as in this process."
    r = _run_cli(tmp_path, str(tmp_path/'s'), '--n', '8', '--seed', '2', '--size', '96', '--bad', '0.5', '--workers', '2', '--quiet')
    assert r.returncode == 0, r.stderr
    assert r.stdout == '' and r.stderr == ''
    make_sample(tmp_path/'lib', n=8, seed=2, size=96, bad=0.5, workers=0)
    for f in ('trainLabels.csv', 'truth.csv'): assert (tmp_path/'s'/f).read_bytes() == (tmp_path/'lib'/f).read_bytes()
    for o in (tmp_path/'s'/'train').iterdir(): assert o.read_bytes() == (tmp_path/'lib'/'train'/o.name).read_bytes()


def test_quality_labels_follow_the_defects(tmp_path):
    "Every photo's quality grade is the one its defect carries; with many bad captures every kind and every grade occurs."
    s = make_sample(tmp_path/'s', n=60, seed=1, size=64, bad=0.8, workers=0)
    lbl, truth = pd.read_csv(s/'trainLabels.csv'), pd.read_csv(s/'truth.csv')
    assert lbl.quality.tolist() == [DEFECT_QUALITY[d if isinstance(d, str) else None] for d in truth.defect]
    assert set(truth.defect.dropna()) == set(DEFECTS) and set(lbl.quality) == {0, 1, 2}
    from eyenet.data import task_rows, task_table
    t = task_rows(task_table(s, 'quality'), 'quality')
    assert len(t) == 60 and t.quality.tolist() == lbl.quality.tolist()


def test_cli_full_size_frames(tmp_path):
    "`--size 0` writes real camera frames, 1.3 to 16 megapixels."
    r = _run_cli(tmp_path, str(tmp_path/'s'), '--n', '4', '--seed', '1', '--size', '0', '--bad', '0')
    assert r.returncode == 0, r.stderr
    truth = pd.read_csv(tmp_path/'s'/'truth.csv')
    for t in truth.itertuples():
        with Image.open(tmp_path/'s'/'train'/f'{t.image}.jpeg') as im:
            assert im.size == (t.width, t.height)
            assert 1.3 <= im.size[0]*im.size[1]/1e6 <= 16
            assert any(abs(im.size[0] - w) <= 2 and abs(im.size[1] - h) <= 2 for w, h in CAMERAS)


_RACE = """
import os, sys
from eyenet.synthetic import sample_data
print(sample_data(n=20, size=128, seed=5))
"""


def test_sample_data_race(tmp_path):
    "Two processes asking for the same sample at once both get the one complete folder."
    env = {**os.environ, 'EYENET_HOME': str(tmp_path/'home')}
    ps = [subprocess.Popen([sys.executable, '-c', _RACE], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in ps]
    assert all(p.returncode == 0 for p in ps), [o[1] for o in outs]
    paths = {o[0].strip() for o in outs}
    assert paths == {str(tmp_path/'home'/'sample-20-128-5')}
    assert [o.name for o in (tmp_path/'home').iterdir()] == ['sample-20-128-5']   # no temporary folders left
    assert len(pd.read_csv(tmp_path/'home'/'sample-20-128-5'/'trainLabels.csv')) == 20


_SLOW = """
from eyenet.synthetic import make_sample
make_sample(r'{dest}', n=400, size=256, workers=0)
"""


def test_killed_writer_leaves_no_sample(tmp_path):
    "kill -9 halfway: `dest` does not exist (only a hidden temporary folder), and a new run then succeeds."
    dest = tmp_path/'s'
    p = subprocess.Popen([sys.executable, '-c', _SLOW.format(dest=dest)])
    deadline = time.time() + 60
    while time.time() < deadline:                      # wait until photos are being written
        tmps = [o for o in tmp_path.iterdir() if o.name.startswith('.s-')]
        if tmps and (tmps[0]/'train').exists() and len(list((tmps[0]/'train').iterdir())) > 5: break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    assert not dest.exists()
    assert make_sample(dest, n=4, size=64) == dest
    assert len(pd.read_csv(dest/'trainLabels.csv')) == 4


def test_workers_same_bytes(tmp_path):
    "Painting on worker processes gives the same sample, byte for byte, as painting in this process."
    a = make_sample(tmp_path/'a', n=12, seed=4, size=96, bad=0.3, workers=0)
    b = make_sample(tmp_path/'b', n=12, seed=4, size=96, bad=0.3, workers=2)
    for f in ('trainLabels.csv', 'truth.csv'): assert (a/f).read_bytes() == (b/f).read_bytes()
    for o in (a/'train').iterdir(): assert o.read_bytes() == (b/'train'/o.name).read_bytes()


def test_sample_data_removes_stale_leftovers(tmp_path, monkeypatch):
    "A killed writer's temporary folder is removed once it is an hour old; a fresh one (someone still writing) is kept."
    monkeypatch.setenv('EYENET_HOME', str(tmp_path))
    old, new = tmp_path/'.sample-4-64-0-old', tmp_path/'.sample-4-64-0-new'
    for d in (old, new): (d/'train').mkdir(parents=True)
    t = time.time() - 7200
    for p in (old/'train', old): os.utime(p, (t, t))
    assert sample_data(n=4, size=64) == tmp_path/'sample-4-64-0'
    assert not old.exists() and new.exists()
