"Screening: every decision path, every bad input a clinic's upload can hold, DICOM in, the command line; inputs left untouched."
import hashlib, math, subprocess, sys
from pathlib import Path
import pandas as pd, pytest, torch
from eyenet.synthetic import synth_fundus, not_fundus_photo
from eyenet.model import create_model, save_model
from eyenet.dicom import photo_dicom, dicom_info
from eyenet.screen import screen

SIZE = 64
HEAD = dict(coef=[0., 0.], intercept=5., threshold=0.5, threshold_source='validation patients, out of fold', target=dict(sensitivity=0.9))

def _photo(fn, grade=0, seed=0, defect=None):
    fn.parent.mkdir(parents=True, exist_ok=True)
    synth_fundus(grade, size=320, seed=seed, **({'defect': defect} if defect else {})).save(fn, quality=90)
    return fn

@pytest.fixture(scope='module')
def models(tmp_path_factory):
    "One untrained referable network saved with photo thresholds that refer no eye (1.01) or every eye (0), without and with a two-eye head."
    d = tmp_path_factory.mktemp('screen')
    torch.manual_seed(0)
    net = create_model('eyenet', 2, SIZE)
    heads = dict(head=HEAD, head_low=dict(HEAD, intercept=-5.)) # patient probability 0.993 (refer) or 0.007 (rescreen), whatever the eyes
    return {k: save_model(net, d/k, arch='eyenet', task='referable', size=SIZE, threshold=t, **({'two_eye': heads[k]} if k in heads else {})) and d/k
            for k, t in (('never', 1.01), ('always', 0.), ('head', 1.01), ('head_low', 0.))}

def _tree(d):
    "Every file below `d` with its bytes' hash: to prove a run changed nothing."
    return {str(p.relative_to(d)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(Path(d).rglob('*')) if p.is_file()}

def _one(res, patient): return res.set_index('patient').loc[patient]

def test_decision_paths(models, tmp_path):
    up = tmp_path/'up'
    _photo(up/'1_left.jpeg', seed=1); _photo(up/'1_right.jpeg', seed=2)                              # both eyes gradable
    _photo(up/'2_left.jpeg', seed=3); _photo(up/'2_right.jpeg', seed=4, defect='black')               # one ungradable photo
    _photo(up/'3_left.jpeg', seed=5)                                                                  # one eye only
    _photo(up/'4'/'L_1.jpeg', seed=6); _photo(up/'4'/'R_1.jpeg', seed=7, defect='black')
    _photo(up/'4'/'R_2.jpeg', seed=8, defect='black')                                                 # retake ungradable too
    before = _tree(up)
    never = screen(models['never'], [up/'1_left.jpeg', up/'1_right.jpeg', up/'2_left.jpeg', up/'2_right.jpeg', up/'3_left.jpeg', up/'4'])
    assert dict(zip(never.patient, never.decision)) == {'1': 'rescreen', '2': 'retake', '3': 'rescreen', '4': 'refer'}
    assert 'rescreen in 12 months' in _one(never, '1').reason
    assert 'no gradable photo of the right eye' in _one(never, '2').reason and 'all_black' in _one(never, '2').right_quality
    assert 'only one eye photographed, the right eye is not screened' in _one(never, '3').reason
    assert 'a retake included' in _one(never, '4').reason and _one(never, '4').photos == 3
    always = screen(models['always'], [up/'1_left.jpeg', up/'1_right.jpeg', up/'2_left.jpeg', up/'2_right.jpeg'])
    assert always.decision.tolist() == ['refer', 'refer']                  # referable DR outranks the ungradable eye
    assert 'referable DR in the left eye' in _one(always, '2').reason
    assert (never.threshold == 1.01).all() and (never.threshold_source == 'default').all() and never.model.str.contains('eyenet').all()
    assert (never.rule == 'worst eye').all() and (always.rule == 'worst eye').all()  # no two-eye head in these models
    assert _tree(up) == before                                             # nothing in the input changed

def test_two_eye_head(models, tmp_path):
    "A model with a two-eye head: the head decides patients with both eyes gradable, the worst eye the others."
    up = tmp_path/'up'
    _photo(up/'1_left.jpeg', seed=1); _photo(up/'1_right.jpeg', seed=2)                              # both eyes gradable
    _photo(up/'2_left.jpeg', seed=3); _photo(up/'2_right.jpeg', seed=4, defect='black')               # one ungradable photo
    _photo(up/'3_left.jpeg', seed=5)                                                                  # one eye only
    files = sorted(up.iterdir())
    hi = screen(models['head'], files)                 # the head refers; the photo threshold 1.01 refers no eye
    assert dict(zip(hi.patient, hi.decision)) == {'1': 'refer', '2': 'retake', '3': 'rescreen'}
    assert dict(zip(hi.patient, hi.rule)) == {'1': 'two-eye head', '2': 'worst eye', '3': 'worst eye'}
    p1, p3 = _one(hi, '1'), _one(hi, '3')
    assert p1.patient_p == pytest.approx(1/(1 + math.exp(-5))) and p1.threshold == 0.5 and 'the two eyes taken together' in p1.reason
    assert p1.threshold_source == 'validation patients, out of fold (sensitivity 0.9)'
    assert p3.threshold == 1.01 and p3.patient_p == p3.left_p and 'the right eye is not screened' in p3.reason
    lo = screen(models['head_low'], files)             # the head says no for patient 1, though each eye reaches the photo threshold 0
    assert dict(zip(lo.patient, lo.decision)) == {'1': 'rescreen', '2': 'refer', '3': 'refer'}
    assert dict(zip(lo.patient, lo.rule)) == {'1': 'two-eye head', '2': 'worst eye', '3': 'worst eye'}
    assert 'rescreen in 12 months' in _one(lo, '1').reason and 'referable DR in the left eye' in _one(lo, '2').reason

def test_several_photos_of_an_eye(models, tmp_path):
    "Three photos of one eye, one of them not a fundus photo at all: the two gradable ones decide, by the worst or the mean."
    d = tmp_path/'ann'
    for i in range(2): _photo(d/f'left_{i}.jpeg', seed=10 + i)
    not_fundus_photo('page').save(d/'left_2.jpeg'); _photo(d/'right.jpeg', seed=13)
    worst, mean = (screen(models['never'], d, combine=c).iloc[0] for c in ('max', 'mean'))
    assert worst.photos == 4 and worst.left_quality == 'gradable (2 of 3 photos)' and worst.decision == 'rescreen'
    assert worst.left_photo.endswith(('left_0.jpeg', 'left_1.jpeg')) and mean.left_photo == 'mean of 2 photos'
    assert worst.left_p >= mean.left_p

def test_dicom_and_bad_input(models, tmp_path):
    "DICOM from the archive, with every way it goes wrong, a folder mixing two patients, an empty folder."
    pacs, empty = tmp_path/'pacs', tmp_path/'empty'
    photo_dicom(synth_fundus(0, size=320, seed=20), pacs/'IM1', 'P1', 'left')
    photo_dicom(synth_fundus(0, size=320, seed=21), pacs/'IM2', 'P1', 'right', jpeg=False)
    photo_dicom(synth_fundus(0, size=320, seed=22), pacs/'IM3', 'P2', 'left')                        # another patient
    photo_dicom(synth_fundus(0, size=320, seed=23), pacs/'IM4', 'P2', None)                          # no laterality
    photo_dicom(synth_fundus(0, size=320, seed=24), pacs/'IM5', 'P2', 'right', pixels=False)         # no pixel data
    (pacs/'IM6.dcm').write_bytes((pacs/'IM1').read_bytes()[:300])                                    # corrupt
    empty.mkdir()
    before = _tree(pacs)
    res = screen(models['never'], [pacs, empty])
    assert res.patient.tolist() == ['P1', 'P2', 'pacs', 'empty']
    p1, p2 = _one(res, 'P1'), _one(res, 'P2')
    assert p1.decision == 'rescreen' and p1.left_sop == dicom_info(pacs/'IM1')['sop'] and p1.study == dicom_info(pacs/'IM1')['study']
    assert 'holds photos of 2 patients' in p1.reason and 'holds photos of 2 patients' in p2.reason
    assert p2.decision == 'retake' and 'no pixel data' in p2.reason and 'no laterality' in p2.reason
    assert 'IM6.dcm' in _one(res, 'pacs').reason and _one(res, 'pacs').decision == 'retake'    # corrupt: under its folder
    assert _one(res, 'empty').decision == 'retake' and 'no photo in' in _one(res, 'empty').reason
    assert _tree(pacs) == before
    again = screen(models['never'], [pacs, empty])                          # the same photos, the same answer
    pd.testing.assert_frame_equal(res, again)

def test_cli(models, tmp_path):
    d = tmp_path/'photos'
    _photo(d/'9_left.jpeg', seed=30); _photo(d/'9_right.jpeg', seed=31)
    out = tmp_path/'screen.csv'
    exe = Path(sys.executable).parent/'eyenet-screen'
    r = subprocess.run([str(exe), str(models['always']), str(d), '--out', str(out), '--quiet'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert '1 patients: 1 refer, 0 rescreen, 0 retake' in r.stderr
    df = pd.read_csv(out)
    assert df.patient.astype(str).tolist() == ['9'] and df.decision.tolist() == ['refer']
    r = subprocess.run([str(exe), str(models['always'])], capture_output=True, text=True)
    assert r.returncode != 0 and 'no photos given' in r.stderr
    r = subprocess.run([str(exe), str(tmp_path/'nomodel'), str(d)], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith('eyenet-screen:') and 'Traceback' not in r.stderr

def test_cli_dicom_out(models, tmp_path):
    "`eyenet-screen ... --dicom-out DIR`: the SR and the overlays filed per patient, the input untouched."
    import pydicom
    pacs = tmp_path/'pacs'
    for i, eye in enumerate(('left', 'right')): photo_dicom(synth_fundus(0, size=320, seed=40 + i), pacs/f'IM{i}', 'Q1', eye)
    before = _tree(pacs)
    exe = Path(sys.executable).parent/'eyenet-screen'
    r = subprocess.run([str(exe), str(models['never']), str(pacs), '--dicom-out', str(tmp_path/'arc'), '--quiet'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path/'arc'/'Q1').iterdir()) == ['cam-left.dcm', 'cam-right.dcm', 'screening-sr.dcm']
    sr = pydicom.dcmread(tmp_path/'arc'/'Q1'/'screening-sr.dcm')
    assert sr.VerificationFlag == 'UNVERIFIED' and sr.StudyInstanceUID == dicom_info(pacs/'IM0')['study']
    assert _tree(pacs) == before
