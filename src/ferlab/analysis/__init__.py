"""Analyses of trained models (issue #6): robustness to corruptions, Grad-CAM explanations, complexity
profiles and a one-page HTML report of a run.

* :mod:`ferlab.analysis.corruptions` — seeded, deterministic corruptions of uint8 face crops (rotation,
  occlusion, brightness/contrast, blur, JPEG), each with a severity grid (``ferlab robustness``);
* :mod:`ferlab.analysis.robustness` — accuracy per corruption and severity, the papers' buckets, tables
  and a line plot;
* :mod:`ferlab.analysis.explain` — Grad-CAM / Grad-CAM++ / Score-CAM heat maps on each model's
  ``gradcam_layer`` (the optional ``grad-cam`` package: ``pip install -e ".[explain]"``), overlays and a
  comparison grid (``ferlab explain``);
* :mod:`ferlab.analysis.complexity` — parameters, FLOPs, peak memory, latency and throughput, fp32 and
  bf16 (``ferlab profile``);
* :mod:`ferlab.analysis.report` — a run's curves, evaluations, robustness and Grad-CAM grid in one
  self-contained HTML page (``ferlab report``).

Submodules are imported on use, so ``import ferlab`` never pays for matplotlib or grad-cam.
"""
