"Batch, multiprocessing, kill -9 resume, archive, quality-verdict and not-a-fundus tests of `eyenet.preprocess` (synthetic photos; real ones when present)."
import hashlib, io, json, os, random, shutil, signal, subprocess, sys, time, zipfile
from pathlib import Path
import numpy as np, pandas as pd, pytest
from PIL import Image
from eyenet.synthetic import CAMERAS, make_sample, synth_fundus
from eyenet.download import split_file
from eyenet.core import shared_data, parallel_map
from eyenet.synthetic import NOT_FUNDUS, not_fundus_photo
from eyenet.preprocess import (COLUMNS, _LOCK, _LOG, _lock, _record, apply_quality, build_store,
                               open_store, preprocess, process_photo)

# a run of the library in a process of its own, to be killed (the command `eyenet-preprocess` is `eyenet.inference.preprocess_cli`)
RUN = ("import sys\nfrom eyenet.preprocess import preprocess\n"
       "if __name__ == '__main__': preprocess(sys.argv[1], sys.argv[2], workers=2, progress=False)\n")

def bomb_png(w=100_000, h=100_000):
    import struct, zlib
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 0, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(b'\0'*(w + 1)*16)) + chunk(b'IEND', b''))

@pytest.fixture(scope='module')
def sample(tmp_path_factory):
    "20 synthetic photos in the Kaggle layout, plus a truncated file, a non-image and a decompression bomb."
    src = make_sample(tmp_path_factory.mktemp('s')/'src', n=20, seed=3, size=384, bad=0.)
    good = sorted((src/'train').glob('*.jpeg'))
    data = good[0].read_bytes()
    (src/'train/900_left.jpeg').write_bytes(data[:len(data)//3])          # cut short in transfer
    (src/'train/900_right.jpeg').write_bytes(b'<html>404 Not Found</html>')  # not an image
    (src/'train/901_left.png').write_bytes(bomb_png())                      # a decompression bomb
    lab = pd.read_csv(src/'trainLabels.csv')
    extra = pd.DataFrame(dict(image=['900_left', '900_right', '901_left'], level=[0, 0, 0]))
    pd.concat([lab, extra]).to_csv(src/'trainLabels.csv', index=False)
    return src

def digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(Path(folder).rglob('*')) if p.is_file()}

def check_dest(dest, src_names):
    "Everything a finished run must leave: one manifest row per input, valid outputs, no temporary files."
    df = pd.read_csv(dest/'manifest.csv', keep_default_na=False)
    assert list(df.columns) == list(COLUMNS)
    assert sorted(df.source) == sorted(src_names) and df.source.is_unique
    ok = df[df.status == 'ok']
    outs = sorted(p.relative_to(dest).as_posix() for p in (dest/'train').iterdir())
    assert outs == sorted(ok.output)                   # one output per accepted photo, nothing else
    for o in ok.output:
        with Image.open(dest/o) as im: im.load(); assert im.size == (256, 256)
    assert (df[df.status != 'ok'].output == '').all() and (df[df.status != 'ok'].reason != '').all()
    assert not list(dest.rglob('*.tmp'))
    return df

def test_batch_workers(sample, tmp_path):
    before = digests(sample)
    df = preprocess(sample, tmp_path/'out', workers=2, progress=False)
    assert digests(sample) == before                   # originals never written
    names = [p.relative_to(sample).as_posix() for p in (sample/'train').iterdir()]
    check_dest(tmp_path/'out', names)
    why = dict(zip(df.image, df.reason))
    assert (why['900_left'], why['900_right'], why['901_left']) == ('truncated', 'not_image', 'too_large')
    assert (df.status == 'ok').sum() == 20
    assert (tmp_path/'out/trainLabels.csv').read_bytes() == (sample/'trainLabels.csv').read_bytes()
    # the same in this process gives the same manifest
    df0 = preprocess(sample, tmp_path/'out0', workers=0, progress=False)
    pd.testing.assert_frame_equal(df0, df)

def test_refusals(sample, tmp_path):
    with pytest.raises(ValueError, match='inside the source'): preprocess(sample, sample/'out', progress=False)
    with pytest.raises(ValueError, match='contain the source'): preprocess(sample, sample.parent, progress=False)
    preprocess(sample, tmp_path/'o', workers=0, pattern='train/1[0-3]_*', progress=False)
    with pytest.raises(ValueError, match='holds a run with'): preprocess(sample, tmp_path/'o', size=128, progress=False)
    with open(tmp_path/'o'/_LOCK, 'a') as f:          # another run holds the folder
        _lock(f)
        with pytest.raises(RuntimeError, match='another preprocess run'): preprocess(sample, tmp_path/'o', workers=0, progress=False)
        with pytest.raises(RuntimeError, match='another preprocess run'): apply_quality(tmp_path/'o', {}, 0.5)

def _lines(fn):
    try: return fn.read_bytes().count(b'\n')
    except FileNotFoundError: return 0

def test_kill9_resume(sample, tmp_path):
    "SIGKILL a run mid-way, repeatedly, with every core busy; the rerun finishes the job exactly once."
    src = tmp_path/'src'; (src/'train').mkdir(parents=True)
    photos = sorted((sample/'train').glob('*.jpeg'))[:8]
    big = [synth_fundus(i % 5, size=900, aspect=1.5, seed=i) for i in range(4)]
    for i in range(72):                                # 72 photos: 64 copies of 4 large frames + 8 small ones
        fn = src/'train'/f'{100 + i//2}_{"left" if i % 2 == 0 else "right"}.jpeg'
        if i < 64: big[i % 4].save(fn, quality=90)
        else: shutil.copy(photos[i - 64], fn)
    (src/'train/300_left.jpeg').write_bytes(b'not a photo')
    names = [p.relative_to(src).as_posix() for p in (src/'train').iterdir()]
    script = tmp_path/'run.py'; script.write_text(RUN)
    dest, log = tmp_path/'dest', tmp_path/'dest'/_LOG
    cmd = [sys.executable, str(script), str(src), str(dest)]
    rng, kills = random.Random(0), []
    for target in (5, 30, None, 55):                   # kill after this many logged photos; None: at a random moment
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        t0, wait_s = time.monotonic(), rng.uniform(0.2, 2.0)
        while p.poll() is None:
            if (target is not None and _lines(log) >= target) or (target is None and time.monotonic() - t0 > wait_s): break
            time.sleep(0.005)
        if p.poll() is None:
            if target == 30: p.send_signal(signal.SIGKILL)               # only the main process: workers must die with it
            else: os.killpg(p.pid, signal.SIGKILL)
            kills.append(_lines(log))
        p.wait()
        if target == 30:                               # no orphan may stay behind, writing into dest
            t0 = time.monotonic()
            while time.monotonic() - t0 < 10:
                try: os.killpg(p.pid, 0)
                except ProcessLookupError: break
                time.sleep(0.05)
            else: pytest.fail('worker processes outlived the killed main process')
    assert sum(0 < k < len(names) for k in kills) >= 2, kills   # at least two kills really were mid-run
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    df = check_dest(dest, names)
    logged = [json.loads(l)['source'] for l in log.read_bytes().splitlines()]
    assert sorted(logged) == sorted(names)             # every photo processed (and logged) exactly once
    assert (df.status == 'ok').sum() == 72 and df.set_index('image').reason['300_left'] == 'not_image'
    preprocess(src, dest, workers=2, progress=False)   # a rerun: nothing to do
    assert _lines(log) == len(names)

def test_options(sample, tmp_path):
    "Size, Ben Graham's normalisation, a pattern and the store, together."
    df = preprocess(sample, tmp_path/'g', size=128, norm='graham', workers=0, store=True, pattern='train/1[0-5]_*', progress=False)
    n = len(list((sample/'train').glob('1[0-5]_*')))
    assert n >= 4 and len(df) == n and (df.status == 'ok').all()
    im = Image.open(tmp_path/'g'/df.output[0])
    assert im.size == (128, 128)
    assert abs(np.asarray(im)[:6, :6].astype(int) - 128).max() < 8   # Ben Graham's mid-grey outside the disc
    arr, idx = open_store(tmp_path/'g')
    assert arr.shape == (n, 128, 128, 3) and list(idx.image) == list(df.image)
    with pytest.raises(FileNotFoundError, match='nope'): preprocess(tmp_path/'nope', tmp_path/'x', progress=False)

def test_split_archive(sample, tmp_path):
    "Straight from Kaggle-style split archives, never extracted: the same manifest and outputs as from the folder."
    kag = tmp_path/'kaggle'; kag.mkdir()
    with zipfile.ZipFile(tmp_path/'train.zip', 'w') as z:
        for p in sorted((sample/'train').iterdir()): z.write(p, f'train/{p.name}')
    split_file(tmp_path/'train.zip', (tmp_path/'train.zip').stat().st_size//3 + 1, kag)   # three parts
    with zipfile.ZipFile(kag/'trainLabels.csv.zip', 'w') as z: z.write(sample/'trainLabels.csv', 'trainLabels.csv')
    assert len(list(kag.glob('train.zip.0*'))) == 3
    a = preprocess(kag, tmp_path/'a', workers=2, progress=False)
    b = preprocess(sample, tmp_path/'b', workers=0, progress=False)
    pd.testing.assert_frame_equal(a, b)
    assert digests(tmp_path/'a/train') == digests(tmp_path/'b/train')
    assert (tmp_path/'a/trainLabels.csv').read_bytes() == (sample/'trainLabels.csv').read_bytes()
    assert not (kag/'train').exists()                # nothing extracted

def test_store(sample, tmp_path):
    preprocess(sample, tmp_path/'s', workers=0, progress=False, store=True)
    arr, idx = open_store(tmp_path/'s')
    assert arr.dtype == np.uint8 and arr.shape == (20, 256, 256, 3) and not arr.flags.writeable
    for i in (0, 7, 19): assert (arr[i] == np.asarray(Image.open(tmp_path/'s'/idx.output[i]))).all()
    lab = pd.read_csv(sample/'trainLabels.csv').set_index('image').level
    assert list(idx.level) == list(lab[idx.image])

SHAPES = [(w, h, cut) for w, h in CAMERAS for cut in ((0, 0.2) if w*h > 6e6 else (0.1,))] + [(4896, 3264, 0), (4000, 4000, 0)]

@pytest.mark.parametrize('w,h,cut', SHAPES, ids=[f'{w}x{h}-cut{c}' for w, h, c in SHAPES])
def test_every_shape_full_size(w, h, cut):
    "Every camera frame shape at full size (1.4 to 16 MP), whole and cut at top and bottom: a centred disc crop that passes the gate."
    size = round(h/(1 - cut))
    img = synth_fundus(2, size=size, aspect=w/h, cut=cut, seed=w + h)
    buf = io.BytesIO(); img.save(buf, 'JPEG', quality=90)
    out, rec = process_photo(buf.getvalue(), norm='none')   # the crop's geometry, before any normalisation
    W, H = img.size
    assert (rec['status'], rec['width'], rec['height'], out.size) == ('ok', W, H, (256, 256)), rec
    d = rec['right'] - rec['left']
    assert 0.86 < d/size < 0.99                        # synth_fundus paints a radius of 0.44-0.485 of `size`
    assert abs((rec['left'] + rec['right'])/2 - W/2) < 0.04*size and abs((rec['top'] + rec['bottom'])/2 - H/2) < 0.04*size
    a = np.asarray(out)
    assert a[3, 3].max() < 15 and a[128, 128].max() > 40       # corners dark, centre bright
    side = a[128, [3, -4]].max(1)
    if W > 1.02*d: assert (side > 15).all()                   # the disc reaches the sides of the crop
    if W < 0.98*d: assert (side < 15).all()                   # or the frame cut it there: black padding

class Boom(os.PathLike):
    "A photo path whose opening kills the worker process, like a decoder crash."
    def __fspath__(self): os._exit(3)

def test_worker_crash(sample, tmp_path):
    "A photo that kills its worker is rejected with a reason; the photos in flight with it are still processed."
    from eyenet.download import photo_sources
    from eyenet.preprocess import _process_all
    from eyenet.download import PhotoSource
    (tmp_path/'train').mkdir()
    srcs = photo_sources(sample/'train')[:10]
    tasks = [(s, str(tmp_path/'train'/f'{i}.jpeg'), 256, 'none') for i, s in enumerate(srcs)]
    tasks.insert(3, (PhotoSource('train/boom.jpeg', Boom()), str(tmp_path/'train/boom.jpeg'), 256, 'none'))
    recs = []
    _process_all(tasks, 2, recs.append)
    assert sorted(r['source'] for r in recs) == sorted(t[0].name for t in tasks)
    why = {r['source']: r for r in recs}
    assert why['train/boom.jpeg']['reason'] == 'unreadable' and 'worker process died' in why['train/boom.jpeg']['detail']
    assert sum(r['status'] == 'ok' for r in recs) == sum(why[s.name]['status'] == 'ok' for s in srcs) >= 7

def test_apply_quality(sample, tmp_path):
    "A quality model's verdicts: refused outputs removed, scores in the manifest, kept by reruns of both steps, the store rebuilt."
    before = digests(sample)
    m0 = preprocess(sample, tmp_path/'q', workers=2, store=True, progress=False)
    acc = m0.image[m0.status == 'ok'].tolist()
    p = pd.Series(np.linspace(0, 1, len(acc)), index=acc)
    m1 = apply_quality(tmp_path/'q', p, 0.7)
    bad = p.index[p >= 0.7]
    assert sorted(m1.image[m1.reason == 'low_quality']) == sorted(bad) and len(bad) >= 5
    assert (m1.set_index('image').p_reject[acc] == p[acc]).all() and m1.p_reject[~m1.image.isin(acc)].isna().all()
    check_dest(tmp_path/'q', m0.source)                # one output per accepted photo, nothing else
    assert digests(sample) == before                   # originals never touched
    assert sorted(open_store(tmp_path/'q')[1].image) == sorted(set(acc) - set(bad))
    assert apply_quality(tmp_path/'q', p, 0.7).equals(m1)
    assert preprocess(sample, tmp_path/'q', workers=2, progress=False).equals(m1)
    logged = [json.loads(l) for l in (tmp_path/'q'/_LOG).read_bytes().splitlines()]
    assert len(logged) == len(m1) and sum(r['reason'] == 'low_quality' for r in logged) == len(bad)

@pytest.mark.parametrize('kind', NOT_FUNDUS)
def test_not_fundus(kind):
    "A photo with no fundus in it (noise, a cat, coffee, a page of text, grey, white, a screen showing a grid) is refused as `not_fundus`."
    buf = io.BytesIO(); not_fundus_photo(kind).save(buf, 'JPEG', quality=90)
    _, rec = process_photo(buf.getvalue())
    assert (rec['status'], rec['reason']) == ('rejected', 'not_fundus'), {k: rec[k] for k in ('black', 'surround', 'grain', 'reason')}

@pytest.mark.skipif(shared_data('eyepacs-raw') is None, reason='the real photos (shared_data) are absent')
def test_real_photos_are_fundus():
    "None of the 24 raw camera photos nor a sample of the 256-px crops is refused as `not_fundus`; the gate accepts nearly all raw ones."
    raw, e256 = shared_data('eyepacs-raw'), shared_data('eyepacs-256')
    fns = sorted((raw/'train').glob('*.jpeg'))
    if e256 is not None: fns += sorted((e256/'train').glob('*.jpeg'))[::22]
    recs = parallel_map(_record, fns, workers=2)
    assert not [r['source'] for r in recs if r['reason'] == 'not_fundus']
    assert sum(r['status'] == 'ok' for r in recs[:24]) >= 19    # measured: 5 refused, the hazy ones
    eyeq = shared_data('eyeq-quality.csv')
    if eyeq is not None:                                           # of those graders call good or usable, at most one
        q = pd.read_csv(eyeq).set_index('image').quality
        graded = [r for f, r in zip(fns[:24], recs[:24]) if q.get(Path(f).stem, 2) in (0, 1)]
        assert len(graded) == 8 and sum(r['status'] != 'ok' for r in graded) <= 1

def test_gate_both_looks():
    "The rule-based gate accepts synthetic fundus photos as a camera delivers them and as the dev photos look (cropped and equalised), with sharpness on one scale."
    from eyenet.preprocess import equalize, fundus_mask, NORM
    jpeg = lambda im: (im.save(b := io.BytesIO(), 'JPEG', quality=95), b.getvalue())[1]
    for seed in range(6):
        cam = jpeg(synth_fundus(seed % 3, size=900, aspect=1.5, cut=0.1, seed=seed))    # camera-like: red-orange, cut at top and bottom
        crop, rec = process_photo(cam, norm='none')
        assert rec['status'] == 'ok', (seed, rec['reason'], rec['gradability'])
        out, req = process_photo(jpeg(equalize(crop)))                           # the public 256 px look
        assert req['status'] == 'ok', (seed, req['reason'], req['gradability'])
        assert 0.5 < req['sharpness']/rec['sharpness'] < 2, (rec['sharpness'], req['sharpness'])
        for im in (process_photo(cam, norm=NORM)[0], out):                        # both end in the one look: each channel spread evenly
            a = np.asarray(im); m = fundus_mask(a)
            assert np.abs(np.median(a[m], 0) - 128).max() < 20 and a[~m].max() <= 10   # outside the fundus: black
