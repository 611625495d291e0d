"""The study service: what a hybridnas study is and stores, and how it is created, resumed,
counted, deduplicated and read back.

`definition` (the study definition), `records` (every stored key and the read of a trial),
`service` (create or resume, presets, budget, status), `dedup` (one training per distinct
architecture), `results` (picking and exporting trials).
"""
