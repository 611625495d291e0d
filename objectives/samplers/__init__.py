"""The study sampler's wrappers around TPE: `local_search` (one-edit moves from the best
trial), `trial_snapshot` (one read of the study per trial), and `study_view`, the study as
both hand it to the sampler they wrap."""
