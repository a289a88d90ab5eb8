"Tests of `eyenet.download` that fit pytest better than the notebook: CLI subprocesses, worker processes, many damaged sets."
import functools, http.server, io, json, multiprocessing as mp, os, random, stat, subprocess, sys, threading, zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from fastcore.basics import AttrDict

from eyenet.download import (EYEQ, ArchiveError, FetchError, KaggleError, MultiPartFile, archive_parts, download,
                             fetch_url, iter_photos, kaggle_credentials, open_archive, open_source, photo_sources,
                             read_source, safe_extract, split_file)

ROOT = Path(__file__).resolve().parents[1]
# what pip's console-script wrapper for `eyenet-download` does
WRAPPER = "import sys\nfrom eyenet.download import download_cli\nif __name__ == '__main__':\n    sys.exit(download_cli())\n"


def _clean_env(home, **kw):
    "An environment without any Kaggle credentials, `home` as HOME."
    env = {k: v for k, v in os.environ.items() if not k.startswith('KAGGLE_') and k not in ('HOME', 'XDG_CONFIG_HOME')}
    return {**env, 'HOME': str(home), 'COLUMNS': '120', **kw}


def _run_cli(tmp_path, *args, env=None):
    w = tmp_path / 'eyenet_download_wrapper.py'
    w.write_text(WRAPPER)
    return subprocess.run([sys.executable, str(w), *args], capture_output=True, text=True, timeout=120,
                          env=env or _clean_env(tmp_path / 'home'), cwd=tmp_path)


@pytest.fixture(scope='module')
def zipset(tmp_path_factory):
    "A zip of random members (stored and deflated, some larger than a part), and its bytes split into parts."
    d = tmp_path_factory.mktemp('zipset')
    rnd = random.Random(0)
    members = {}
    with zipfile.ZipFile(d / 'train.zip', 'w') as z:
        for i in range(60):
            n = rnd.choice([10, 300, 5000, 40000])
            data = rnd.randbytes(n) if i % 3 else bytes(rnd.choice(b'ab') for _ in range(n))
            name = f'train/{i}_{"left" if i % 2 else "right"}.jpeg'
            z.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if i % 2 else zipfile.ZIP_STORED)
            members[name] = data
    return AttrDict(dir=d, zip=d / 'train.zip', members=members)


def _split(zs, dest, part_size):
    dest.mkdir(parents=True, exist_ok=True)
    return split_file(zs.zip, part_size, dest)


# --- the command line -------------------------------------------------------------------------------------------

def test_help_explains_itself(tmp_path):
    r = _run_cli(tmp_path, '--help')
    assert r.returncode == 0, r.stderr
    for o in ('usage:', '--dataset', 'eyepacs', 'aptos', '--dest', '--what', '--extract',
              'kaggle.json', 'KAGGLE_USERNAME', 'rules', 'resum'):
        assert o in r.stdout, o


def test_installed_entry_point_help():
    exe = Path(sys.executable).parent / 'eyenet-download'
    if not exe.exists(): pytest.skip('eyenet-download is not installed in this environment')
    r = subprocess.run([str(exe), '--help'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and '--dataset {eyepacs,aptos,eyeq}' in r.stdout


def test_cli_without_credentials_says_what_to_do(tmp_path):
    r = _run_cli(tmp_path, '--dest', str(tmp_path / 'dl'))
    assert r.returncode == 1
    assert 'No Kaggle API credentials found' in r.stderr and 'chmod 600' in r.stderr and 'KAGGLE_KEY' in r.stderr
    assert 'Traceback' not in r.stderr


def test_cli_honours_kaggle_config_dir(tmp_path):
    cfg = tmp_path / 'cfg'
    r = _run_cli(tmp_path, '--dest', str(tmp_path / 'dl'), env=_clean_env(tmp_path / 'home', KAGGLE_CONFIG_DIR=str(cfg)))
    assert r.returncode == 1 and f'{cfg}/kaggle.json' in r.stderr


def test_cli_errors_name_the_command(tmp_path):
    "An error of the library is one line naming the command, exit status 1, no traceback."
    r = _run_cli(tmp_path, '--dataset', 'aptos', '--what', 'sample', '--dest', str(tmp_path / 'dl'))
    assert r.returncode == 1 and r.stderr.startswith("eyenet-download: ") and "no 'sample' files" in r.stderr
    assert 'Traceback' not in r.stderr


def test_cli_bad_choice(tmp_path):
    r = _run_cli(tmp_path, '--dataset', 'messidor')
    assert r.returncode == 2 and "invalid choice: 'messidor'" in r.stderr


def test_import_does_not_import_kaggle():
    "Importing `kaggle` logs in (and old versions exit without credentials): `eyenet.download` must not do it on import."
    code = "import sys, eyenet.download; assert 'kaggle' not in sys.modules, 'kaggle imported'"
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


# --- credentials and Kaggle's errors, with a stand-in client --------------------------------------------------------

class StandIn:
    "Stand-in for `kaggle.KaggleApi`; `fail` maps a file name (or 'list') to an HTTP status to raise."
    def __init__(self, files, fail=None): self.files, self.fail, self.calls = files, fail or {}, []

    def _raise(self, what):
        if what in self.fail:
            import requests
            r = requests.Response(); r.status_code = self.fail[what]
            raise requests.exceptions.HTTPError(f'{r.status_code} Client Error', response=r)

    def competition_list_files(self, competition, page_token=None, page_size=20):
        self._raise('list')
        return AttrDict(files=[AttrDict(name=n, total_bytes=len(b)) for n, b in sorted(self.files.items())], next_page_token='')

    def competition_download_file(self, competition, file_name, path=None, force=False, quiet=False):
        self.calls.append(file_name)
        self._raise(file_name)
        out = Path(path) / file_name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(self.files[file_name])


def _eyepacs_files(zs, tmp_path):
    lab = io.BytesIO()
    with zipfile.ZipFile(lab, 'w') as z: z.writestr('trainLabels.csv', 'image,level\n1_left,0\n')
    parts = _split(zs, tmp_path / 'served', zs.zip.stat().st_size // 5 + 1)
    assert len(parts) == 5
    return {'trainLabels.csv.zip': lab.getvalue(), **{p.name: p.read_bytes() for p in parts}}


@pytest.mark.parametrize('where,code,expect', [('list', 403, 'I understand and accept'), ('train.zip.002', 403, '/rules'),
                                               ('list', 401, 'HTTP 401'), ('train.zip.001', 404, 'HTTP 404')])
def test_kaggle_errors_are_explained_and_secret_free(tmp_path, monkeypatch, capsys, zipset, where, code, expect):
    monkeypatch.setenv('KAGGLE_USERNAME', 'alice'); monkeypatch.setenv('KAGGLE_KEY', 'SECRET-KEY-123')
    files = _eyepacs_files(zipset, tmp_path)
    with pytest.raises(KaggleError) as e: download('eyepacs', tmp_path / 'dl', api=StandIn(files, {where: code}))
    out = capsys.readouterr()
    assert expect in str(e.value)
    for text in (str(e.value), out.out, out.err): assert 'SECRET-KEY-123' not in text
    assert 'KAGGLE_USERNAME' in str(e.value) or code == 404  # says where the credentials came from, not what they are


def test_no_credentials_before_touching_kaggle(tmp_path, monkeypatch):
    for k in [k for k in os.environ if k.startswith('KAGGLE_')]: monkeypatch.delenv(k)
    monkeypatch.setenv('HOME', str(tmp_path)); monkeypatch.delenv('XDG_CONFIG_HOME', raising=False)
    with pytest.raises(KaggleError, match='No Kaggle API credentials found'): download('aptos', tmp_path / 'dl')


def test_credentials_from_access_token_file(tmp_path):
    (tmp_path / '.kaggle').mkdir(); (tmp_path / '.kaggle/access_token').write_text('tok')
    assert kaggle_credentials({}, tmp_path) == str(tmp_path / '.kaggle/access_token')


def test_kaggle_json_readable_by_others_warns(tmp_path):
    (tmp_path / '.kaggle').mkdir(); fn = tmp_path / '.kaggle/kaggle.json'
    fn.write_text('{"username": "a", "key": "b"}'); fn.chmod(0o644)
    with pytest.warns(UserWarning, match='chmod 600'): assert kaggle_credentials({}, tmp_path) == str(fn)


def test_download_resumes(tmp_path, zipset):
    files = _eyepacs_files(zipset, tmp_path)
    dl = tmp_path / 'dl'; dl.mkdir()
    (dl / 'train.zip.004').write_bytes(files['train.zip.004'])          # complete
    (dl / 'train.zip.002').write_bytes(files['train.zip.002'][:1000])   # cut off
    api = StandIn(files, {'train.zip.003': 403})                        # fails half-way through
    with pytest.raises(KaggleError): download('eyepacs', dl, api=api, progress=False)
    assert api.calls == ['trainLabels.csv.zip', 'train.zip.001', 'train.zip.002', 'train.zip.003']
    assert not (dl / 'train.zip.003').exists() and not (dl / '.download/train.zip.003').exists()
    man = json.loads((dl / '.eyenet-download.json').read_text())['files']  # kept for what was done
    assert man['train.zip.002'] == {'size': len(files['train.zip.002']), 'local': len(files['train.zip.002'])}
    api = StandIn(files)
    r = download('eyepacs', dl, api=api, progress=False)
    assert api.calls == ['train.zip.003', 'train.zip.005']
    assert [o.status for o in r] == ['complete, skipped'] * 3 + ['downloaded', 'complete, skipped', 'downloaded']
    for n, b in files.items(): assert (dl / n).read_bytes() == b
    with open_archive(dl / 'train.zip.001') as z: assert z.read('train/7_left.jpeg') == zipset.members['train/7_left.jpeg']


# --- multi-part archives -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize('part_size', [997, 4096, 65_537, 10**9])
def test_multipart_members_roundtrip(tmp_path, zipset, part_size):
    parts = _split(zipset, tmp_path, part_size)
    with open_archive(parts[len(parts) // 2]) as z:
        assert z.namelist() == list(zipset.members)
        for n, b in zipset.members.items(): assert z.read(n) == b


def test_multipart_file_random_reads(tmp_path, zipset):
    parts = _split(zipset, tmp_path, 3001)
    data, rnd = zipset.zip.read_bytes(), random.Random(1)
    with io.BufferedReader(MultiPartFile(parts), 777) as f:
        for _ in range(300):
            a = rnd.randrange(len(data)); n = rnd.randrange(20000)
            f.seek(a); assert f.read(n) == data[a:a + n]
        assert f.seek(0, io.SEEK_END) == len(data) and f.read(5) == b''


def test_each_truncated_part_is_named(tmp_path, zipset):
    n = len(_split(zipset, tmp_path / 'probe', 50_000))
    for i in range(n):
        parts = _split(zipset, tmp_path / f'cut{i}', 50_000)
        parts[i].write_bytes(parts[i].read_bytes()[:-7])
        with pytest.raises(ArchiveError, match=f'{parts[i].name}: '): open_archive(parts[0])


def test_two_part_set_truncated_first_part_is_named(tmp_path, zipset):
    "With two parts sizes prove nothing; the members' offsets still name the part."
    parts = _split(zipset, tmp_path, zipset.zip.stat().st_size // 2 + 1)
    assert len(parts) == 2
    parts[0].write_bytes(parts[0].read_bytes()[:-3000])
    with pytest.raises(ArchiveError, match='train.zip.001: archive part is truncated'): open_archive(parts[1])


def test_missing_parts(tmp_path, zipset):
    parts = _split(zipset, tmp_path, 50_000)
    parts[2].unlink()
    with pytest.raises(FileNotFoundError, match='train.zip.003: archive part is missing'): archive_parts(parts[0])
    with pytest.raises(FileNotFoundError, match='train.zip.003: archive part is missing'): list(iter_photos(tmp_path))
    with pytest.raises(FileNotFoundError, match='train.zip.003: archive part is missing'): open_archive([parts[0], parts[2]])


# --- photos for worker processes -------------------------------------------------------------------------------------------

@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_sources_in_worker_processes(tmp_path, zipset, method):
    parts = _split(zipset, tmp_path, 30_000)
    srcs = photo_sources(tmp_path)
    assert len(srcs) == 60 and srcs[0].member is not None
    with ProcessPoolExecutor(2, mp_context=mp.get_context(method)) as ex: got = list(ex.map(read_source, srcs, chunksize=7))
    assert got == [zipset.members[s.member] for s in srcs]


def test_forked_child_does_not_share_parents_archive(tmp_path, zipset):
    _split(zipset, tmp_path, 30_000)
    srcs = photo_sources(tmp_path)
    assert read_source(srcs[0]) == zipset.members[srcs[0].member]  # parent opens and caches the archive
    with ProcessPoolExecutor(2, mp_context=mp.get_context('fork')) as ex:
        got = list(ex.map(read_source, srcs * 3))
    assert got == [zipset.members[s.member] for s in srcs * 3]
    assert read_source(srcs[-1]) == zipset.members[srcs[-1].member]  # parent's handle still fine


def test_open_fn_threads(tmp_path, zipset):
    from concurrent.futures import ThreadPoolExecutor
    _split(zipset, tmp_path, 30_000)
    names, fns = zip(*iter_photos(tmp_path))
    with ThreadPoolExecutor(4) as ex: got = list(ex.map(lambda f: f().read(), fns * 3))
    assert got == [zipset.members[n] for n in names] * 3


# --- safe extraction ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['../evil', 'a/../../evil', '/tmp/evil', '..\\evil', 'ok/../../../evil'])
def test_zip_slip_refused(tmp_path, name):
    with zipfile.ZipFile(tmp_path / 'evil.zip', 'w') as z:
        z.writestr('fine.jpeg', b'x'); z.writestr(name, b'gotcha')
    dest = tmp_path / 'dest'
    with pytest.raises(ArchiveError, match='refusing to extract member'): safe_extract(tmp_path / 'evil.zip', dest, progress=False)
    assert list(dest.iterdir()) == [] and not (tmp_path / 'evil').exists()


def test_zip_slip_in_split_set(tmp_path):
    with zipfile.ZipFile(tmp_path / 'x.zip', 'w') as z:
        for i in range(20): z.writestr(f'train/{i}.jpeg', random.Random(i).randbytes(3000))
        z.writestr('../evil', b'gotcha')
    parts = split_file(tmp_path / 'x.zip', 9000, tmp_path / 'parts')
    with pytest.raises(ArchiveError, match="'../evil'"): safe_extract(parts[1], tmp_path / 'dest', progress=False)


def test_absolute_symlink_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / 'l.zip', 'w') as z:
        i = zipfile.ZipInfo('etc'); i.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(i, '/etc')
    with pytest.raises(ArchiveError, match="symlink to '/etc'"): safe_extract(tmp_path / 'l.zip', tmp_path / 'd', progress=False)


def test_interrupted_extraction_is_finished(tmp_path, zipset):
    parts = _split(zipset, tmp_path / 'p', 50_000)
    dest = tmp_path / 'dest'
    r = safe_extract(parts, dest, progress=False)
    assert len(r.written) == 60
    # an interruption: a leftover temp file, a member half-written under its real name, one never written
    names = [n for n, b in zipset.members.items() if len(b) > 1000]
    (dest / names[5]).write_bytes(zipset.members[names[5]][:10])
    (dest / names[6]).unlink()
    (dest / 'train' / f'.{Path(names[6]).name}.999.part').write_bytes(b'junk')
    r = safe_extract(parts[0], dest, progress=False)
    assert sorted(r.written) == sorted([dest / names[5], dest / names[6]]) and len(r.skipped) == 58
    for n, b in zipset.members.items(): assert (dest / n).read_bytes() == b


def test_corrupt_member_named_in_split_set(tmp_path, zipset):
    parts = _split(zipset, tmp_path, 50_000)
    with zipfile.ZipFile(zipset.zip) as z: info = max(z.infolist(), key=lambda i: i.compress_size)
    at = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    i, off = at // 50_000, at % 50_000
    b = bytearray(parts[i].read_bytes()); b[off] ^= 0xff; parts[i].write_bytes(bytes(b))
    with pytest.raises(ArchiveError, match=f"member '{info.filename}'"): safe_extract(parts, tmp_path / 'dest', progress=False)
    src = [s for s in photo_sources(parts) if s.member == info.filename][0]
    with pytest.raises(ArchiveError, match=f"member '{info.filename}'"): open_source(src)


def test_stand_in_matches_real_kaggle_client(tmp_path):
    "The calls `download` makes exist, with these parameters, on the installed `kaggle` client (checked in a subprocess: importing it logs in)."
    code = """
import inspect
from kaggle.api.kaggle_api_extended import KaggleApi
from kagglesdk.competitions.types.competition_api_service import ApiDataFile, ApiListDataFilesResponse
ps = inspect.signature(KaggleApi.competition_list_files).parameters
assert {'competition', 'page_token', 'page_size'} <= set(ps), ps
ps = inspect.signature(KaggleApi.competition_download_file).parameters
assert {'competition', 'file_name', 'path', 'force', 'quiet'} <= set(ps), ps
assert isinstance(ApiDataFile.name, property) and isinstance(ApiDataFile.total_bytes, property)
assert isinstance(ApiListDataFilesResponse.files, property) and isinstance(ApiListDataFilesResponse.next_page_token, property)
print('ok')
"""
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120,
                       env=_clean_env(tmp_path, KAGGLE_CONFIG_DIR=str(tmp_path / 'cfg')))
    if 'No module named' in r.stderr: pytest.skip('kaggle is not installed')
    assert r.returncode == 0 and 'ok' in r.stdout, r.stdout + r.stderr


# --- EyeQ's image-quality labels, from a local stand-in of the GitHub repository (never the network) -------------------

_EYEQ_TRAIN = ',image,quality,DR_grade\n0,10009_left.jpeg,0,0\n1,10009_right.jpeg,0,0\n2,10014_left.jpeg,2,0\n3,10017_left.jpeg,1,4\n'
_EYEQ_TEST = ',image,quality,DR_grade\n0,1_right.jpeg,1,0\n1,10001_right.jpeg,0,2\n2,10036_left.jpeg,2,0\n'


def _eyeq_repo(root, train=_EYEQ_TRAIN, test=_EYEQ_TEST):
    "A folder laid out like github.com/HzFu/EyeQ's raw files."
    (root / 'data').mkdir(parents=True, exist_ok=True)
    if train is not None: (root / EYEQ.files[0]).write_text(train)
    if test is not None: (root / EYEQ.files[1]).write_text(test)
    return root


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass


@pytest.fixture
def served(tmp_path):
    "An HTTP server on 127.0.0.1 serving a stand-in of the repository; yields (base url, folder, request log)."
    root = _eyeq_repo(tmp_path / 'repo')
    log = []
    class H(_Quiet):
        def do_GET(self):
            log.append(self.path)
            super().do_GET()
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(H, directory=str(root)))
    t = threading.Thread(target=srv.serve_forever, daemon=True); t.start()
    try: yield f'http://127.0.0.1:{srv.server_address[1]}', root, log
    finally: srv.shutdown(); srv.server_close()


def test_eyeq_over_http(tmp_path, served, capsys):
    base, root, log = served
    r = download('eyeq', tmp_path / 'eyeq', url=base)
    out = capsys.readouterr().out
    assert [(o.name, o.status) for o in r] == [('Label_EyeQ_train.csv', 'downloaded'), ('Label_EyeQ_test.csv', 'downloaded'),
                                               ('eyeq-quality.csv', 'written')]
    assert sorted(log) == sorted('/' + f for f in EYEQ.files)
    q = pd.read_csv(tmp_path / 'eyeq' / 'eyeq-quality.csv')
    assert list(q.columns) == ['image', 'quality']
    assert q.image.tolist() == ['10009_left', '10009_right', '10014_left', '10017_left', '1_right', '10001_right', '10036_left']
    assert q.quality.tolist() == [0, 0, 2, 1, 1, 0, 2]
    assert 'CC BY-NC-SA 4.0' in out and 'HzFu/EyeQ' in out and '7 graded photos (3 good, 2 usable, 2 reject)' in out
    log.clear()                                                        # a second run fetches nothing
    assert [o.status for o in download('eyeq', tmp_path / 'eyeq', url=base, progress=False)] == ['complete, skipped'] * 2 + ['written']
    assert log == []


def test_eyeq_table_reads_into_the_task(tmp_path, served):
    "The table written is what `task_table(..., 'quality', labels=...)` reads."
    from PIL import Image
    from eyenet.data import task_rows, task_table
    base, root, log = served
    download('eyeq', tmp_path / 'eyeq', url=base, progress=False)
    d = tmp_path / 'photos'; (d / 'train').mkdir(parents=True)
    for n in ('10009_left', '10009_right', '10014_left', '10014_right'): Image.new('RGB', (8, 8)).save(d / 'train' / f'{n}.jpeg')
    pd.DataFrame({'image': ['10009_left', '10009_right', '10014_left', '10014_right'], 'level': [0, 1, 2, 0]}).to_csv(d / 'trainLabels.csv', index=False)
    t = task_rows(task_table(d, 'quality', labels=tmp_path / 'eyeq' / 'eyeq-quality.csv'), 'quality')
    assert dict(zip(t.image, t.quality)) == {'10009_left': 0, '10009_right': 0, '10014_left': 2}


def test_eyeq_http_errors_leave_nothing(tmp_path, served):
    base, root, log = served
    (root / EYEQ.files[1]).unlink()
    with pytest.raises(FetchError, match='Label_EyeQ_test.csv: the server answered HTTP 404'):
        download('eyeq', tmp_path / 'eyeq', url=base, progress=False)
    assert sorted(p.name for p in (tmp_path / 'eyeq').iterdir()) == ['Label_EyeQ_train.csv']   # the complete one is kept
    (root / EYEQ.files[1]).write_text('<!DOCTYPE html><title>Sign in</title>\n')
    with pytest.raises(ValueError, match='Label_EyeQ_test.csv: not an image-quality label file'):
        download('eyeq', tmp_path / 'eyeq', url=base, progress=False)
    assert not (tmp_path / 'eyeq' / 'eyeq-quality.csv').exists()
    assert [p.name for p in (tmp_path / 'eyeq').iterdir() if p.name.startswith('.')] == []


def test_eyeq_bad_grade_is_named(tmp_path):
    root = _eyeq_repo(tmp_path / 'repo', train=',image,quality,DR_grade\n0,1_left.jpeg,0,0\n1,1_right.jpeg,5,0\n')
    with pytest.raises(ValueError, match="Label_EyeQ_train.csv: not an image-quality label file .*'5'"):
        download('eyeq', tmp_path / 'eyeq', url=root.as_uri(), progress=False)


def test_eyeq_unreachable(tmp_path):
    with pytest.raises(FetchError, match='could not be fetched'): fetch_url('http://127.0.0.1:9/nothing.csv', timeout=5)


def test_eyeq_cli(tmp_path, served):
    base, root, log = served
    r = _run_cli(tmp_path, '--dataset', 'eyeq', '--dest', str(tmp_path / 'q'), '--url', base)
    assert r.returncode == 0, r.stderr
    assert 'CC BY-NC-SA 4.0' in r.stdout and 'eyeq-quality.csv' in r.stdout
    assert len(pd.read_csv(tmp_path / 'q' / 'eyeq-quality.csv')) == 7
    r = _run_cli(tmp_path, '--dataset', 'eyeq', '--dest', str(tmp_path / 'q2'), '--url', base, '--quiet')
    assert r.returncode == 0 and r.stdout == '' and (tmp_path / 'q2' / 'eyeq-quality.csv').exists()
    r = _run_cli(tmp_path, '--dataset', 'eyeq', '--dest', str(tmp_path / 'q3'), '--url', base + '/missing')
    assert r.returncode == 1 and r.stderr.startswith('eyenet-download: ') and 'HTTP 404' in r.stderr and 'Traceback' not in r.stderr
