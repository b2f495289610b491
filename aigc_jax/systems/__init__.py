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
            status="cpu: 1.570 nats/char, met",
        ),
        SystemSpec(
            name="cnn_fashion",
            module="aigc_jax.systems.cnn_fashion",
            seed_questions=(8, 26),
            data="fashion_mnist",
            description="CNN image classifier: the source's network (seed preset) and a VGG-style BN net",
            status="cpu_zen5_33000_steps: test 0.9379; cpu_zen5_33000_steps_seed1: 0.9412; "
            "cpu_zen5_33000_steps_seed2: 0.9434; met on the mean",
        ),
        SystemSpec(
            name="gan_mlp_fashion",
            module="aigc_jax.systems.gan_mlp_fashion",
            seed_questions=(3,),
            data="fashion_mnist",
            description="the source's MLP GAN, bugs fixed (fresh noise, detached fakes, non-saturating loss)",
            status="cpu_zen5_quarter_convs: fd 105.7; cpu: fd 157.2; h200 full: fd 120.7",
        ),
        SystemSpec(
            name="dcgan_fashion",
            module="aigc_jax.systems.dcgan_fashion",
            seed_questions=(3,),
            data="fashion_mnist",
            description="DCGAN: transposed-conv generator with BatchNorm, conv discriminator",
            status="cpu_zen5_quarter_convs: fd 8.8 = 0.083x mlp (seed 1: 0.072x), met; "
            "before the 3x3 blocks, cpu: fd 81.0 = 0.515x, missed; h200 full: fd 56.5 = 0.468x, met",
        ),
        SystemSpec(
            name="unet_fashion_scenes",
            module="aigc_jax.systems.unet_fashion_scenes",
            seed_questions=(16,),
            data="fashion_scenes",
            description="U-Net per-pixel classification of constructed Fashion-MNIST scenes (11 classes)",
            status="h200 full_fresh_scenes_45000_steps: mIoU 0.84; "
            "cpu_fresh_scenes_deep_wide_10000_steps: 0.76; cpu: 0.67; missed",
        ),
        SystemSpec(
            name="seqgan",
            module="aigc_jax.systems.seqgan",
            seed_questions=(15, 29),
            data="shakespeare",
            description="SeqGAN: LSTM generator, CNN discriminator, rollout policy gradient; LSTM oracle",
            status="cpu oracle: 8.86 < mle 8.96 (d at chance)",
        ),
        SystemSpec(
            name="fasttext_reviews",
            module="aigc_jax.systems.fasttext_reviews",
            seed_questions=(10, 23),
            data="movie_review_sentences",
            description="embedding-mean sentence classifier, fastText bigrams; NB-weighted n-grams (nbsvm)",
            status="cpu: 10-fold 0.777, nbsvm 0.810",
        ),
        SystemSpec(
            name="textcnn_reviews",
            module="aigc_jax.systems.textcnn_reviews",
            seed_questions=(11,),
            data="movie_review_sentences",
            description="Kim's CNN-rand: filter widths 3/4/5 x 100, max-over-time, dropout, max-norm",
            status="cpu: 10-fold 0.771",
        ),
        SystemSpec(
            name="transformer_g2p",
            module="aigc_jax.systems.transformer_g2p",
            seed_questions=(5, 27),
            data="cmudict_g2p",
            description="encoder-decoder transformer, letters -> phonemes, greedy and beam search",
            status="h200 full: wer 0.240, per 0.058; cpu: wer 0.255",
        ),
        SystemSpec(
            name="dialogue_chitchat",
            module="aigc_jax.systems.dialogue_chitchat",
            seed_questions=(17,),
            data="chitchat",
            description="GPT decoder replying to the previous turns; top-p or beam search; aigc-jax chat",
            status="cpu: ppl 78 vs 104 without context",
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


def option_flag(option: str) -> str:
    """The command-line flag of a sample option: `--num` for `num_samples` (the one shorthand; the CLI
    declares it from here), else the name with hyphens (`--top-p`)."""
    return "--num" if option == "num_samples" else f"--{option.replace('_', '-')}"
