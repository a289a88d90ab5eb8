#!/usr/bin/env python
"""Open every page of the built docs site (`_docs/`, from `make docs`) in headless Chromium and check it.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: no port, no network).
For each page: it loads (load event, no JS exception, no failed or remote request), has a title, its heading
and the sidebar listing every page; every relative link, stylesheet and image resolves to a file in the site
(and `#anchors` to an element of the target page); it shows at least as many images as its notebook has
image outputs (hidden cells excepted), all decoded; its notebook stores no error output; and each function or
class exported by the notebook's module (`__all__` and `_modidx.py`) has its API reference entry (a `show_doc`
block) and the anchor nbdev's doc links point to. Prints one line per page and `docs: N passed, M failed`.
"""
from __future__ import annotations

import argparse, ast, fcntl, json, os, re, select, shutil, subprocess, sys, tempfile, time
from pathlib import Path
from urllib.parse import unquote, urlparse

PROBE = r"""(() => {
  const q = s => [...document.querySelectorAll(s)];
  const main = document.querySelector('main#content');
  const navs = q('#site-nav a');
  return {
    title: document.title.trim(),
    h1: (document.querySelector('h1.page-title') || {textContent: ''}).textContent.trim(),
    src: main ? main.dataset.page || '' : '',
    cells: q('main .jp-Cell').length,
    nav: navs.map(a => a.getAttribute('href')),
    nav_active: q('#site-nav li.active a').map(a => a.getAttribute('href')),
    links: q('a[href]').map(a => a.getAttribute('href')),
    resources: q('link[href]').map(e => e.getAttribute('href')).concat(q('script[src]').map(e => e.getAttribute('src')),
               q('img[src]').map(e => e.getAttribute('src'))),
    imgs: q('main img').map(i => ({src: (i.getAttribute('src') || '').slice(0, 60), ok: i.complete && i.naturalWidth > 0})),
    ids: q('[id]').map(e => e.id),
    api: q('.celltag_showdoc :is(h2,h3,h4)').map(e => { const c = e.cloneNode(true);
           c.querySelectorAll('.anchor-link').forEach(a => a.remove()); return c.textContent.trim(); }),
    styled: main ? getComputedStyle(document.querySelector('#site-nav') || main).position : '',
    unknown: document.body.innerText.includes('unknown type'),
  };
})()"""

def _high_fd(fd:int)->int:
    "Move `fd` to a number >= 10."
    new = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return new

class Chrome:
    "Minimal DevTools-protocol client over `--remote-debugging-pipe` (fd 3: commands in, fd 4: replies out)."
    def __init__(self, exe:str, timeout:float=60):
        self.timeout, self.buf, self.n, self.events = timeout, b'', 0, []
        self.profile = tempfile.mkdtemp(prefix='docs-chrome-')
        self.log = tempfile.TemporaryFile()
        r_in, self.w = os.pipe()
        self.r, w_out = os.pipe()
        r_in, w_out = (_high_fd(r_in), _high_fd(w_out))  # so that the child's `3<&r 4>&w` cannot clobber them
        args = [exe, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                '--no-default-browser-check', '--disable-background-networking', '--disable-component-update',
                '--disable-sync', '--disable-extensions', '--disable-dev-shm-usage', '--mute-audio',
                f'--user-data-dir={self.profile}', '--remote-debugging-pipe', '--window-size=1280,900', 'about:blank']
        self.p = subprocess.Popen(['bash', '-c', f'exec "$@" 3<&{r_in} 4>&{w_out} {r_in}<&- {w_out}>&-', 'chrome', *args],
                                  pass_fds=(r_in, w_out), stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        os.close(r_in); os.close(w_out)
        tid = self.call('Target.createTarget', url='about:blank')['targetId']
        self.session = self.call('Target.attachToTarget', targetId=tid, flatten=True)['sessionId']
        for d in ('Page', 'Runtime', 'Network', 'Log'): self.call(f'{d}.enable', session=True)

    def log_tail(self)->str:
        self.log.seek(0)
        return self.log.read().decode(errors='replace')[-2000:]

    def _read(self, deadline):
        while b'\0' not in self.buf:
            left = deadline - time.time()
            if left <= 0: raise TimeoutError('chromium did not answer in time')
            if not select.select([self.r], [], [], left)[0]: continue
            chunk = os.read(self.r, 1 << 20)
            if not chunk: raise RuntimeError(f'chromium exited (rc={self.p.poll()}):\n{self.log_tail()}')
            self.buf += chunk
        msg, _, self.buf = self.buf.partition(b'\0')
        return json.loads(msg)

    def call(self, method, session=False, **params):
        self.n += 1
        msg = dict(id=self.n, method=method, params=params)
        if session: msg['sessionId'] = self.session
        os.write(self.w, json.dumps(msg).encode() + b'\0')
        deadline = time.time() + self.timeout
        while True:
            m = self._read(deadline)
            if m.get('id') == self.n:
                if 'error' in m: raise RuntimeError(f'{method}: {m["error"]}')
                return m.get('result', {})
            self.events.append(m)

    def wait_event(self, name):
        deadline = time.time() + self.timeout
        while True:
            for i,e in enumerate(self.events):
                if e.get('method') == name: return self.events.pop(i)
            self.events.append(self._read(deadline))

    def load(self, url:str)->tuple[dict, list[str]]:
        "Open `url`; return the page probe and the problems the browser saw while loading."
        self.events = []
        res = self.call('Page.navigate', session=True, url=url)
        if res.get('errorText'): return {}, [f'navigation failed: {res["errorText"]}']
        self.wait_event('Page.loadEventFired')
        probe = self.call('Runtime.evaluate', session=True, expression=PROBE, returnByValue=True)
        if 'exceptionDetails' in probe: return {}, [f'probe failed: {probe["exceptionDetails"].get("text")}']
        reqs, probs = {}, []
        for e in self.events:
            m, p = e.get('method'), e.get('params', {})
            if m == 'Network.requestWillBeSent':
                u = p['request']['url']
                reqs[p['requestId']] = u
                if urlparse(u).scheme not in ('file', 'data', 'about', 'blob'): probs.append(f'remote request (needs network): {u}')
            elif m == 'Network.loadingFailed': probs.append(f'failed to load {reqs.get(p["requestId"], "?")}: {p.get("errorText")}')
            elif m == 'Runtime.exceptionThrown': probs.append(f'JS exception: {p["exceptionDetails"].get("text")}')
            elif m == 'Log.entryAdded' and p['entry'].get('level') == 'error': probs.append(f'console: {p["entry"].get("text")}')
        return probe['result']['value'], probs

    def close(self):
        try: self.call('Browser.close')
        except Exception: pass
        try: self.p.wait(10)
        except subprocess.TimeoutExpired: self.p.kill(); self.p.wait()
        for fd in (self.r, self.w):
            try: os.close(fd)
            except OSError: pass
        shutil.rmtree(self.profile, ignore_errors=True)

# ---------------------------------------------------------------------------------------------------------------
# What the notebooks say the pages must show

_re_dir = re.compile(r'^\s*#\|\s*(.*?)\s*$')

def _directives(src:str)->dict:
    "Leading `#| ...` directives of a code cell (nbdev and quarto style) as a dict."
    d = {}
    for line in src.splitlines():
        m = _re_dir.match(line)
        if not m:
            if line.strip(): break
            continue
        k,_,v = m.group(1).partition(':')
        k = k.strip()
        if k: d[k.split()[0]] = (v or ' '.join(k.split()[1:])).strip().strip('"\'').lower()
    return d

def _hidden(d:dict)->bool:
    "Does nbdev's processing (or a quarto option) drop this cell's outputs from the page?"
    return bool(d.keys() & {'hide', 'export', 'exporti', 'default_exp'}) or 'false' in (d.get('include'), d.get('output'))

def expected_images(nb:dict)->int:
    "Image outputs of the notebook's cells that the docs show."
    n = 0
    for c in nb.get('cells', []):
        if c.get('cell_type') != 'code': continue
        src = ''.join(c.get('source', ''))
        if _hidden(_directives(src)): continue
        for o in c.get('outputs', []):
            if any(k in o.get('data', {}) for k in ('image/png', 'image/jpeg', 'image/gif', 'image/svg+xml')): n += 1
    return n

def error_outputs(nb:dict)->list[str]:
    return [f'cell {i}: {o.get("ename")}: {str(o.get("evalue"))[:120]}' for i,c in enumerate(nb.get('cells', []))
            for o in c.get('outputs', []) if o.get('output_type') == 'error']

def _all_names(py:Path)->list[str]:
    "`__all__` of a module, read without importing it."
    for node in ast.parse(py.read_text(encoding='utf-8')).body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == '__all__' for t in node.targets):
            return list(ast.literal_eval(node.value))
    return []

def api_expectations(root:Path, lib:str)->dict[str, list[tuple[str, str]]]:
    "page -> [(qualified name, anchor)] for each function/class in `__all__` per `_modidx.py`."
    idx = root/lib/'_modidx.py'
    if not idx.exists(): return {}
    tree = ast.parse(idx.read_text(encoding='utf-8'))
    d = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == 'd')
    res = {}
    for mod, syms in d.get('syms', {}).items():
        py = root/(mod.replace('.', '/') + '.py')
        exported = set(_all_names(py)) if py.exists() else set()
        for q, (doc, _src) in syms.items():
            name = q[len(mod)+1:]
            if '.' in name or name not in exported: continue
            page, _, anchor = doc.partition('#')
            res.setdefault(page, []).append((q, anchor))
    return res

# ---------------------------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--browser', default=os.environ.get('CHROME') or shutil.which('chromium') or 'chromium')
    ap.add_argument('--site', default=None, help='built site (default: doc_path from pyproject)')
    ap.add_argument('--timeout', type=float, default=60, help='seconds per browser step')
    args = ap.parse_args(argv)

    from nbdev.config import get_config
    from nbdev.doclinks import nbglob
    cfg = get_config()
    root = Path(cfg.config_path)
    site = Path(args.site).resolve() if args.site else Path(cfg.doc_path).resolve()
    pages = sorted(site.rglob('*.html'))
    if not pages: sys.exit(f'docs: no pages in {site} (run `make docs`)\ndocs: 0 passed, 1 failed')
    nb_srcs = {(Path(cfg.nbs_path).name/Path(f).relative_to(cfg.nbs_path)).as_posix() for f in nbglob(cfg.nbs_path)}
    api = api_expectations(root, cfg.lib_path.name)

    t0 = time.time()
    try: chrome = Chrome(args.browser, timeout=args.timeout)
    except Exception as e: sys.exit(f'docs: cannot start {args.browser} headless: {e}\ndocs: 0 passed, {len(pages)} failed')
    probes, problems = {}, {}
    try:
        for pg in pages:
            rel = pg.relative_to(site).as_posix()
            try: probes[rel], problems[rel] = chrome.load(pg.as_uri())
            except Exception as e: probes[rel], problems[rel] = {}, [f'browser: {type(e).__name__}: {e}']
    finally: chrome.close()
    t_browser = time.time() - t0

    all_pages = set(probes)
    seen_srcs = {p.get('src') for p in probes.values()}
    for src in sorted(nb_srcs - seen_srcs):
        problems.setdefault('(site)', []).append(f'{src} has no page (`make docs` failed for it, or the site is stale)')
    for page in sorted(set(api) - all_pages):
        names = [q.rsplit('.', 1)[1] for q,_ in api[page]]
        problems.setdefault('(site)', []).append(f'{page}: no such page, but _modidx.py documents {len(names)} exported '
                                                 f'names there ({", ".join(names[:4])}{", ..." if len(names) > 4 else ""})')
    ids = {rel: set(p.get('ids', [])) for rel,p in probes.items()}

    for rel, p in probes.items():
        probs = problems[rel]
        if not p: continue
        here = (site/rel).parent
        if not p['title']: probs.append('empty <title>')
        if not p['h1']: probs.append('no page heading (h1.page-title)')
        if p['unknown']: probs.append('nbconvert rendered an unknown cell type')
        if p['styled'] != 'sticky': probs.append('site stylesheet not applied (#site-nav is not sticky)')
        # navigation: the sidebar lists every page, and marks this one
        nav = set()
        for h in p['nav']:
            t = (here/unquote(urlparse(h).path)).resolve()
            if t.is_relative_to(site): nav.add(t.relative_to(site).as_posix())
        if not p['nav']: probs.append('no navigation sidebar (#site-nav)')
        elif nav != all_pages:
            if all_pages - nav: probs.append(f'sidebar misses {sorted(all_pages - nav)}')
            if nav - all_pages: probs.append(f'sidebar links to missing pages {sorted(nav - all_pages)}')
        if len(p['nav_active']) != 1 or (here/p['nav_active'][0]).resolve() != (site/rel).resolve():
            probs.append('sidebar does not mark this page as the current one')
        # links and resources
        for kind, hrefs in (('link', p['links']), ('resource', p['resources'])):
            for h in dict.fromkeys(hrefs):
                u = urlparse(h)
                if u.scheme in ('http', 'https', 'mailto', 'ftp'):
                    if kind == 'resource': probs.append(f'remote resource (page needs network): {h}')
                    continue
                if u.scheme == 'data' or u.scheme == 'javascript': continue
                if u.scheme and u.scheme != 'file': probs.append(f'unexpected {kind} scheme: {h[:80]}'); continue
                target = (here/unquote(u.path)).resolve() if u.path else (site/rel).resolve()
                if not target.is_relative_to(site): probs.append(f'{kind} leaves the site: {h}'); continue
                if not target.is_file(): probs.append(f'broken {kind}: {h} (no {target.relative_to(site)})'); continue
                trel = target.relative_to(site).as_posix()
                if u.fragment and trel in ids and unquote(u.fragment) not in ids[trel]:
                    probs.append(f'broken anchor: {h} (no id "{unquote(u.fragment)}" in {trel})')
        # figures and stored errors, from the notebook
        if p['cells'] == 0: probs.append('page shows no notebook cells')
        src = root/p['src'] if p['src'] else None
        if not src: probs.append('page names no source notebook (main[data-page])')
        elif not src.exists(): probs.append(f'{p["src"]} no longer exists (stale page; run `make docs`)')
        else:
            nb = json.loads(src.read_text(encoding='utf-8'))
            want = expected_images(nb)
            if len(p['imgs']) < want: probs.append(f'{len(p["imgs"])} images shown, notebook has {want} image outputs')
            bad = [i['src'] for i in p['imgs'] if not i['ok']]
            if bad: probs.append(f'{len(bad)} images not decoded, e.g. {bad[0]}')
            probs += [f'notebook stores an error output ({e})' for e in error_outputs(nb)]
        # API reference: every exported function/class has its show_doc entry with nbdev's anchor
        missing = [q for q, a in api.get(rel, []) if q.rsplit('.', 1)[1] not in p['api']]
        if missing: probs.append(f'API reference (show_doc) misses {", ".join(missing)}')
        unlinked = [q for q, a in api.get(rel, []) if a not in ids[rel]]
        if unlinked: probs.append(f'no anchor for nbdev\'s doc links to {", ".join(unlinked)}')

    n_ok = 0
    for rel in sorted(problems):
        if rel in probes:
            p = probes[rel]
            extra = f'{len(p.get("imgs", []))} img, {len(api.get(rel, []))} api, {len(p.get("links", []))} links'
        else: extra = ''
        if problems[rel]:
            print(f'FAIL {rel}' + (f' ({extra})' if extra else ''))
            for m in problems[rel]: print(f'     - {m}')
        else:
            n_ok += 1
            print(f'ok   {rel} ({extra})')
    n_bad = len(problems) - n_ok
    print(f'docs: browser {t_browser:.1f}s for {len(pages)} pages')
    print(f'docs: {n_ok} passed, {n_bad} failed')
    return 1 if n_bad else 0

if __name__ == '__main__': sys.exit(main())
