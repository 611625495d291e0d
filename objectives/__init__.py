"""Search and retrain objectives (`objective`, `retrain`), over the study service (`study/`)
and the study sampler (`samplers/`)."""
