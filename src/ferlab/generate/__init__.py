"""Class balancing with generated faces (Berindeie 2024): deficit planner, dynamic prompts, Stable Diffusion
generation, face post-processing and merging into a new training-set version.

``ferlab generate plan|prompts|images|merge`` run the steps from the command line. Only the ``backend``
needs the optional extra ``ferlab[generate]`` (diffusers, transformers, accelerate), imported when a
pipeline is loaded; everything else works without it.
"""

from ..data.synthetic import mark_synthetic, real_only, split_synthetic, synthetic_mask
from .backend import GenerationReport, GenerationSettings, generate_images, load_pipeline, read_manifest
from .merge import merge_synthetic, write_dataset
from .planner import GenerationPlan, is_training_split, plan_generation
from .postprocess import FaceFilter, PostprocessReport, SyntheticFaces, is_blank, postprocess_generated
from .prompts import PromptGenerator, PromptJob, load_pools, read_jobs, write_jobs

__all__ = [
    "FaceFilter",
    "GenerationPlan",
    "GenerationReport",
    "GenerationSettings",
    "PostprocessReport",
    "PromptGenerator",
    "PromptJob",
    "SyntheticFaces",
    "generate_images",
    "is_blank",
    "is_training_split",
    "load_pipeline",
    "load_pools",
    "mark_synthetic",
    "merge_synthetic",
    "plan_generation",
    "postprocess_generated",
    "read_jobs",
    "read_manifest",
    "real_only",
    "split_synthetic",
    "synthetic_mask",
    "write_dataset",
    "write_jobs",
]
