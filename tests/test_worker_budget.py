"""A study's timeout is one deadline, shared by every worker and by a resumed launch."""

from datetime import datetime, timedelta

import optuna
from optuna.trial import TrialState, create_trial

from hybridnas.objectives.study.definition import StudyDefinition
from hybridnas.objectives.study.service import timeout_left


def _study_started(seconds_ago: float) -> optuna.Study:
    study = optuna.create_study()
    trial = create_trial(state=TrialState.COMPLETE, value=0.5)
    trial.datetime_start = datetime.now() - timedelta(seconds=seconds_ago)
    study.add_trial(trial)
    return study


def test_timeout_counts_from_the_studys_first_trial():
    definition = StudyDefinition(dataset="cifar10", space="zureick", timeout=600)
    assert 290 < timeout_left(_study_started(300), definition.timeout) <= 300
    assert timeout_left(_study_started(900), definition.timeout) == 0.0
    assert timeout_left(optuna.create_study(), definition.timeout) == 600


def test_no_timeout_means_no_deadline():
    assert timeout_left(_study_started(10**6), StudyDefinition(dataset="cifar10", space="zureick").timeout) is None
