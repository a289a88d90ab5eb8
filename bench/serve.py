"""A bounded load run against `eyenet-serve` on 127.0.0.1: latency, throughput, errors and memory.

Starts the app (`eyenet.serve.create_app`) under uvicorn on a free loopback port in this process, with an untrained
EyeNetCNN at 256 px (timing does not depend on the weights) and the default limits, then sends `--n` requests of one
synthetic patient's two photos (full-size synthetic camera frames), `--concurrency` at a time; then the same again with
`--n-bad` bad requests mixed in (a text file named .jpeg, too many files, an oversized file, not a form), twice. Prints p50/p95
latency and requests per second of the good requests, the status of every request, and the resident memory of the
process before, between and after the runs. Stops by itself.

    python bench/serve.py [--n 200] [--concurrency 4] [--n-bad 50]
"""
import io, os, socket, threading, time, warnings
from concurrent.futures import ThreadPoolExecutor
from collections import Counter
import numpy as np, psutil, torch, httpx, uvicorn
from pathlib import Path
from fastcore.script import call_parse
from eyenet.synthetic import synth_fundus, CAMERAS
from eyenet.model import create_model, save_model
from eyenet.serve import create_app, LIMITS

def _jpeg(grade, seed, w, h):
    b = io.BytesIO(); synth_fundus(grade, size=h, aspect=w/h, seed=seed).save(b, 'JPEG', quality=92); return b.getvalue()

def _rss(): return psutil.Process().memory_info().rss/2**20

def _server(model):
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(model), host='127.0.0.1', port=port, log_level='error'))
    threading.Thread(target=srv.run, daemon=True).start()
    while not srv.started: time.sleep(0.05)
    return srv, f'http://127.0.0.1:{port}'

def _requests(pair, n, n_bad):
    "`n` good requests, with `n_bad` bad ones spread among them: `(kind, kwargs)`."
    good = ('good', dict(files=[('files', ('left.jpg', pair[0], 'image/jpeg')), ('files', ('right.jpg', pair[1], 'image/jpeg'))]))
    bad = [('text named .jpeg', dict(files=[('files', ('left.jpeg', b'not a photo\n', 'image/jpeg'))])),
           ('too many files', dict(files=[('files', (f'{i}.jpg', pair[0], 'image/jpeg')) for i in range(LIMITS.max_files + 1)])),
           ('file too large', dict(files=[('files', ('big.jpg', b'\xff\xd8\xff' + bytes(LIMITS.max_file_bytes + 1), 'image/jpeg'))])),
           ('not a form', dict(content=b'{}', headers={'content-type': 'application/json'}))]
    reqs = [good]*n
    for i in range(n_bad): reqs.insert(int((i + 0.5)*len(reqs)/max(n_bad, 1)), bad[i % len(bad)])
    return reqs

def _run(url, reqs, concurrency):
    "Send `reqs`, `concurrency` at a time; `(kind, status, seconds)` each, and the wall time."
    with httpx.Client(base_url=url, timeout=120) as c:
        def one(r):
            t0 = time.perf_counter(); resp = c.post('/api/screen', **r[1]); return r[0], resp.status_code, time.perf_counter() - t0
        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as ex: res = list(ex.map(one, reqs))
        return res, time.perf_counter() - t0

def _report(name, res, wall):
    good = [t for k, s, t in res if k == 'good' and s == 200]
    errors = sum(1 for k, s, t in res if k == 'good' and s != 200)
    print(f"{name}: {len(res)} requests in {wall:.1f} s; good: {len(good)} ok, {errors} errors, p50 {np.percentile(good, 50)*1e3:.0f} ms, "
          f"p95 {np.percentile(good, 95)*1e3:.0f} ms, {len(good)/wall:.2f} good requests/s")
    bad = Counter((k, s) for k, s, t in res if k != 'good')
    if bad: print('  bad requests answered: ' + ', '.join(f"{k} -> {s} x{n}" for (k, s), n in sorted(bad.items())))
    return errors

@call_parse
def main(n:int=200, # good requests per run
         concurrency:int=4, # requests in flight at a time
         n_bad:int=50, # bad requests mixed into the second run
         size:int=256, # network input side
        ):
    "Load-test the screening server on 127.0.0.1 and print latency, throughput, errors and memory."
    warnings.simplefilter('ignore', FutureWarning)
    import tempfile
    tmp = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    model = save_model(create_model('eyenet', 2, size), tmp/'model', arch='eyenet', task='referable', size=size, threshold=0.5)
    (w, h) = CAMERAS[0]
    pair = (_jpeg(0, 1, w, h), _jpeg(3, 2, w, h))
    print(f"photos: a synthetic patient, two {w}x{h} JPEG frames ({len(pair[0])//1024} and {len(pair[1])//1024} KiB); "
          f"model: untrained EyeNetCNN at {size} px; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    srv, url = _server(model)
    rss0 = _rss()
    e1 = _report('good only', *_run(url, _requests(pair, n, 0), concurrency))
    rss1 = _rss()
    e2 = _report(f'with {n_bad} bad mixed in', *_run(url, _requests(pair, n, n_bad), concurrency))
    rss2 = _rss()
    e3 = _report(f'the same again', *_run(url, _requests(pair, n, n_bad), concurrency))
    rss3 = _rss()
    print(f"resident memory of the server process: {rss0:.0f} MiB at start, {rss1:.0f} after the good run, {rss2:.0f} after the mixed run, "
          f"{rss3:.0f} after it again")
    print(f"errors on good requests: {e1 + e2 + e3} (aim 0); memory growth over the repeated mixed run: {rss3 - rss2:+.0f} MiB (aim: flat)")
    srv.should_exit = True
