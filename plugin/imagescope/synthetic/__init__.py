"""An offline benchmark with exact ground truth: drawn catalogs, queries, a tiny CLIP.

- :mod:`.catalog`: procedurally drawn images with known attributes, and a
  ``catalog.csv`` that ``imagescope ingest`` reads;
- :mod:`.queries`: text, composed and dialog queries whose answers are computed
  from the attributes;
- :mod:`.train`: the tiny "ImageScope-Synth" open_clip model, trained on the CPU
  (a trained checkpoint ships in ``weights/``);
- :mod:`.bench`: R@K per stage and per query kind, with the cost of each stage.
"""
