"""What hybridnas stores in a study and on its trials: every attribute key, and `TrialRecord`, the
one reading of a trial (what it trained, and whether it counts).

The keys are the stored format: studies written by any hybridnas version must keep opening, so
a key or value here never changes. Everything reads a trial through `TrialRecord`, so whether a
trial trained its own architecture, repeats another or broke the limits is decided once.
Importing this loads nothing heavy (the CLI reads records and starts without Optuna).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

# Study user attrs.
DEFINITION_ATTR = "hybridnas"  # the study definition a search was launched with (StudyDefinition.to_document())
KIND_ATTR = "hybridnas_kind"  # SEARCH or RETRAIN, so launch and retrain never write into the other kind
SEARCH = "search"  # KIND_ATTR of a search study
RETRAIN = "retrain"  # KIND_ATTR of a retrain companion (`NAME/retrain`)
RETRAIN_ATTR = "hybridnas_retrain"  # a retrain companion's plan (RetrainPlan.model_dump())
WORKERS_ATTR = "hybridnas_workers"  # the Ray workers launches started: worker id -> {state, host, node, reason, ...}
ARTIFACTS_ATTR = "hybridnas_artifacts"  # where a launch put trial files (a directory or s3://...), for later workers
TUNES_ATTR = "hybridnas_tunes"  # a preset's recipe search (`NAME/tune/PRESET`): {"source": NAME, "preset": PRESET}

# Trial user attrs, search and retrain trials.
WORKER = "worker"  # the id of the worker that ran the trial
DEVICE = "device"  # the device it ran on, in words (training.measure.device_name)
PRECISION = "precision"  # the numeric precision it trained in (training.precision)
PARAMS = "params"  # parameter count of its model
MACS = "macs"  # multiply-accumulates of one image through its model
EPOCHS_RUN = "epochs_run"  # epochs trained so far (the last one reported, then all of them)
FAIL_REASON = "fail_reason"  # one line on why it failed (set on every FAIL hybridnas ends)
WALL_SECONDS = "wall_seconds"  # seconds the trial held its worker, all of its work
PRESET = "preset"  # the paper preset it is: queued by `enqueue_presets` (search) or a preset job (retrain)

# Search trial user attrs.
ARCH_KEY = "arch_key"  # what it trains: digest of the canonical config and training settings (dedup's lock)
CONFIG = "config"  # the sampled architecture, canonical (models.canonical.canonical_config)
TRAINING = "training"  # training settings beyond the engine's defaults: the study's fixed and sampled ones
#                       (on a tuned preset's retrain job: the tuned recipe it trains with)
DUPLICATE_OF = "duplicate_of"  # the earlier trial of the same ARCH_KEY whose result it reports, untrained
CONSTRAINT_VIOLATION = "constraint_violation"  # why it breaks a limit: max_params / max_macs / max_latency_ms (infeasible, untrained)
VAL_TOP1_PER_EPOCH = "val_top1_per_epoch"  # val top-1 after each epoch it trained
IMAGES_PER_S = "images_per_s"  # training throughput of a trained trial
SECONDS_PER_EPOCH = "seconds_per_epoch"  # mean seconds per epoch of a trained trial
PEAK_MEMORY_BYTES = "peak_memory_bytes"  # peak accelerator memory of a trained trial

# Retrain companion trial user attrs: the job (set when it is queued), then its results.
SOURCE_TRIAL = "source_trial"  # the search trial it retrains
SOURCE_PRESET = "source_preset"  # the preset that search trial was queued as (`enqueue_presets`)
SEED = "seed"  # the training seed of this run of the job
TUNED = "tuned"  # a preset job's tuned recipe: {"study": its recipe search, "trial": the best, "recipes": how many}
TEST_TOP1 = "test_top1"  # top-1 on the test split (or the held-out images); None without --test
TEST_IMAGES = "test_images"  # how many images TEST_TOP1 was measured on
LATENCY_MS_BATCH1 = "latency_ms_batch1"  # inference milliseconds for one image
LATENCY_MS_BATCH256 = "latency_ms_batch256"  # inference milliseconds for a batch of 256
TRAIN_SECONDS = "train_seconds"  # seconds the retraining took

# Trial system attrs: hybridnas's own, then Optuna's that hybridnas reads.
LOCAL_SEARCH_ATTR = "local_search"  # a local-search move: {"base": trial number, "param": the edited parameter}
FIXED_PARAMS = "fixed_params"  # Optuna's: the params `enqueue_trial` fixed for the trial
RETRY_HISTORY = "retry_history"  # Optuna's: the numbers of the failed trials this one re-runs, oldest first

# By name, so that reading a record needs no Optuna import.
_TRAINED_STATES = ("COMPLETE", "PRUNED")
_OWNING_STATES = ("RUNNING", "COMPLETE", "PRUNED")


@dataclass(frozen=True, slots=True)
class TrialRecord:
    """A trial as hybridnas reads it. Values are as stored, None where absent: trials of plain
    Optuna studies, older studies and trials that ended early lack some."""

    trial: FrozenTrial

    @property
    def _attrs(self) -> dict[str, Any]:
        return self.trial.user_attrs

    @property
    def config(self) -> dict[str, Any] | None:
        return self._attrs.get(CONFIG)

    @property
    def training(self) -> dict[str, Any]:
        """A copy of its training settings beyond the engine's defaults ({} when none)."""
        return dict(self._attrs.get(TRAINING) or {})

    @property
    def worker(self) -> str | None:
        return self._attrs.get(WORKER)

    @property
    def device(self) -> str | None:
        return self._attrs.get(DEVICE)

    @property
    def fail_reason(self) -> str | None:
        return self._attrs.get(FAIL_REASON)

    @property
    def arch_key(self) -> str | None:
        return self._attrs.get(ARCH_KEY)

    @property
    def duplicate_of(self) -> int | None:
        return self._attrs.get(DUPLICATE_OF)

    @property
    def constraint_violation(self) -> str | None:
        return self._attrs.get(CONSTRAINT_VIOLATION)

    @property
    def params(self) -> int | None:
        return self._attrs.get(PARAMS)

    @property
    def macs(self) -> int | None:
        return self._attrs.get(MACS)

    @property
    def epochs_run(self) -> int | None:
        return self._attrs.get(EPOCHS_RUN)

    @property
    def wall_seconds(self) -> float | None:
        return self._attrs.get(WALL_SECONDS)

    @property
    def preset(self) -> str | None:
        return self._attrs.get(PRESET)

    @property
    def tuned(self) -> dict[str, Any] | None:
        return self._attrs.get(TUNED)

    @property
    def source_trial(self) -> int | None:
        return self._attrs.get(SOURCE_TRIAL)

    @property
    def source_preset(self) -> str | None:
        return self._attrs.get(SOURCE_PRESET)

    @property
    def seed(self) -> int | None:
        return self._attrs.get(SEED)

    @property
    def test_top1(self) -> float | None:
        return self._attrs.get(TEST_TOP1)

    @property
    def test_images(self) -> int | None:
        return self._attrs.get(TEST_IMAGES)

    @property
    def latency_ms_batch1(self) -> float | None:
        return self._attrs.get(LATENCY_MS_BATCH1)

    @property
    def retry_history(self) -> list[int]:
        return self.trial.system_attrs.get(RETRY_HISTORY, [])

    @property
    def is_local_search_move(self) -> bool:
        return LOCAL_SEARCH_ATTR in self.trial.system_attrs

    @property
    def is_enqueued(self) -> bool:
        """Whether `enqueue_trial` fixed its params (a preset, a retry), so no sampler chose them."""
        return FIXED_PARAMS in self.trial.system_attrs

    @property
    def is_duplicate(self) -> bool:
        """It repeats an earlier trial's architecture and reports that trial's result, untrained."""
        return DUPLICATE_OF in self._attrs

    @property
    def is_infeasible(self) -> bool:
        """It breaks a limit (max_params / max_macs / max_latency_ms), so it was never trained."""
        return CONSTRAINT_VIOLATION in self._attrs

    @property
    def trained(self) -> bool:
        """It trained an architecture of its own: COMPLETE, or PRUNED by the pruner; never a
        duplicate (it reports another trial's result) or an infeasible sample (PRUNED untrained)."""
        return self.trial.state.name in _TRAINED_STATES and not self.is_duplicate and not self.is_infeasible

    @property
    def counts_toward_budget(self) -> bool:
        """It used up one unit of the study's `trials` budget: exactly the trained ones, since
        repeats and samples over a limit are recorded but never trained."""
        return self.trained

    def owns(self, key: str) -> bool:
        """It holds `key` for dedup (see objectives.study.dedup): it declared the key and trains or
        trained it as its own, so a later trial of that key waits for it and takes its result."""
        return (self.arch_key == key and self.trial.state.name in _OWNING_STATES
                and not self.is_duplicate and not self.is_infeasible)

    @property
    def distinct_key(self) -> Any:
        """What tells distinct architectures apart: its ARCH_KEY; a trial without one (plain
        Optuna, older studies) stands for itself, by its number."""
        return self._attrs.get(ARCH_KEY, self.trial.number)

    @property
    def meets_constraints(self) -> bool:
        """Every Optuna constraint value it set is satisfied (<= 0): what Optuna's best trials
        require; hybridnas's own infeasibility is `is_infeasible`."""
        return all(v <= 0 for v in self.trial.constraints.values())
