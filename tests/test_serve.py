"The screening page: every error path of the API (TestClient), and the page as a person uses it, in Debian's Chromium (Playwright)."
import io, json, os, shutil, socket, threading, time
from pathlib import Path
import pytest, torch
from fastapi.testclient import TestClient
from eyenet.synthetic import synth_fundus
from eyenet.model import create_model, save_model
from eyenet.dicom import photo_dicom
from eyenet.serve import create_app, NOT_FOR_DIAGNOSIS

def _jpeg(grade, seed, **kw):
    b = io.BytesIO(); synth_fundus(grade, size=320, seed=seed, **kw).save(b, 'JPEG', quality=90); return b.getvalue()

@pytest.fixture(scope='module')
def mdir(tmp_path_factory):
    torch.manual_seed(0)
    return save_model(create_model('eyenet', 2, 64), tmp_path_factory.mktemp('serve')/'model', arch='eyenet', task='referable', size=64, threshold=0.5)

@pytest.fixture(scope='module')
def client(mdir): return TestClient(create_app(mdir, limits=dict(max_files=3, max_file_bytes=200_000, max_total_bytes=400_000)))

def pair(): return [('files', ('left.jpg', _jpeg(0, 1), 'image/jpeg')), ('files', ('right.jpg', _jpeg(3, 2), 'image/jpeg'))]

def test_screen_pair(client):
    r = client.post('/api/screen', files=pair(), data={'patient': 'p 1/../x'})
    assert r.status_code == 200
    a = r.json(); p = a['patients'][0]
    assert p['patient'] == 'p_1_x' and p['decision'] in ('refer', 'rescreen') and p['left_overlay'] and p['right_overlay']
    assert [f['name'] for f in a['files']] == ['left.jpg', 'right.jpg'] and a['notice'] == NOT_FOR_DIAGNOSIS
    assert 'eyenet-serve-' not in r.text and '/tmp' not in r.text

def test_dicom_upload(tmp_path):
    "A DICOM photo of one eye: the patient and eye from its header, and a decision that says the other eye is not screened."
    torch.manual_seed(0) # an untrained network scores about 0.5: a high threshold makes its answer 'rescreen'
    m = save_model(create_model('eyenet', 2, 64), tmp_path/'model', arch='eyenet', task='referable', size=64, threshold=0.99)
    fn = photo_dicom(synth_fundus(0, size=320, seed=3), tmp_path/'IM1', 'D7', 'right')
    r = TestClient(create_app(m)).post('/api/screen', files=[('files', ('IM1', fn.read_bytes(), 'application/dicom'))])
    a = r.json()
    assert r.status_code == 200 and a['patients'][0]['patient'] == 'D7' and a['files'][0]['kind'] == 'dicom'
    assert 'only one eye photographed' in a['patients'][0]['reason']

@pytest.mark.parametrize('what,kw,status', [
    ('too many files', lambda: dict(files=pair()*2), 413),
    ('a file too large', lambda: dict(files=[('files', ('big.jpg', b'\xff\xd8\xff' + b'0'*250_000, 'image/jpeg'))]), 413),
    ('a request too large', lambda: dict(content=b'x'*500_000, headers={'content-type': 'multipart/form-data; boundary=x'}), 413),
    ('no files', lambda: dict(files={'patient': (None, 'x')}), 400),
    ('not multipart', lambda: dict(content=b'{}', headers={'content-type': 'application/json'}), 415),
    ('a broken form', lambda: dict(content=b'--x\r\nrubbish', headers={'content-type': 'multipart/form-data; boundary=x'}), 400)])
def test_bad_requests(client, what, kw, status):
    r = client.post('/api/screen', **kw())
    assert r.status_code == status and r.json()['error'], what
    assert client.get('/api/health').json()['status'] == 'ok'       # and the server goes on

def test_bad_files_get_reasons(client):
    "Content from the bytes, not the name: a text file named .jpeg, a decompression bomb, an empty file: each a reason, the request answered."
    import struct, zlib
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
    bomb = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 100_000, 100_000, 8, 0, 0, 0, 0)) + chunk(b'IEND', b'')
    files = [('files', ('eye_left.jpeg', b'this is not a photo\n', 'image/jpeg')), ('files', ('right.png', bomb, 'image/png')),
             ('files', ('left2.jpg', b'', 'image/jpeg'))]
    r = client.post('/api/screen', files=files)
    assert r.status_code == 200
    got = {f['name']: (f['kind'], f['reason']) for f in r.json()['files']}
    assert got == {'eye_left.jpeg': ('', 'not_image'), 'right.png': ('png', 'too_large'), 'left2.jpg': ('', 'not_image')}
    assert r.json()['patients'][0]['decision'] == 'refer'        # the left eye ungradable on two photos

def test_busy_and_routes(mdir, client):
    r = TestClient(create_app(mdir, limits=dict(queue=0))).post('/api/screen', files=pair())
    assert r.status_code == 503 and r.headers['retry-after'] == '5' and 'busy' in r.json()['error']
    assert client.get('/api/nowhere').status_code == 404 and client.get('/api/nowhere').json()['error']
    assert client.get('/api/model').json()['threshold'] == 0.5
    html = client.get('/').text
    assert 'not a medical device' in html and 'http://' not in html and 'https://' not in html
    assert client.get('/docs').status_code == 404                   # no API docs page (it would fetch a CDN)

def test_nothing_kept(mdir, tmp_path, monkeypatch):
    "Uploads live in a temporary folder removed with the answer."
    import tempfile
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    TestClient(create_app(mdir)).post('/api/screen', files=pair())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('eyenet-serve-')]

# --- the page in a real browser ---
CHROME = os.environ.get('CHROME') or shutil.which('chromium') or shutil.which('google-chrome')

def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.fixture
def server(mdir):
    "The app under uvicorn on a free loopback port, stopped when the test ends."
    import uvicorn
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(mdir), host='127.0.0.1', port=port, log_level='warning'))
    t = threading.Thread(target=srv.run, daemon=True); t.start()
    for _ in range(200):
        if srv.started: break
        time.sleep(0.05)
    yield f'http://127.0.0.1:{port}'
    srv.should_exit = True; t.join(10)

def test_page_in_browser(server, tmp_path):
    if not CHROME:
        if os.environ.get('CI') == 'true': pytest.fail('no Chromium on CI: .ci/run installs Debian\'s chromium')
        pytest.skip("no Chromium found (install Debian's chromium, or set CHROME=/path/to/chrome)")
    from playwright.sync_api import sync_playwright
    (tmp_path/'left.jpg').write_bytes(_jpeg(0, 1)); (tmp_path/'right.jpg').write_bytes(_jpeg(3, 2))
    (tmp_path/'notes.jpeg').write_text('this is not a photo\n')
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROME, args=['--no-sandbox'])
        pg = b.new_page(viewport=dict(width=1100, height=900))
        pg.goto(server)
        assert 'not a medical device' in pg.inner_text('#notice')
        pg.wait_for_function("document.querySelector('#model').textContent.includes('eyenet')")
        pg.set_input_files('#files', [str(tmp_path/'left.jpg'), str(tmp_path/'right.jpg')])
        pg.click('#go')
        pg.wait_for_selector('#result:not([hidden])', timeout=60_000)
        assert pg.inner_text('#decision') in ('REFER', 'RESCREEN')
        assert pg.locator('img.overlay').count() == 2 and pg.locator('img.photo').count() == 2
        pg.wait_for_function("[...document.querySelectorAll('img.overlay')].every(i => i.complete && i.naturalWidth > 0)")
        pg.screenshot(path=str(tmp_path/'page.png'), full_page=True)
        if os.environ.get('EYENET_SCREENSHOT'): shutil.copy(tmp_path/'page.png', os.environ['EYENET_SCREENSHOT'])
        pg.set_input_files('#files', [str(tmp_path/'notes.jpeg')])
        pg.click('#go')
        pg.wait_for_function("document.querySelector('#filerows') && document.querySelector('#filerows').innerText.includes('not_image')", timeout=60_000)
        assert 'notes.jpeg' in pg.inner_text('#filerows')
        pg.screenshot(path=str(tmp_path/'bad-file.png'), full_page=True)
        b.close()
    assert (tmp_path/'page.png').stat().st_size > 10_000
