"""The registry of systems. Each entry names the module holding that system's whole story.

A system module defines `get_config(preset)`, `PRESETS` and `build(config, workdir) -> System`. Modules
are imported on demand, so `aigc-jax list` stays fast.
"""

import dataclasses
import difflib
import importlib
from types import ModuleType

from aigc_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class SystemSpec:
    name: str
    module: str
    seed_questions: tuple[int, ...]
    data: str
    description: str
    status: str  # what has been measured, see README


REGISTRY: dict[str, SystemSpec] = {
    spec.name: spec
    for spec in [
        SystemSpec(
            name="gpt_shakespeare",
            module="aigc_jax.systems.gpt_shakespeare",
            seed_questions=(2,),
            data="shakespeare",
            description="GPT-2-style decoder-only transformer, character or BPE language model",
            status="trained (cpu preset)",
        ),
        SystemSpec(
            name="cnn_fashion",
            module="aigc_jax.systems.cnn_fashion",
            seed_questions=(8, 26),
            data="fashion_mnist",
            description="CNN image classifier: the source's network (seed preset) and a VGG-style BN net",
            status="cpu: 0.935, missed",
        ),
        SystemSpec(
            name="gan_mlp_fashion",
            module="aigc_jax.systems.gan_mlp_fashion",
            seed_questions=(3,),
            data="fashion_mnist",
            description="the source's MLP GAN, bugs fixed (fresh noise, detached fakes, non-saturating loss)",
            status="cpu: fd 102.6",
        ),
        SystemSpec(
            name="dcgan_fashion",
            module="aigc_jax.systems.dcgan_fashion",
            seed_questions=(3,),
            data="fashion_mnist",
            description="DCGAN: transposed-conv generator with BatchNorm, conv discriminator",
            status="cpu: fd 146, missed",
        ),
        SystemSpec(
            name="unet_fashion_scenes",
            module="aigc_jax.systems.unet_fashion_scenes",
            seed_questions=(16,),
            data="fashion_scenes",
            description="U-Net per-pixel classification of constructed Fashion-MNIST scenes (11 classes)",
            status="cpu: mIoU 0.62, missed",
        ),
    ]
}


def get_spec(name: str) -> SystemSpec:
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, REGISTRY, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"unknown system {name!r}.{hint} `aigc-jax list` shows them all")
    return REGISTRY[name]


def load(name: str) -> ModuleType:
    return importlib.import_module(get_spec(name).module)
