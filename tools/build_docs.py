#!/usr/bin/env python
"""Build the docs site in `_docs/` without quarto.

The published site is built by quarto (`nbdev-docs` in `.github/workflows/deploy.yaml`). Quarto cannot be
installed everywhere, so `make docs` runs the same first step as `nbdev-docs` -- nbdev's notebook processing
(`nbdev.serve.proc_nbs`: frontmatter, `show_doc` cells for every exported symbol, hidden/exported cells
removed, backtick links) into `_proc/` -- and then renders each processed notebook with nbconvert's HTML
exporter instead of quarto, adding a sidebar that links every page. Page names follow nbdev's rule
(`nbs/00_data.ipynb` -> `data.html`, `index.ipynb` -> `index.html`), so the doc links nbdev writes for the
published site resolve inside the local one too. No notebook is re-executed; nbdev's processor runs only the
imports, exported cells and `show_doc` cells of each notebook (cached in `_proc/` by file time).
The pages need no network: no require.js, MathJax or CDN assets; figures are embedded as data URIs.
"""
from __future__ import annotations

import argparse, html, os, re, shutil, sys, time
from pathlib import Path
from urllib.parse import urljoin

import jinja2, nbformat, yaml
from nbconvert import HTMLExporter

try: from jinja2 import pass_context
except ImportError: from jinja2 import contextfilter as pass_context

# ---------------------------------------------------------------------------------------------------------------
# Page template: lab's cell markup, our own head (two local stylesheets, no scripts) and page chrome.

TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block header -%}
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="tools/build_docs.py (nbdev proc_nbs + nbconvert)">
<title>{{ resources.site.head_title }}</title>
<link rel="stylesheet" href="{{ resources.site.root }}assets/lab.css">
<link rel="stylesheet" href="{{ resources.site.root }}assets/site.css">
</head>
{%- endblock header -%}
{%- block body_header -%}
<body data-jp-theme-light="true" data-jp-theme-name="JupyterLab Light">
{{ resources.site.topbar }}
<div class="layout">
{{ resources.site.sidebar }}
<main id="content" class="jp-Notebook" data-page="{{ resources.site.src }}">
<header class="page-header">
<h1 class="page-title">{{ resources.site.title }}</h1>
{%- if resources.site.description %}
<p class="page-description">{{ resources.site.description }}</p>
{%- endif %}
</header>
{%- endblock body_header -%}
{%- block body_footer -%}
{{ resources.site.pager }}
</main>
<!--EYENET-TOC-->
</div>
</body>
{%- endblock body_footer -%}
{%- block footer %}
</html>
{% endblock footer -%}
"""

SITE_CSS = r"""/* EyeNet docs: page chrome for the nbconvert "lab" cell markup (see tools/build_docs.py). */
:root {
  --site-accent: #1f5f8b;
  --site-accent-light: #e8f1f8;
  --site-border: #e3e6ea;
  --site-text: #1f2328;
  --site-muted: #5b6570;
  --topbar-h: 54px;
  --jp-content-font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  --jp-ui-font-family: var(--jp-content-font-family);
  --jp-content-font-size1: 16px;
  --jp-content-line-height: 1.6;
  --jp-code-font-size: 13.5px;
  --jp-code-font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace;
  --jp-content-font-color1: var(--site-text);
  --jp-cell-editor-background: #f6f8fa;
  --jp-cell-editor-border-color: var(--site-border);
}
html { scroll-padding-top: calc(var(--topbar-h) + 12px); }
body { margin: 0; color: var(--site-text); background: #fff; font-family: var(--jp-content-font-family);
       font-size: 16px; line-height: 1.6; }
a { color: var(--site-accent); }

/* top bar */
.topbar { position: sticky; top: 0; z-index: 10; height: var(--topbar-h); display: flex; align-items: center;
          gap: 1rem; padding: 0 1.5rem; background: var(--site-accent); color: #fff;
          box-shadow: 0 1px 3px rgba(0,0,0,.15); }
.topbar a { color: #fff; text-decoration: none; }
.topbar .brand { font-weight: 700; font-size: 1.25rem; letter-spacing: .01em; }
.topbar .tagline { font-size: .9rem; opacity: .85; overflow: hidden; white-space: nowrap; text-overflow: ellipsis;
                   flex: 1; }
.topbar .repo { font-size: .9rem; opacity: .9; margin-left: auto; }
.topbar .repo:hover, .topbar .brand:hover { text-decoration: underline; }

/* three columns: pages | content | on this page */
.layout { display: grid; grid-template-columns: 260px minmax(0, 1fr) 220px; align-items: start; }
#site-nav, #toc { position: sticky; top: var(--topbar-h); max-height: calc(100vh - var(--topbar-h));
                  overflow-y: auto; box-sizing: border-box; font-size: .9rem; }
#site-nav { padding: 1.25rem .75rem 2rem 1rem; border-right: 1px solid var(--site-border); background: #fafbfc;
            min-height: calc(100vh - var(--topbar-h)); }
#site-nav .nav-heading, #toc .toc-heading { font-size: .75rem; text-transform: uppercase; letter-spacing: .06em;
            color: var(--site-muted); margin: 0 0 .5rem .5rem; font-weight: 600; }
#site-nav ul, #toc ul { list-style: none; margin: 0; padding: 0; }
#site-nav li a { display: flex; gap: .5rem; padding: .3rem .5rem; border-radius: 6px; color: var(--site-text);
                 text-decoration: none; line-height: 1.35; }
#site-nav li a:hover { background: #eef1f4; }
#site-nav li.active > a { background: var(--site-accent-light); color: var(--site-accent); font-weight: 600; }
#site-nav .nb-num { color: var(--site-muted); font-family: var(--jp-code-font-family); font-size: .8rem;
                    min-width: 2.2em; padding-top: .1em; }
#toc { padding: 1.5rem 1rem; }
#toc li a { display: block; padding: .15rem .5rem; color: var(--site-muted); text-decoration: none;
            border-left: 2px solid var(--site-border); line-height: 1.35; }
#toc li a:hover { color: var(--site-accent); border-left-color: var(--site-accent); }
#toc li.toc-h3 a { padding-left: 1.25rem; font-size: .85rem; }

/* content column */
main#content { padding: 1.5rem 2.5rem 3rem; max-width: 920px; width: 100%; box-sizing: border-box;
               overflow: visible; background: #fff; margin: 0 auto; }
.page-header { margin: .5rem 0 1.5rem; padding-bottom: 1rem; border-bottom: 1px solid var(--site-border); }
.page-title { font-size: 2.2rem; line-height: 1.2; margin: 0 0 .4rem; }
.page-description { font-size: 1.15rem; color: var(--site-muted); margin: 0; }
.jp-Cell { padding: 0; margin: .35rem 0; }
.jp-Cell-inputWrapper, .jp-Cell-outputWrapper { display: block; }
.jp-InputPrompt, .jp-OutputPrompt, .jp-Collapser { display: none !important; }
.jp-InputArea { overflow: hidden; }
.jp-InputArea-editor { overflow-x: auto; }
.cm-editor.cm-s-jupyter .highlight pre { white-space: pre; }
.cm-editor.cm-s-jupyter .highlight pre { margin: 0; font-family: inherit; font-size: inherit; line-height: inherit;
                                          color: inherit; }
.jp-OutputArea-output pre { line-height: inherit; font-family: inherit; }
.jp-RenderedText pre { color: var(--jp-content-font-color1); font-size: var(--jp-code-font-size); }
.jp-RenderedHTMLCommon { padding-right: 0; font-size: var(--jp-content-font-size1); }
.jp-MarkdownOutput.jp-RenderedHTMLCommon { padding: 0; }
.jp-RenderedHTMLCommon h1, .jp-RenderedHTMLCommon h2, .jp-RenderedHTMLCommon h3 { line-height: 1.3; }
.jp-RenderedHTMLCommon h2 { margin-top: 2rem; padding-bottom: .3rem; border-bottom: 1px solid var(--site-border); }
.jp-RenderedHTMLCommon a.anchor-link { visibility: hidden; margin-left: .35em; text-decoration: none;
                                       color: var(--site-muted); font-size: .8em; }
.jp-RenderedHTMLCommon :is(h1,h2,h3,h4,h5,h6):hover a.anchor-link { visibility: visible; }
.jp-RenderedHTMLCommon code { background: #f2f4f6; padding: .1em .3em; border-radius: 4px; font-size: .9em; }
.jp-RenderedHTMLCommon pre code { background: none; padding: 0; }
.jp-RenderedHTMLCommon .highlight pre { background: transparent; margin: 0; padding: 0; }
.jp-RenderedHTMLCommon pre, .jp-RenderedHTMLCommon .highlight pre { overflow-x: auto; white-space: pre; }
.jp-RenderedHTMLCommon .highlight { background: #f6f8fa; border: 1px solid var(--site-border); border-radius: 6px;
                                    padding: .6rem .8rem; margin: .6rem 0; }
.jp-RenderedHTMLCommon table { font-size: .9rem; margin-left: 0; margin-right: auto; }
.jp-InputArea-editor { border: 1px solid var(--site-border) !important; border-radius: 6px; }
.cm-editor.cm-s-jupyter .highlight pre { padding: .6rem .8rem; font-size: var(--jp-code-font-size); }
.jp-OutputArea-output pre { font-size: var(--jp-code-font-size); }
.jp-OutputArea-output { padding: .25rem 0; }
.jp-RenderedImage img { max-width: 100%; height: auto; }
.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"] { background: #fff5f5; }

/* API reference: nbdev's show_doc output, boxed as on the quarto site */
.jp-Cell.celltag_showdoc { margin: 1.5rem 0 1rem; }
.jp-Cell.celltag_showdoc .jp-OutputArea-output { border: 1px solid var(--site-border); border-radius: 8px;
       padding: .25rem 1.1rem .6rem; box-shadow: 0 1px 3px rgba(0,0,0,.06); background: #fff; }
.jp-Cell.celltag_showdoc hr { display: none; }
.jp-Cell.celltag_showdoc h3, .jp-Cell.celltag_showdoc h4 { font-family: var(--jp-code-font-family); margin-top: .6rem; }
.jp-Cell.celltag_showdoc a.source-link { float: right; font-size: .85rem; margin-top: .8rem; }
.jp-Cell.celltag_exported-source .jp-Cell-inputWrapper::before { content: "Exported source"; display: block;
       font-size: .8rem; color: var(--site-muted); margin: 0 0 .2rem .2rem; }

/* quarto callouts (::: {.callout-note}) */
.callout { border-left: 4px solid var(--site-accent); background: var(--site-accent-light); border-radius: 6px;
           padding: .6rem 1rem; margin: 1rem 0; }
.callout > p:first-child { margin-top: 0; }
.callout > p:last-child { margin-bottom: 0; }
.callout-title { font-weight: 600; margin-bottom: .3rem; }
.callout-warning, .callout-caution { border-left-color: #d29922; background: #fff8e5; }
.callout-important { border-left-color: #cf222e; background: #ffefef; }
.callout-tip { border-left-color: #1a7f37; background: #eefbf1; }

/* previous / next */
.pager { display: flex; justify-content: space-between; gap: 1rem; margin-top: 3rem; padding-top: 1rem;
         border-top: 1px solid var(--site-border); }
.pager a { display: block; padding: .6rem 1rem; border: 1px solid var(--site-border); border-radius: 8px;
           text-decoration: none; max-width: 45%; }
.pager a:hover { border-color: var(--site-accent); }
.pager .label { display: block; font-size: .75rem; color: var(--site-muted); text-transform: uppercase; }
.pager .next { margin-left: auto; text-align: right; }

@media (max-width: 1200px) {
  .layout { grid-template-columns: 240px minmax(0, 1fr); }
  #toc { display: none; }
}
@media (max-width: 800px) {
  .layout { display: block; }
  #site-nav { position: static; max-height: none; min-height: 0; border-right: 0;
              border-bottom: 1px solid var(--site-border); }
  main#content { padding: 1rem; }
  .topbar .tagline { display: none; }
}
"""

# ---------------------------------------------------------------------------------------------------------------
# Quarto-flavoured markdown that nbconvert's mistune does not know

_re_fence = re.compile(r'^\s*(```|~~~)')
_re_div_open = re.compile(r'^\s*:::+\s*(?:\{([^}]*)\}|([\w-]+))\s*$')
_re_div_close = re.compile(r'^\s*:::+\s*$')
_re_attr_link = re.compile(r'(?<!!)\[([^\]\n]+)\]\(([^)\s]+)\)\{([^}\n]*)\}')
_re_heading_attrs = re.compile(r'^(#{1,6}\s.*?)\s*\{[^}]*\}\s*$')
_re_attr_tok = re.compile(r'''([\w-]+)=("[^"]*"|'[^']*'|\S+)|([.#][\w-]+)''')
_CALLOUT_TITLES = dict(note='Note', tip='Tip', warning='Warning', important='Important', caution='Caution')

def _attrs(s:str)->dict:
    "Parse pandoc attributes `{.cls #id key=val}` into a dict of HTML attributes."
    res, cls = {}, []
    for k,v,short in _re_attr_tok.findall(s):
        if short.startswith('.'): cls.append(short[1:])
        elif short.startswith('#'): res['id'] = short[1:]
        elif k: res[k] = v.strip('"\'')
    if cls: res['class'] = ' '.join(cls)
    return res

def _attr_str(d:dict)->str: return ''.join(f' {k}="{html.escape(v)}"' for k,v in d.items())

def _attr_link(m):
    txt,url,a = m.group(1),m.group(2),_attrs(m.group(3))
    if txt == 'source': a['class'] = (a.get('class','')+' source-link').strip(); a.pop('style', None)
    if a.get('target') == '_blank': a.setdefault('rel', 'noopener')
    txt = re.sub(r'`([^`]+)`', lambda c: f'<code>{html.escape(c.group(1))}</code>', txt)
    return f'<a href="{html.escape(url)}"{_attr_str(a)}>{txt}</a>'

def quarto_md(md:str):
    """Turn quarto-only markdown (fenced divs, callouts, `[..](..){attrs}` links, heading attrs) into markdown with
    placeholders, and the HTML for each placeholder (nbconvert's renderer would re-balance raw HTML tags)."""
    out, html_for, in_code = [], {}, False
    def ph(h):
        k = f'EYENETRAWHTML{len(html_for)}X'
        html_for[k] = h
        return k
    for line in md.splitlines():
        if _re_fence.match(line): in_code = not in_code
        if in_code: out.append(line); continue
        if m := _re_div_open.match(line):
            a = _attrs(m.group(1) or '.'+m.group(2))
            cls = a.get('class', '').split()
            kind = next((c.split('-',1)[1] for c in cls if c.startswith('callout-')), None)
            if kind: a['class'] = ' '.join(['callout'] + cls)
            title = a.pop('title', None) or (_CALLOUT_TITLES.get(kind) if kind else None)
            h = f'<div{_attr_str(a)}>' + (f'<div class="callout-title">{html.escape(title)}</div>' if title else '')
            out += ['', ph(h), '']
            continue
        if _re_div_close.match(line): out += ['', ph('</div>'), '']; continue
        if m := _re_heading_attrs.match(line): line = m.group(1)
        out.append(_re_attr_link.sub(lambda m: ph(_attr_link(m)), line))
    return '\n'.join(out), html_for

def unplace(h:str, html_for:dict)->str:
    "Put the HTML back for the placeholders of `quarto_md`."
    for k,v in html_for.items(): h = h.replace(f'<p>{k}</p>', v).replace(k, v)
    return h

def pandoc_id(text:str)->str:
    "Heading id as pandoc/quarto makes it (nbdev's doc links use these: `name.lower()`)."
    s = re.sub(r'[^\w\s.-]', '', text.strip().lower())
    s = re.sub(r'\s+', '-', s)
    s = re.sub(r'^[^a-z]+', '', s)
    return s or 'section'

_re_heading = re.compile(r'<h([1-6]) id="[^"]*">(.*?)<a class="anchor-link" href="#[^"]*">', re.S)

class DocsExporter(HTMLExporter):
    "nbconvert's HTML exporter with quarto-style markdown and heading ids, recording headings for the page TOC."
    headings:list = []
    ids:dict = {}

    def start_page(self): self.headings, self.ids = [], {}

    @pass_context
    def markdown2html(self, context, source):
        md, html_for = quarto_md(source)
        res = unplace(HTMLExporter.markdown2html(self, context, md), html_for)
        def _fix(m):
            lvl, inner = int(m.group(1)), m.group(2)
            text = html.unescape(re.sub(r'<[^>]+>', '', inner)).strip()
            hid = base = pandoc_id(text)
            n = self.ids.get(base, 0)
            if n: hid = f'{base}-{n}'
            self.ids[base] = n+1
            self.headings.append((lvl, hid, text))
            return f'<h{lvl} id="{hid}">{inner}<a class="anchor-link" href="#{hid}">'
        return _re_heading.sub(_fix, res)

# ---------------------------------------------------------------------------------------------------------------
# Cells: apply the quarto cell options that nbdev's processors leave in the source (`#| echo: false`, ...)

_re_opt = re.compile(r'^\s*#\|\s*([\w-]+)\s*:\s*(.*?)\s*$')

def _opts(src:str):
    "Split leading `#| key: value` lines off `src`."
    lines, opts = src.splitlines(), {}
    while lines and (m := _re_opt.match(lines[0])):
        opts[m.group(1)] = m.group(2).strip('"\'')
        lines.pop(0)
    return opts, '\n'.join(lines)

def _false(v): return str(v).lower() in ('false', 'no', '0')

_CELL_KEYS = {'cell_type', 'id', 'metadata', 'source', 'outputs', 'execution_count', 'attachments'}

def prep_cells(nb):
    "Strip quarto options from code cells and apply them; drop the frontmatter cell (returned as a dict)."
    fm, cells = {}, []
    for i,c in enumerate(nb.cells):
        for k in [k for k in c if k not in _CELL_KEYS]: del c[k]  # nbdev's private marks (`has_sd`, ...)
        c.setdefault('id', f'cell-{i}')
        c.setdefault('metadata', {}).pop('execution', None)  # timings; not always schema-valid, never shown
        if c.cell_type == 'raw' and c.source.lstrip().startswith('---') and not fm:
            fm = yaml.safe_load(c.source.strip().strip('-')) or {}
            continue
        if c.cell_type == 'code':
            opts, c.source = _opts(c.source)
            if _false(opts.get('include', True)): continue
            if _false(opts.get('echo', True)) or not c.source.strip(): c.metadata.setdefault('transient', {})['remove_source'] = True
            if _false(opts.get('output', True)): c.outputs = []
            tags = c.metadata.setdefault('tags', [])
            if re.match(r'\s*show_doc\(', c.source): tags.append('showdoc')
            if 'code-fold' in opts: tags.append('exported-source')
            if c.metadata.get('transient', {}).get('remove_source') and not c.outputs: continue
        cells.append(c)
    nb.cells = cells
    return fm

# ---------------------------------------------------------------------------------------------------------------

def _proc_one(o):
    "Run nbdev's docs processor on one `(src, dest, procs)` item; return `(src, error or None, warnings)`."
    import warnings, nbdev.serve_drv
    t = time.time()
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        try: nbdev.serve_drv.main(o); err = None
        except Exception as e: err = str(e) if str(e).startswith('Error') else f'{type(e).__name__}: {e}'
        finally: os.environ.pop('IN_TEST', None)
    msgs = [str(w.message).split('\n')[0].replace(' See FAQ.', ' (nbdev FAQ)') + ': ' + _first_line(w.message)
            for w in ws if 'imports and other code' in str(w.message)]
    return str(o[0]), err, msgs, time.time() - t

def _first_line(msg)->str:
    "First code line of the cell quoted in nbdev's warning."
    lines = [l for l in str(msg).split('---')[1].splitlines() if l.strip()] if '---' in str(msg) else []
    return (lines[0][:80] + ' ...') if lines else ''

def nb_num(name:str)->str:
    "The notebook's number prefix (`00a_synthetic.ipynb` -> `00a`), or ''."
    m = re.match(r'^(\d+[a-zA-Z0-9]*)_', name)
    return m.group(1) if m else ''

def sort_key(rel:Path):
    return (rel.parent.as_posix(), rel.stem != 'index', rel.name)

def rel_url(frm:str, to:str)->str:
    "Relative URL from page `frm` to page `to` (both posix paths under the site root)."
    return os.path.relpath(to, os.path.dirname(frm) or '.').replace(os.sep, '/')

def esc(s): return html.escape(str(s), quote=True)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--force', action='store_true', help='reprocess every notebook (ignore the _proc/ cache)')
    p.add_argument('--workers', type=int, default=min(2, os.cpu_count() or 1), help='processes for nbdev processing')
    p.add_argument('--out', default=None, help='output folder (default: doc_path from pyproject, `_docs`)')
    args = p.parse_args(argv)
    t0 = time.time()

    from nbdev.config import get_config, nbpath2html
    from nbdev.doclinks import nbglob
    from nbdev.serve import proc_nbs
    cfg = get_config()
    os.chdir(cfg.config_path)
    nbs, out = cfg.nbs_path, Path(args.out) if args.out else cfg.doc_path
    srcs = sorted((Path(f).relative_to(nbs) for f in nbglob(nbs)), key=sort_key)
    if not srcs: sys.exit(f'build_docs: no notebooks found in {nbs}')

    # 1. nbdev's processing step (what `nbdev-docs` does before quarto): writes processed notebooks to _proc/.
    #    Its worker pool stops at the first failing notebook; ours runs them all and collects the failures.
    import fastcore.parallel, nbdev.serve
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import build_docs  # workers are spawned: they find `_proc_one` by importing this file as a module
    failed, notes, timings = {}, [], []
    def _parallel(f, items, *a, **kw):
        for src, err, warns, secs in fastcore.parallel.parallel(build_docs._proc_one, items, *a, **kw):
            timings.append(f'{Path(src).stem} {secs:.1f}s')
            if err: failed[Path(src).resolve()] = err
            notes.extend(f'{Path(src).relative_to(nbs.parent)}: {w}' for w in warns)
    nbdev.serve.parallel = _parallel
    cache = proc_nbs(nbs, n_workers=args.workers, force=args.force)
    if timings: print(f'docs: nbdev processed {len(timings)} changed notebook(s): {", ".join(timings)}')
    for n in dict.fromkeys(notes): print(f'build_docs: warning: {n}', file=sys.stderr)
    if failed:
        for src, err in failed.items(): print(f'build_docs: nbdev could not process {src.relative_to(nbs.parent)}:\n{err}\n', file=sys.stderr)
        print(f'build_docs: {len(failed)} notebook(s) failed in nbdev\'s show_doc step (imports, exported and show_doc cells '
              'run in a fresh kernel; a cell that mixes imports with other code runs too -- nbdev FAQ). '
              'The quarto build (nbdev-docs) fails the same way. Their pages are left out.', file=sys.stderr)
        srcs = [r for r in srcs if (nbs/r).resolve() not in failed]
    t1 = time.time()

    # 2. the pages: title and description from each notebook's `# Title` / `> summary` (nbdev frontmatter)
    pages = []
    for rel in srcs:
        pf = cache/rel
        if not pf.exists(): sys.exit(f'build_docs: nbdev wrote no processed notebook for {nbs/rel} (expected {pf})')
        nb = nbformat.read(pf, as_version=4)
        fm = prep_cells(nb)
        url = (rel.parent/fm.get('output-file', nbpath2html(rel).name)).as_posix()
        pages.append(dict(rel=rel, nb=nb, url=url, title=str(fm.get('title') or rel.stem),
                          description=str(fm.get('description') or ''), num=nb_num(rel.name)))
    urls = [pg['url'] for pg in pages]
    if len(set(urls)) != len(urls): sys.exit(f'build_docs: two notebooks map to the same page name: {urls}')
    by_src = {pg['rel'].as_posix(): pg['url'] for pg in pages}

    # 3. render
    # built in the (gitignored) _proc/ under a name of its own: an interrupted or concurrent build leaves no trace
    tmp, old = cache/f'.site-tmp-{os.getpid()}', cache/f'.site-old-{os.getpid()}'
    try: write_site(tmp, out, old, pages, cfg, cache, nbs, urls, by_src)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    print(f'docs: {len(pages)} pages in {out}/ (nbdev processing {t1-t0:.1f}s, rendering {time.time()-t1:.1f}s)')
    if failed: sys.exit(f'build_docs: FAILED: {len(failed)} notebook(s) have no page (see above)')

def write_site(tmp, out, old, pages, cfg, cache, nbs, urls, by_src):
    "Render `pages` into `tmp`, then swap it in for `out`."
    (tmp/'assets').mkdir(parents=True)
    loader = jinja2.DictLoader({'eyenet_docs.html.j2': TEMPLATE})
    ex = DocsExporter(template_name='lab', template_file='eyenet_docs.html.j2', extra_loaders=[loader],
                      exclude_input_prompt=True, exclude_output_prompt=True, embed_images=True,
                      anchor_link_text='#')
    site_title = cfg.get('title') or cfg.lib_name
    doc_base = urljoin(cfg.get('doc_host', '') + '/', cfg.get('doc_baseurl', '')).rstrip('/') + '/' if cfg.get('doc_host') else None
    lab_css = None
    for i,pg in enumerate(pages):
        url = pg['url']
        root = '../' * url.count('/')
        def link(to): return rel_url(url, to)
        items = []
        for q in pages:
            cur = q is pg
            num = f'<span class="nb-num">{esc(q["num"])}</span>' if q['num'] else '<span class="nb-num"></span>'
            li, cur_attr = (' class="active"', ' aria-current="page"') if cur else ('', '')
            items.append(f'<li{li}><a href="{esc(link(q["url"]))}"{cur_attr}>{num}<span>{esc(q["title"])}</span></a></li>')
        sidebar = ('<nav id="site-nav" aria-label="Pages"><p class="nav-heading">Notebooks</p><ul>\n'
                   + '\n'.join(items) + '\n</ul></nav>')
        repo = cfg.get('git_url')
        topbar = (f'<header class="topbar"><a class="brand" href="{esc(link(pages[0]["url"]))}">{esc(site_title)}</a>'
                  f'<span class="tagline">{esc(cfg.get("description", ""))}</span>'
                  + (f'<a class="repo" href="{esc(repo)}">GitHub</a>' if repo else '') + '</header>')
        prv, nxt = (pages[i-1] if i else None), (pages[i+1] if i+1 < len(pages) else None)
        pager = '<nav class="pager" aria-label="Previous and next page">'
        if prv: pager += f'<a class="prev" href="{esc(link(prv["url"]))}"><span class="label">Previous</span>{esc(prv["title"])}</a>'
        if nxt: pager += f'<a class="next" href="{esc(link(nxt["url"]))}"><span class="label">Next</span>{esc(nxt["title"])}</a>'
        pager += '</nav>'
        head_title = pg['title'] if pg['title'] == site_title else f'{pg["title"]} – {site_title}'
        site = dict(root=root, head_title=esc(head_title), title=esc(pg['title']), description=esc(pg['description']),
                    topbar=topbar, sidebar=sidebar, pager=pager, src=esc((nbs.name/pg['rel']).as_posix()))
        ex.start_page()
        resources = {'site': site, 'metadata': {'name': pg['rel'].stem, 'path': str((cache/pg['rel']).parent)}}
        try: body, res = ex.from_notebook_node(pg['nb'], resources=resources)
        except Exception as e: raise SystemExit(f'build_docs: nbconvert could not render {nbs/pg["rel"]}: {type(e).__name__}: {e}')
        if lab_css is None: lab_css = '\n'.join(res.get('inlining', {}).get('css', []))
        toc = [h for h in ex.headings if h[0] in (2, 3)]
        toc_html = ('<aside id="toc" aria-label="On this page"><p class="toc-heading">On this page</p><ul>\n'
                    + '\n'.join(f'<li class="toc-h{l}"><a href="#{esc(h)}">{esc(t)}</a></li>' for l,h,t in toc)
                    + '\n</ul></aside>') if toc else '<aside id="toc"></aside>'
        body = body.replace('<!--EYENET-TOC-->', toc_html, 1)
        # links: the published site's absolute doc links and `.ipynb` links -> relative links to our pages
        def _href(m):
            target, frag = m.group(2).partition('#')[::2]
            new = None
            if doc_base and target.startswith(doc_base) and target[len(doc_base):] in urls: new = link(target[len(doc_base):])
            elif target.endswith('.ipynb') and '://' not in target:
                src = os.path.normpath(os.path.join(os.path.dirname(pg['rel'].as_posix()), target)).replace(os.sep, '/')
                if src in by_src: new = link(by_src[src])
            if new is None: return m.group(0)
            return f'{m.group(1)}"{esc(new)}{"#"+frag if frag else ""}"'
        body = re.sub(r'(\bhref=)"([^"#][^"]*)"', _href, body)
        dest = tmp/url
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(body, encoding='utf-8')

    # 4. shared stylesheets: jupyterlab's cell styles + pygments, then ours
    static = next((Path(d)/'lab'/'static' for d in ex.template_paths if (Path(d)/'lab'/'static'/'index.css').exists()),
                  next((Path(d)/'static' for d in ex.template_paths if (Path(d)/'static'/'index.css').exists()), None))
    if static is None: sys.exit('build_docs: cannot find nbconvert lab template styles (static/index.css)')
    (tmp/'assets'/'lab.css').write_text('\n'.join([(static/'index.css').read_text(), (static/'theme-light.css').read_text(),
                                                  lab_css or '']), encoding='utf-8')
    (tmp/'assets'/'site.css').write_text(SITE_CSS, encoding='utf-8')
    (tmp/'.nojekyll').touch()

    # 5. swap the new site in (a rename when `out` is on the same file system)
    if out.exists(): shutil.move(out, old)
    shutil.move(tmp, out)

if __name__ == '__main__': main()
