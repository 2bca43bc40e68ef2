"""medseg3d inside MONAI: the contract, and the few adapters it needs.

**The contract.** medseg3d parts are MONAI parts, with no wrapper in between:

* networks (:func:`medseg3d.nn.build_model`) are ``torch.nn.Module`` s mapping ``(B, C_in,
  *spatial)`` to logits ``(B, C, *spatial)``; with ``deep_supervision=True`` they return
  ``[full, half, quarter, ...]`` in training mode, which ``monai.losses.DeepSupervisionLoss``
  and :class:`medseg3d.losses.DeepSupervisionLoss` both accept, and one tensor in eval mode;
* losses (:mod:`medseg3d.losses`) take ``(logits, target)`` with MONAI's option names
  (``include_background``, ``softmax``/``sigmoid``, ``batch``), so they are a
  ``SupervisedTrainer``'s ``loss_function`` as they are;
* transforms (:mod:`medseg3d.transforms`) are ``monai.transforms.MapTransform`` s; the random
  ones are ``Randomizable``, so ``monai.data.CacheDataset`` caches everything up to the first
  random one and ``Compose.set_random_state`` seeds them; ``MetaTensor`` metadata is kept;
* :class:`medseg3d.inference.SlidingWindowInferer` is a ``monai.inferers.Inferer``
  (``SupervisedEvaluator(inferer=...)``), returning logits, probabilities or labels
  ``(B, ., *spatial)`` that ``monai.metrics.DiceMetric`` reads after ``AsDiscrete``.

**The adapters** (everything else needs none):

* :func:`load_model_folder_for_monai` - a model folder written by ``medseg3d train`` as network,
  inferer and MONAI pre-/post-processing ``Compose`` objects, in one call;
* :func:`unet_from_basic_unet` / :func:`basic_unet_state_dict_to_unet` - MONAI ``BasicUNet``
  weights in medseg3d's ``unet`` (the same network; outputs equal to 1e-5), and
  :func:`unet_state_dict_to_basic_unet` for the way back;
* :class:`PlanNormalized` - a plan's intensity normalisation as a MONAI transform;
* a MONAI bundle (``configs/bundle/``) using medseg3d components through ``_target_``.

See docs/monai.md.
"""

from __future__ import annotations

from medseg3d.monai.convert import (
    basic_unet_key_to_unet,
    basic_unet_options,
    basic_unet_state_dict_to_unet,
    unet_from_basic_unet,
    unet_key_to_basic_unet,
    unet_state_dict_to_basic_unet,
)
from medseg3d.monai.model_folder import (
    MonaiModel,
    build_postprocessing,
    build_preprocessing,
    load_model_folder_for_monai,
)
from medseg3d.monai.transforms import PlanNormalize, PlanNormalized

__all__ = [
    "MonaiModel",
    "PlanNormalize",
    "PlanNormalized",
    "basic_unet_key_to_unet",
    "basic_unet_options",
    "basic_unet_state_dict_to_unet",
    "build_postprocessing",
    "build_preprocessing",
    "load_model_folder_for_monai",
    "unet_from_basic_unet",
    "unet_key_to_basic_unet",
    "unet_state_dict_to_basic_unet",
]
