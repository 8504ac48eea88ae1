"""`simulate --ab`'s trial summary: outcomes counted against the expected scores, for guards and for trials."""

from bot.sim.ab import TrialRecord, _note, trial_summary


def _rec(i: int, verdict: str | None, candidate_score: float, *, guard: bool) -> TrialRecord:
    return TrialRecord(
        i, f"c{i}", f"a{i}", 0, verdict=verdict, expected={f"c{i}": candidate_score, f"a{i}": 1.0}, guard=guard
    )


def test_guard_summary_counts_serving_candidates_and_rollbacks():
    """A guard's candidate serves unless rolled back: futile and undecided guards leave it serving, so a truly
    worse one among them is a miss; a rollback of a truly worse candidate is right, of a better one wrong."""
    records = [
        _rec(1, "keep", 0.8, guard=True),  # worse, rolled back: right
        _rec(2, "keep", 1.2, guard=True),  # better, rolled back: wrong
        _rec(3, "futile", 0.9, guard=True),  # worse, no harm shown: still serves
        _rec(4, None, 0.7, guard=True),  # worse, still guarding at the end: serves
        _rec(5, "promote", 1.3, guard=True),  # better, confirmed: right
        _rec(6, None, 1.1, guard=True),  # better, guarding
    ]
    s = trial_summary(records, "guard")
    assert s["mode"] == "guard" and s["trials"] == 6
    assert (s["rolled_back"], s["confirmed"], s["no_harm_shown"], s["guarding"]) == (2, 1, 1, 2)
    assert s["wrongly_rolled_back"] == 1
    assert s["worse_serving"] == 2
    assert s["right"] == 2  # #1 rolled back and worse, #5 kept and better
    assert s["candidates_truly_better"] == 3
    note = _note(s)
    assert "2 rolled back" in note and "2 truly worse candidate(s) still serve" in note


def test_trial_summary_unchanged_for_superiority_trials():
    """A superiority trial: futile ends with the incumbent, so only a promoted worse candidate is a wrong promotion."""
    records = [
        _rec(1, "promote", 1.2, guard=False),
        _rec(2, "promote", 0.9, guard=False),
        _rec(3, "keep", 0.8, guard=False),
        _rec(4, "futile", 0.7, guard=False),
        _rec(5, None, 1.4, guard=False),
    ]
    s = trial_summary(records, "trial")
    assert (s["promoted"], s["kept"], s["ended"], s["undecided"]) == (2, 1, 1, 1)
    assert (s["right"], s["wrongly_promoted"], s["wrongly_kept"]) == (2, 1, 0)
    assert "went on trial" in _note(s)
