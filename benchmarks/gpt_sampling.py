"""Sampling throughput of gpt_shakespeare with the KV cache against recomputing the whole context.

    python benchmarks/gpt_sampling.py [--preset cpu] [--new-tokens 256] [--batch 4]

Same weights, same prompt, same seed (both paths produce identical tokens; tests check that). The cached
path prefills the prompt once and then runs one single-token step per new token; the baseline runs the
full model over its fixed context buffer (prompt + new tokens) for every new token. Both are jitted with
the decode loop inside `lax.fori_loop`. The model is the preset's architecture with its context widened
to fit the prompt plus the new tokens. Writes benchmarks/results/gpt_sampling__<preset>.json
(target: `speedup` ≥ 10 for 256 new tokens).
"""

import argparse
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
from common import alternate, medians

from aigc_jax import decoding, results
from aigc_jax.models.gpt import GPT
from aigc_jax.systems import gpt_shakespeare

PROMPT_LENGTH = 16
VOCAB_SIZE = 85


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", choices=("smoke", "cpu", "full"))
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    m = gpt_shakespeare.get_config(args.preset).model
    model = GPT(VOCAB_SIZE, m.num_layers, m.num_heads, m.embed_dim, max_len=PROMPT_LENGTH + args.new_tokens)
    params = nn.unbox(model.init(jax.random.PRNGKey(0), jnp.zeros((1, model.max_len), jnp.int32))["params"])
    prompt = jax.random.randint(jax.random.PRNGKey(1), (args.batch, PROMPT_LENGTH), 0, VOCAB_SIZE)
    rng = jax.random.PRNGKey(2)
    decoder = model.clone(decode=True)

    def cached() -> None:
        decoding.generate(decoder, params, prompt, rng, args.new_tokens).block_until_ready()

    def recomputed() -> None:
        decoding.generate_without_cache(model, params, prompt, rng, args.new_tokens).block_until_ready()

    times = medians(alternate({"kv_cache": cached, "recompute": recomputed}, warmup=1, repeats=args.repeats))
    speedup = times["recompute"] / times["kv_cache"]
    tokens = args.batch * args.new_tokens
    print(
        f"{args.new_tokens} new tokens x batch {args.batch}: kv cache {times['kv_cache']:.3f} s "
        f"({tokens / times['kv_cache']:.0f} tok/s), recompute {times['recompute']:.3f} s "
        f"({tokens / times['recompute']:.0f} tok/s), speedup {speedup:.1f}x"
    )
    results.write(
        pathlib.Path(__file__).parent / "results" / f"gpt_sampling__{args.preset}.json",
        benchmark="gpt_sampling",
        preset=args.preset,
        shape=f"{m.num_layers} layers, {m.embed_dim} wide, context {model.max_len}, prompt {PROMPT_LENGTH}, "
        f"batch {args.batch}, {args.new_tokens} new tokens",
        metrics={
            "kv_cache_seconds": times["kv_cache"],
            "recompute_seconds": times["recompute"],
            "kv_cache_tokens_per_second": tokens / times["kv_cache"],
            "recompute_tokens_per_second": tokens / times["recompute"],
            "speedup": speedup,
        },
        target={"speedup_at_least": 10.0},
        repeats=args.repeats,
    )


if __name__ == "__main__":
    main()
