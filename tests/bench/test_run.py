"""How bench/run.py sums up repeated storm runs and judges them against
SPEC.md §8."""

from __future__ import annotations

from bench import run


def storm_row(**figures) -> dict:
    row = {
        "server": "tongxin",
        "shape": "embedded",
        "processes": 1,
        "viewers": 2000,
        "all_in_s": 10.0,
        "joins_per_s": 200.0,
        "never_in": 0,
        "failed": 0,
        "lost": 0,
        "attempts": 2000,
        "errors": 0,
        "error_kinds": {},
        "join_stats": {"admitted": 2000, "refused": 0, "abandoned": 0},
        "ratio": {"joins_per_s": 0.6},
    }
    return {**row, **figures}


def test_median_of_storms_counts_a_run_not_all_in_as_the_slowest():
    runs = [storm_row(all_in_s=3.0), storm_row(all_in_s=None, never_in=40), storm_row(all_in_s=5.0)]
    median = run.median_of(runs)
    assert median["all_in_s"] == 5.0
    assert median["never_in"] == 40  # the worst run's
    runs = [storm_row(all_in_s=None), storm_row(all_in_s=None), storm_row(all_in_s=4.0)]
    assert run.median_of(runs)["all_in_s"] is None


def test_median_of_storms_takes_the_worst_of_lost_and_failed():
    runs = [storm_row(lost=0, failed=0), storm_row(lost=12, failed=2), storm_row(lost=3)]
    median = run.median_of(runs)
    assert (median["lost"], median["failed"]) == (12, 2)


def test_median_of_join_stats_is_per_figure_and_missing_when_a_run_lacks_them():
    runs = [
        storm_row(join_stats={"admitted": 2000, "refused": 10, "abandoned": 1}),
        storm_row(join_stats={"admitted": 2000, "refused": 30, "abandoned": 0}),
        storm_row(join_stats={"admitted": 2000, "refused": 20, "abandoned": 5}),
    ]
    assert run.median_of(runs)["join_stats"] == {"abandoned": 1, "admitted": 2000, "refused": 20}
    runs[1]["join_stats"] = None
    assert run.median_of(runs)["join_stats"] is None


def test_verdicts_judge_an_embedded_storm_of_two_thousand():
    report = {"storms": [storm_row(server="baseline", shape="bare"), storm_row()]}
    assert run.verdicts(report) == [
        "ok      storm, 2,000 at once on 1 embedded process: all in within 15 s (10.0 s)",
        "ok      storm, 2,000 at once on 1 embedded process: joins/s 0.6× the bare server ≥ 0.5×",
    ]
    report = {"storms": [storm_row(all_in_s=None, never_in=1906, ratio={"joins_per_s": 0.01})]}
    assert [line[:6] for line in run.verdicts(report)] == ["MISSED", "MISSED"]


def test_verdicts_judge_a_production_storm_of_five_thousand_and_a_restart():
    report = {
        "storms": [storm_row(shape="production", processes=2, viewers=5000, all_in_s=18.0, lost=1)],
        "restarts": [
            {"viewers_per_process": 2000, "back_s": 4.2, "never_back": 0, "lost": 0},
        ],
    }
    assert run.verdicts(report) == [
        "MISSED  storm, 5,000 at once on 2 production processes: "
        "all in within 20 s, nothing lost (18.0 s, lost 1)",
        "ok      restart storm, 2,000 viewers on the stopped process: all back within 10 s (4.2 s)",
        "ok      restart storm: no question lost (lost 0)",
    ]


def test_verdicts_leave_small_storms_unjudged():
    report = {
        "storms": [storm_row(viewers=500)],
        "restarts": [{"viewers_per_process": 300, "back_s": 2.0, "never_back": 0, "lost": 0}],
    }
    assert run.verdicts(report) == []
