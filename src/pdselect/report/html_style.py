"""report.html's inline assets: the style sheet and the review table's script (no files, no
network: the page is one self-contained file). Colours: Okabe-Ito blue #0072B2, orange #E69F00,
vermillion #D55E00.
"""

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;
padding:16px 24px;color:#222;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #ddd;
padding-bottom:3px;margin-top:1.6em}h3{font-size:1em;margin:1em 0 .3em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4}
td.gap,td.pd,td.rank{text-align:right;font-variant-numeric:tabular-nums}
td.own{outline:2px solid #333;outline-offset:-2px;font-weight:600}
table.matrix td{text-align:center}.heat{display:inline-block;min-width:3em;padding:1px 4px}
.na{color:#aaa}
.warn{background:#fdf3e1;border:1px solid #E69F00;border-radius:4px;padding:8px 14px 8px 2.2em}
.warn li{margin:.25em 0}.warn li::marker{content:"⚠ "}.ok{background:#e8f2f9;
border:1px solid #0072B2;border-radius:4px;padding:8px 14px}
.verdict{border-left:6px solid #999;padding:8px 14px;background:#f7f7f7;font-size:1.05em}
.verdict.clear{border-color:#0072B2;background:#e8f2f9}
.verdict.cannot{border-color:#E69F00;background:#fdf3e1}
.verdict.none{border-color:#D55E00;background:#fbe9df}
.badge{font-weight:700;margin-right:.4em}
td.k{color:#005a8c;white-space:nowrap}td.d{color:#a34400;white-space:nowrap}
td.n{text-align:right;font-variant-numeric:tabular-nums}.arr{font-size:.75em;margin-right:3px}
table.review th{cursor:pointer;position:sticky;top:0}
table.review td{white-space:nowrap;padding:2px 6px}table.nowrap td{white-space:nowrap}
table.review td.t{max-width:16em;overflow:hidden;text-overflow:ellipsis}
table.review th[aria-sort=ascending]::after{content:" ▲"}
table.review th[aria-sort=descending]::after{content:" ▼"}
.scroll{max-height:560px;overflow:auto;border:1px solid #ddd}
.controls{margin:.4em 0}.controls input,.controls select{font-size:.9em}
.note{color:#666;font-size:.9em}
img{max-width:100%;height:auto;border:1px solid #eee;margin:.4em 0}
.figs{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
tr.texts td{background:#fcfcfc;padding:6px}
.three{display:grid;grid-template-columns:1fr 1fr 1fr;gap:8px}
.txt .lab{font-size:.75em;text-transform:uppercase;color:#777;letter-spacing:.05em}
.txt .body{white-space:pre-wrap;max-height:11em;overflow:auto;font-size:.85em;
border:1px solid #eee;padding:4px;background:#fff}
code{background:#f4f4f4;padding:0 3px}
dl.kv{display:grid;grid-template-columns:max-content auto;gap:2px 14px}dl.kv dt{color:#555}
dl.kv dd{margin:0}
"""


# sorts by a header click (numbers by data-v), filters by text / kept / aspect; no libraries
SCRIPT = """(function(){
var t=document.getElementById('pair-table');if(!t)return;
var tb=t.tBodies[0],rows=[].slice.call(tb.rows),hs=[].slice.call(t.tHead.rows[0].cells);
var q=document.getElementById('pair-filter'),k=document.getElementById('pair-kept'),
a=document.getElementById('pair-aspect'),c=document.getElementById('pair-count');
function apply(){var s=q.value.toLowerCase(),n=0;rows.forEach(function(r){
var ok=(!s||r.textContent.toLowerCase().indexOf(s)>=0||
(r.getAttribute('data-pair-id')||'').toLowerCase().indexOf(s)>=0)&&
(!k.value||r.getAttribute('data-kept')===k.value)&&
(!a.value||r.getAttribute('data-aspect')===a.value);r.hidden=!ok;if(ok)n++;});
c.textContent=n;}
[q,k,a].forEach(function(e){e.addEventListener('input',apply);e.addEventListener('change',apply);});
function key(r,i){var d=r.cells[i],v=d.getAttribute('data-v');if(v===null)v=d.textContent;
var f=parseFloat(v);return isNaN(f)?v.toLowerCase():f;}
function sort(i){var h=hs[i],asc=h.getAttribute('aria-sort')!=='ascending';
hs.forEach(function(x){x.removeAttribute('aria-sort');});
h.setAttribute('aria-sort',asc?'ascending':'descending');
rows.sort(function(x,y){var u=key(x,i),w=key(y,i),d;
if(typeof u==='number'&&typeof w==='number')d=u-w;else if(typeof u==='number')d=-1;
else if(typeof w==='number')d=1;else d=u<w?-1:u>w?1:0;return asc?d:-d;});
rows.forEach(function(r){tb.appendChild(r);});}
hs.forEach(function(h,i){h.addEventListener('click',function(){sort(i);});
h.addEventListener('keydown',function(e){if(e.key==='Enter')sort(i);});});
})();"""
