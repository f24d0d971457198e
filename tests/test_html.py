"""`coconut-lm analyze --html` and the superposition probes, on the tiny checkpoints test_analyze uses.

The page's embedded data is checked against the analysis records; the probes against slow direct
computations (generation's own thoughts, the HF backbone with eager attention, the embedding table);
the page's script runs under Node with a small DOM stand-in, and in headless Chromium when installed.
"""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from test_analyze import make_checkpoint

from coconut_lm.analysis.run import run_analysis
from coconut_lm.errors import CoconutError
from coconut_lm.tasks.examples import load_examples, save_examples
from coconut_lm.tasks.prosqa import generate_prosqa
from coconut_lm.tasks.prosqa_graph import all_shortest_paths, frontier, graph_from_example, shortest_distances

N = 6
PROBE_FIGURES = ["probe_attention.png", "probe_lens.png", "probe_similarity.png"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    data = root / "prosqa.json"
    save_examples(generate_prosqa(32, seed=0, workers=1), data)
    ckpt = make_checkpoint(root / "coconut", data)
    cot = make_checkpoint(root / "cot", data, method="cot", eval_thoughts=0)
    # Predictions of "another run", as coconut-lm eval writes them, for --compare.
    examples = load_examples(data)[:N]
    theirs = root / "theirs" / "eval"
    theirs.mkdir(parents=True)
    (theirs / "predictions.jsonl").write_text("".join(json.dumps(
        {"index": i, "question_id": str(ex.extra.get("id", i)), "text": f"made-up chain {i}\n### {ex.answer}",
         "correct": i % 2 == 0}) + "\n" for i, ex in enumerate(examples)))
    out = root / "analysis"
    run_analysis(ckpt, data, out, latents=[0, 1, 2, 3], cot=cot, max_examples=N, batch_size=8, max_new_tokens=12,
                 decode_examples=2, device="cpu", progress=False, html=True, compare=[f"Theirs={theirs.parent}"])
    return {"root": root, "data": data, "ckpt": ckpt, "out": out, "examples": examples}


def page_data(html: str) -> dict:
    m = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', html, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def close(a: float, b: float, rel: float = 2e-4, abs_: float = 1e-6) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


# ----------------------------------------------------------------------------------- the page


def test_page_is_written_and_self_contained(setup):
    html = (setup["out"] / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>")
    # Nothing is fetched: no external script, style, image or link target.
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", html, re.I)
    assert not re.search(r"<link\b|@import|url\(\s*['\"]?(https?:|//)", html, re.I)
    assert "<script src" not in html and "<img src=\"http" not in html
    assert len(re.findall(r"<script\b", html)) == 2  # the data and the inline script
    assert "[report.html](report.html)" in (setup["out"] / "analysis.md").read_text()


def test_embedded_data_matches_the_records(setup):
    out = setup["out"]
    data = page_data((out / "report.html").read_text())
    walk = read_jsonl(out / "walkthrough.jsonl")
    probes = {r["index"]: r for r in read_jsonl(out / "probes.jsonl")}
    cats = {(r["setting"], r["index"]): r["category"] for r in read_jsonl(out / "path_categories.jsonl")}
    assert len(data["examples"]) == len(walk) == N
    for ex, w, orig in zip(data["examples"], walk, setup["examples"]):
        g = graph_from_example(orig)
        assert ex["values"] == w["values"] and ex["n_thoughts"] == [0, 1, 2, 3]
        assert ex["names"] == list(g.names) and ex["edges"] == [list(e) for e in g.edges]
        assert (ex["root"], ex["target"], ex["neg_target"]) == (g.root, g.target, g.neg_target)
        assert ex["target_hops"] == shortest_distances(g, g.root)[g.target]
        assert ex["probes"] == probes[ex["index"]]
        # The main setting is forced k = 3 (the checkpoint's eval_thoughts), with its category per example.
        assert ex["category"] == cats[("k3", ex["index"])]
        labels = [x["label"] for x in ex["writes"]]
        assert labels == ["Coconut, k=3", "CoT", "Theirs"]
        assert ex["writes"][2]["text"] == f"made-up chain {ex['index']}\n### {orig.answer}"
    k3 = read_jsonl(out / "forced_k" / "k3" / "predictions.jsonl")
    assert [ex["writes"][0]["text"] for ex in data["examples"]] == [r["text"] for r in k3]
    assert [ex["correct"] for ex in data["examples"]] == [r["correct"] for r in k3]
    # The figures, byte for byte.
    assert sorted(data["figures"]) == sorted(p.stem for p in (out / "figures").glob("*.png"))
    for name, b64 in data["figures"].items():
        assert base64.b64decode(b64) == (out / "figures" / f"{name}.png").read_bytes()
    assert data["probes_summary"] == json.loads((out / "probes_summary.json").read_text())


def test_node_values_agree_with_the_frontier_values(setup):
    """Every node's value after h thoughts (c = 1) equals the frontier value latent search read for it."""
    walk = read_jsonl(setup["out"] / "walkthrough.jsonl")
    search = read_jsonl(setup["out"] / "latent_search.jsonl")
    checked = 0
    for w, rec in zip(walk, search):
        for f in rec["frontiers"]:
            t = w["n_thoughts"].index(f["n_thoughts"])
            for node in f["nodes"]:
                assert close(w["values"][t][node["node"]], node["value"], rel=1e-3), (rec["index"], f["hops"], node)
                checked += 1
            assert close(w["prefix_prob"][t], f["prefix_prob"], rel=1e-3)
        # one token per name: a thought's values over all nodes are one distribution's share
        assert all(sum(row) <= 1 + 1e-6 for row in w["values"])
    assert checked > 10


def test_graph_layout_puts_reached_nodes_at_their_distance(setup):
    for w, orig in zip(read_jsonl(setup["out"] / "walkthrough.jsonl"), setup["examples"]):
        g = graph_from_example(orig)
        dist = shortest_distances(g, g.root)
        assert all(w["layout"][n][1] == d for n, d in dist.items())
        assert all(0 < x < 1 for x, _ in w["layout"])
        layers = {}
        for x, y in w["layout"]:
            layers.setdefault(y, []).append(x)
        assert all(len(set(xs)) == len(xs) for xs in layers.values())  # no two nodes on one spot


# ---------------------------------------------------------------------------------- the probes


@pytest.fixture(scope="module")
def model(setup):
    from coconut_lm.training.checkpoint import load_model

    m, tok, meta = load_model(setup["ckpt"])
    return m.eval(), tok, meta


def generated_thoughts(model, ex) -> torch.Tensor:
    """The thoughts as generation makes them (KV cache, one thought per pass): (K, H)."""
    from coconut_lm.data.pipeline import tokenize_examples
    from coconut_lm.eval.evaluate import generate_prompts
    from coconut_lm.recipe.methods import get_method

    m, tok, meta = model
    (tex,) = tokenize_examples([ex], tok)
    prompt = get_method("coconut").eval_prompt(tex, meta.eval_thoughts, meta.layout, m.tokens)
    (g,) = generate_prompts(m, tok, [prompt], 4, return_thoughts=True)
    return g.thought_states.float()


def test_similarity_by_hand(setup, model):
    m, tok, _ = model
    rec = read_jsonl(setup["out"] / "probes.jsonl")[1]
    ex = setup["examples"][1]
    g = graph_from_example(ex)
    thoughts = generated_thoughts(model, ex)
    table = m.base.get_input_embeddings().weight.detach().float()
    assert rec["n_thoughts"] == len(thoughts) == 3
    for t in range(3):
        for n, name in enumerate(g.names):
            ids = tok("Every " + name, add_special_tokens=False)["input_ids"]
            assert len(ids) == 2  # word tokenizer: "Every", name
            e = table[ids[1]]
            dot = float(thoughts[t] @ e)
            cos = dot / float(thoughts[t].norm() * e.norm())
            assert close(rec["dot"][t][n], dot, rel=1e-3, abs_=1e-5), (t, n)
            assert close(rec["cos"][t][n], cos, rel=1e-3, abs_=1e-5), (t, n)
        # The categories, from the definitions: hop t+1 with c = 1.
        h = t + 1
        cats = rec["node_categories"][t]
        shortest = [p for p in all_shortest_paths(g, g.root, g.target) if len(p) > h]
        optimal = {p[h] for p in shortest} - {g.target}
        assert {n for n, c in enumerate(cats) if c == "optimal"} == optimal
        assert {n for n, c in enumerate(cats) if c in ("optimal", "frontier")} == frontier(g, g.root, h) - {g.target}
        dist = shortest_distances(g, g.root)
        assert {n for n, c in enumerate(cats) if c == "reachable"} == \
            {n for n, d in dist.items() if d <= h} - frontier(g, g.root, h) - {g.target}
        assert cats[g.target] == "target"


def test_similarity_summary_by_hand(setup):
    from coconut_lm.analysis.probe_categories import NODE_CATEGORIES

    recs = read_jsonl(setup["out"] / "probes.jsonl")
    summary = json.loads((setup["out"] / "probes_summary.json").read_text())
    for t in range(3):
        for cat in NODE_CATEGORIES:
            per = []
            for r in recs:
                vals = [r["cos"][t][n] for n, c in enumerate(r["node_categories"][t]) if c == cat]
                if vals:
                    per.append(sum(vals) / len(vals))
            row = next(x for x in summary["similarity"] if x["thought"] == t + 1 and x["category"] == cat)
            assert row["n"] == len(per)
            if per:
                assert close(row["mean_cos"], sum(per) / len(per), rel=1e-9)


def test_attention_by_hand(setup, model):
    """Last-layer attention from <bot> (which writes thought 1) to each fact, through HF's own eager forward."""
    m, tok, _ = model
    rec = read_jsonl(setup["out"] / "probes.jsonl")[0]
    ex = setup["examples"][0]
    g = graph_from_example(ex)
    from coconut_lm.data.pipeline import tokenize_examples

    (tex,) = tokenize_examples([ex], tok)
    thoughts = generated_thoughts(model, ex)
    ids = list(tex.question) + [m.tokens.bot] + [m.tokens.latent] * 3 + [m.tokens.eot]
    emb = m.base.get_input_embeddings()(torch.tensor([ids])).detach().clone()
    q = len(tex.question)  # <bot>
    for t in range(3):
        emb[0, q + 1 + t] = thoughts[t]
    old = m.base.config._attn_implementation
    m.base.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = m.base(inputs_embeds=emb, output_attentions=True, output_hidden_states=True)
    finally:
        m.base.set_attn_implementation(old)
    row = out.attentions[-1][0].mean(0)[q]  # (T,)
    qids = list(tex.question)
    checked = 0
    for i, (a, b) in enumerate(g.edges):
        text = f"{g.names[a]} is a {g.names[b]}." if a == g.root or g.names[a][0].isupper() else \
            f"Every {g.names[a]} is a {g.names[b]}."
        # the first fact has no space before it, the others do (a word tokenizer keeps it on the word)
        hits = [(s, sent) for variant in (text, " " + text)
                for sent in [tok(variant, add_special_tokens=False)["input_ids"]]
                for s in range(len(qids)) if qids[s:s + len(sent)] == sent]
        assert len(hits) == 1, (text, hits)
        starts, sent = [hits[0][0]], hits[0][1]
        want = float(row[starts[0]:starts[0] + len(sent)].sum())
        assert close(rec["attention"][0][i], want, rel=1e-3, abs_=1e-6), (i, text)
        checked += 1
    assert checked == len(g.edges)
    assert sum(rec["attention"][0]) <= 1 + 1e-4
    # edge categories at hop 1: the edges leaving the root are optimal or frontier, all others "other"
    cats = rec["edge_categories"][0]
    assert {i for i, c in enumerate(cats) if c in ("optimal", "frontier")} == \
        {i for i, (a, _) in enumerate(g.edges) if a == g.root}
    # the last layer of the HF forward is the trace's: the logit lens there is the next token's distribution
    assert torch.allclose(out.hidden_states[-1][0, q], thoughts[0], atol=1e-5)


def test_logit_lens_last_layer_is_the_decoded_thought(setup, model):
    m, tok, _ = model
    decoded = json.loads((setup["out"] / "thoughts.json").read_text())["examples"]
    recs = read_jsonl(setup["out"] / "probes.jsonl")
    assert decoded
    for d in decoded:
        rec = recs[d["index"]]
        assert len(rec["lens"]) == len(d["thoughts"]) == 3
        for lens, top in zip(rec["lens"], d["thoughts"]):
            assert len(lens) == len(rec["lens_layers"]) == m.base.config.n_layer + 1
            assert [x[0] for x in lens[-1]] == [x["token"] for x in top]
            assert all(close(x[1], y["prob"], rel=1e-3) for x, y in zip(lens[-1], top))


def test_logit_lens_inner_layer_by_hand(setup, model):
    """Layer 0 (the inputs) at <bot>: the final norm and LM head on embedding + position, by hand."""
    m, tok, _ = model
    rec = read_jsonl(setup["out"] / "probes.jsonl")[0]
    from coconut_lm.data.pipeline import tokenize_examples

    (tex,) = tokenize_examples([setup["examples"][0]], tok)
    q = len(tex.question)
    with torch.no_grad():
        x = m.base.transformer.wte.weight[m.tokens.bot] + m.base.transformer.wpe.weight[q]
        probs = torch.softmax(m.base.lm_head(m.base.transformer.ln_f(x)).float(), -1)
    top = probs.topk(5)
    assert [x[0] for x in rec["lens"][0][0]] == [tok.decode([int(i)]) for i in top.indices]
    assert all(close(x[1], float(p), rel=1e-3) for x, p in zip(rec["lens"][0][0], top.values))


def test_trace_equals_the_multipass_forward(setup):
    recs = read_jsonl(setup["out"] / "probes.jsonl")
    assert len(recs) == N and all(r["multipass_gap"] < 1e-4 for r in recs)


def test_probe_tables_and_figures(setup):
    out = setup["out"]
    assert all((out / "figures" / f).stat().st_size > 10_000 for f in PROBE_FIGURES)
    md = (out / "analysis.md").read_text()
    assert "## Superposition probes" in md
    for f in PROBE_FIGURES:
        assert f"figures/{f}" in md


# ------------------------------------------------------------------------------ the page's script

NODE_RUNNER = r"""
const fs = require("fs"), vm = require("vm");
const [html, example, hash] = [fs.readFileSync(process.argv[2], "utf8"), Number(process.argv[3]), process.argv[4]];
const data = html.match(/<script id="report-data" type="application\/json">([\s\S]*?)<\/script>/)[1];
const code = html.match(/<script>\n([\s\S]*?)<\/script>/)[1];
const ids = {}, requested = new Set();
class El {
  constructor(tag, ns) { this.tagName = tag; this.ns = ns || null; this.children = []; this.attrs = {}; this._text = "";
    this.listeners = {}; this.hidden = false; this.className = ""; this.value = ""; this.style = {}; }
  appendChild(c) { this.children.push(c); return c; }
  setAttribute(k, v) { this.attrs[k] = String(v); if (k === "id") ids[v] = this; if (k === "value") this.value = String(v); }
  getAttribute(k) { return k in this.attrs ? this.attrs[k] : null; }
  set textContent(t) { this.children = []; this._text = String(t); }
  get textContent() { return this._text + this.children.map(c => c.textContent).join(""); }
  addEventListener(type, fn) { (this.listeners[type] = this.listeners[type] || []).push(fn); }
  fire(type) { (this.listeners[type] || []).forEach(fn => fn({})); }
  getElementsByTagName(tag) { const out = []; const walk = n => n.children.forEach(c => { if (c.tagName === tag) out.push(c); walk(c); }); walk(this); return out; }
}
const document = {
  getElementById(id) { requested.add(id); if (!ids[id]) { const e = new El("div"); e.attrs.id = id; ids[id] = e; if (id === "report-data") e._text = data; } return ids[id]; },
  createElement(tag) { return new El(tag); },
  createElementNS(ns, tag) { return new El(tag, ns); },
};
const listeners = {};
const window = { location: { hash }, addEventListener(t, fn) { (listeners[t] = listeners[t] || []).push(fn); } };
vm.runInNewContext(code, { window, document, console });
const R = window.coconutReport;
const circles = () => document.getElementById("graph").getElementsByTagName("circle");
const lines = () => document.getElementById("graph").getElementsByTagName("line");
R.show(example);
const drawn = R.data.examples.find(e => e.index === example).n_thoughts.map(t => {
  R.step(t);
  return circles().map(c => [Number(c.getAttribute("data-node")), Number(c.getAttribute("data-value"))]);
});
document.getElementById("next").fire("click");  // the buttons step too
const afterNext = R.state.t;
document.getElementById("edge-by").value = "attention"; document.getElementById("edge-by").fire("change");
document.getElementById("color-by").value = "cos"; document.getElementById("color-by").fire("change");
R.step(1);
const attention = lines().map(l => Number(l.getAttribute("data-attention")));
document.getElementById("f-correct").value = "1"; document.getElementById("f-correct").fire("change");
const listed = document.getElementById("example-list").getElementsByTagName("li").map(li => Number(li.getAttribute("data-index")));
document.getElementById("f-correct").value = ""; document.getElementById("f-correct").fire("change");
const selftest = R.selftest(3);
["probes", "figures", "walk"].forEach(v => R.setView(v));
const imgs = document.getElementById("figures").getElementsByTagName("img").length;
console.log(JSON.stringify({ drawn, afterNext, attention, listed, selftest, imgs, requested: [...requested],
                             errors: R.errors }));
"""


def run_node(html_path: Path, example: int, hash_: str = "", tmp: Path | None = None) -> dict:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("node is not installed; the page's script is not run")
    script = (tmp or html_path.parent) / "run_page.js"
    script.write_text(NODE_RUNNER)
    res = subprocess.run([node, str(script), str(html_path), str(example), hash_], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_page_script_draws_the_recorded_values(setup, tmp_path):
    html_path = setup["out"] / "report.html"
    html = html_path.read_text()
    walk = read_jsonl(setup["out"] / "walkthrough.jsonl")
    probes = read_jsonl(setup["out"] / "probes.jsonl")
    k3 = read_jsonl(setup["out"] / "forced_k" / "k3" / "predictions.jsonl")
    res = run_node(html_path, 2, tmp=tmp_path)
    assert res["errors"] == []
    # Stepping through the thoughts of example 2 draws, at each t, every node with the recorded value.
    w = walk[2]
    assert len(res["drawn"]) == len(w["n_thoughts"]) == 4
    for t, circles in enumerate(res["drawn"]):
        assert sorted(n for n, _ in circles) == list(range(len(w["names"])))
        assert all(v == w["values"][t][n] for n, v in circles)
    assert len({tuple(v for _, v in c) for c in res["drawn"]}) > 1  # the drawing changes with the thought
    assert res["afterNext"] == 3  # from t = 3 (the last) "next" stays at 3
    assert res["attention"] == probes[2]["attention"][0]
    assert res["listed"] == [r["index"] for r in k3 if r["correct"]]
    assert res["selftest"]["ok"] and res["selftest"]["changed"] and res["selftest"]["checked"] > 0
    assert res["imgs"] == len(list((setup["out"] / "figures").glob("*.png")))
    # every element the script looks up exists in the page
    missing = [i for i in res["requested"] if f'id="{i}"' not in html]
    assert missing == []


def test_page_in_headless_chromium(setup, tmp_path):
    """The real browser: the self test steps through thoughts; no script error; a screenshot."""
    chrome = next((c for c in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if c), None)
    if chrome is None:
        pytest.skip("headless Chromium is not installed (Debian package 'chromium')")
    url = (setup["out"] / "report.html").resolve().as_uri()
    flags = [chrome, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=10000", f"--user-data-dir={tmp_path / 'profile'}"]
    res = subprocess.run([*flags, "--dump-dom", url + "#selftest=3"], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(r'<pre id="selftest-result">(.*?)</pre>', res.stdout, re.S)
    assert m, res.stdout[-2000:]
    result = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    assert result["ok"] and result["changed"] and result["errors"] == [], result
    assert "Uncaught" not in res.stderr and "SyntaxError" not in res.stderr
    shot = tmp_path / "report.png"
    res = subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1400,1000", url + "#example=1&t=2"],
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0 and shot.stat().st_size > 10_000


# ------------------------------------------------------------------------------------ bad input


def test_compare_needs_html_and_an_existing_file(setup, tmp_path):
    kw = {"latents": [1], "max_examples": 2, "device": "cpu", "progress": False}
    with pytest.raises(CoconutError, match="give --html too"):
        run_analysis(setup["ckpt"], setup["data"], tmp_path / "a", compare=["x.jsonl"], **kw)
    with pytest.raises(CoconutError, match="--compare .*nope: no predictions.jsonl there") as e:
        run_analysis(setup["ckpt"], setup["data"], tmp_path / "b", html=True, compare=[str(tmp_path / "nope")], **kw)
    assert "\n" not in str(e.value)


def test_a_rerun_without_html_removes_the_stale_page(setup, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(setup["out"], out)
    with pytest.raises(CoconutError, match="not empty"):  # an earlier analysis is replaced only when asked
        run_analysis(setup["ckpt"], setup["data"], out, latents=[1], max_examples=2, device="cpu", progress=False)
    assert (out / "report.html").exists()
    run_analysis(setup["ckpt"], setup["data"], out, latents=[1], max_examples=2, max_new_tokens=4, decode_examples=0,
                 probe_examples=0, device="cpu", progress=False, overwrite=True)
    assert not (out / "report.html").exists() and not (out / "walkthrough.jsonl").exists()
    assert not (out / "probes.jsonl").exists() and not list((out / "figures").glob("probe_*.png"))
    assert "report.html" not in (out / "analysis.md").read_text()
