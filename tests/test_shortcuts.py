"""Answer shortcuts (`coconut_lm.analysis.shortcuts`) and scripts/shortcut_probe.py on hand-made graphs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from coconut_lm.analysis.shortcuts import answer_pick, shortcut_rows, shortcut_table, statistic_pick
from coconut_lm.errors import CoconutError
from coconut_lm.tasks.prosqa_graph import ProsQAGraph

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import shortcut_probe  # noqa: E402


def graph(edges, target, neg, symbolic=True, n=8) -> ProsQAGraph:
    """Root 0; nodes named n0..n7 (symbolic) or Tom, c1..c7 (word form)."""
    names = tuple(f"n{i}" for i in range(n)) if symbolic else ("Tom", *(f"c{i}" for i in range(1, n)))
    return ProsQAGraph(names, tuple(edges), 0, target, neg, (target, neg), symbolic=symbolic)


# Root 0 -> 1 -> 2 (target, one parent); 3 -> 5, 4 -> 5, 6 -> 5 (the other option 5, three parents, none from 0).
SHORT = graph([(0, 1), (1, 2), (3, 5), (4, 5), (6, 5)], target=2, neg=5)
# The same with the options' parent counts reversed: the target 2 has three parents, 5 one.
REVERSED = graph([(0, 1), (1, 2), (3, 2), (4, 2), (6, 5)], target=2, neg=5)
# A tie: one parent each; 2 is 3 hops away.
TIED = graph([(0, 1), (1, 7), (7, 2), (6, 5)], target=2, neg=5)


def test_statistic_picks_and_ties():
    assert statistic_pick(SHORT, "fewer_parents") == 2
    assert statistic_pick(REVERSED, "fewer_parents") == 5
    assert statistic_pick(TIED, "fewer_parents") is None
    assert statistic_pick(SHORT, "more_ancestors") == 5      # 3 ancestors against 2 (0 and 1)
    assert statistic_pick(REVERSED, "more_ancestors") == 2   # 0, 1, 3, 4 against 6
    with pytest.raises(CoconutError, match="unknown shortcut statistic 'nope'"):
        statistic_pick(SHORT, "nope")


def test_answer_pick_symbolic_and_words():
    assert answer_pick(SHORT, "n1 n2\n### n2") == 2
    assert answer_pick(SHORT, "### n5") == 5
    assert answer_pick(SHORT, "### n3") is None              # a node, but not an option
    assert answer_pick(SHORT, "n1 n2") is None               # no answer written
    words = graph(SHORT.edges, 2, 5, symbolic=False)
    assert answer_pick(words, "Tom is a c1.\nEvery c1 is a c2.\n### Tom is a c2.") == 2
    assert answer_pick(words, "### Tom is a c5.") == 5
    assert answer_pick(words, "### Bob is a c5.") is None    # not the question's entity


def texts(graphs, picks) -> list[str]:
    return [f"### {g.names[p]}" if p is not None else "### ?" for g, p in zip(graphs, picks)]


def test_table_tells_a_shortcut_from_the_chain():
    graphs = [SHORT, REVERSED, TIED, SHORT]
    # A model that answers by the statistic (and the first option on a tie) against one that is always right.
    shortcut = shortcut_rows(graphs, texts(graphs, [statistic_pick(g, "fewer_parents") or g.neg_target for g in graphs]))
    chain = shortcut_rows(graphs, texts(graphs, [g.target for g in graphs]))
    assert [r["hops"] for r in chain] == [2, 2, 3, 2]
    s, c = shortcut_table(shortcut, "fewer_parents"), shortcut_table(chain, "fewer_parents")
    assert set(s) == {"2", "3", "all"}
    assert (s["all"].n, s["all"].ties) == (4, 1)
    assert s["all"].statistic_right == pytest.approx(2 / 3)
    assert s["all"].followed == 1.0 and s["all"].accuracy_untied == pytest.approx(2 / 3)
    assert s["all"].accuracy_tied == 0.0
    assert c["all"].followed == pytest.approx(2 / 3) and c["all"].accuracy_untied == 1.0 and c["all"].accuracy_tied == 1.0
    assert c["3"].statistic_right is None and c["3"].followed is None     # its one example is a tie
    unanswered = shortcut_table(shortcut_rows(graphs, ["n1"] * 4), "fewer_parents")["all"]
    assert unanswered.followed is None and unanswered.accuracy_untied == 0.0


def write_case(tmp_path: Path, picks) -> tuple[Path, Path]:
    """A two-item symbolic data file (SHORT and REVERSED) and a predictions.jsonl answering `picks`."""
    items = []
    for g in (SHORT, REVERSED):
        items.append({"question": "x [Q] n2 n5 [R] n0", "steps": ["n1", "n2"], "answer": "n2", "format": "symbolic",
                      "idx_to_symbol": list(g.names), "edges": [list(e) for e in g.edges], "root": 0, "target": 2,
                      "neg_target": 5})
    data = tmp_path / "data.json"
    data.write_text(json.dumps(items))
    pred = tmp_path / "ev" / "predictions.jsonl"
    pred.parent.mkdir()
    pred.write_text("".join(json.dumps({"index": i, "text": f"### n{p}"}) + "\n" for i, p in enumerate(picks)))
    return data, pred


def test_script_prints_and_writes_tables(tmp_path, capsys):
    data, pred = write_case(tmp_path, [2, 5])    # follows fewer_parents on both
    out = tmp_path / "t.json"
    assert shortcut_probe.main([str(data), f"m={pred.parent}", "--statistic", "fewer_parents", "--json", str(out)]) == 0
    assert "| all | 2 | 0 | 50.0 | 100.0 | 50.0 | – |" in capsys.readouterr().out
    table = json.loads(out.read_text())["tables"]["m"]["fewer_parents"]
    assert table["all"]["followed"] == 1.0 and table["2"]["n"] == 2


def test_script_refuses_predictions_of_another_file(tmp_path, capsys):
    data, pred = write_case(tmp_path, [2])       # one prediction for two items
    assert shortcut_probe.main([str(data), str(pred)]) == 2
    err = capsys.readouterr().err
    assert f"predictions {pred}: indices do not cover the 2 items of {data}" in err
