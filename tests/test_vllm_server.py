"""Smoke tests of the real vLLM CPU servers of tests/vllm_server.py, through the ``openai`` client.

The judge server's structured outputs must hold even with random weights; the reward server's scores
must equal a plain transformers forward pass in this venv (fp32, the single label's logit). Measured
here: max abs difference 1.5e-8 on logits of about 1e-2; the tolerance is 1e-6.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from tests.vllm_server import VllmServer, vllm_python

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

TOLERANCE = 1e-6
MESSAGES = [{"role": "user", "content": "Rate the answer 2 + 2 = 4 from 0 to 9."}]
PAIRS = [
    ("What is 2 + 2?", "4"),
    ("Say hi.", "<think>hm</think><answer>hi</answer>"),
    ("Rate this.", "The answer is 42. Reward: 1."),
    ("Solve 2x + 3 = 7.", "x = 2, so the final answer is \\boxed{2}"),
]


def judge_client(server: VllmServer) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)


def chat(server: VllmServer, structured: dict[str, Any], max_tokens: int = 16) -> str:
    reply = judge_client(server).chat.completions.create(
        model=server.model,
        messages=MESSAGES,
        max_tokens=max_tokens,
        temperature=0,
        extra_body={"structured_outputs": structured},
    )
    content = reply.choices[0].message.content
    assert isinstance(content, str)
    return content


def test_models_lists_the_served_model(vllm_judge_server: VllmServer) -> None:
    models = judge_client(vllm_judge_server).models.list()
    assert [m.id for m in models.data] == [vllm_judge_server.model]


def test_choice_output_is_one_of_the_choices(vllm_judge_server: VllmServer) -> None:
    choices = ["0", "1", "2", "3", "4", "5"]
    assert chat(vllm_judge_server, {"choice": choices}) in choices


def test_regex_output_matches(vllm_judge_server: VllmServer) -> None:
    pattern = r"Reward: (0|1)\.[0-9]"
    assert re.fullmatch(pattern, chat(vllm_judge_server, {"regex": pattern}))


def test_json_schema_output_parses(vllm_judge_server: VllmServer) -> None:
    schema = {
        "type": "object",
        "properties": {"score": {"type": "integer", "minimum": 0, "maximum": 9}},
        "required": ["score"],
        "additionalProperties": False,
    }
    verdict = json.loads(chat(vllm_judge_server, {"json": schema}, max_tokens=32))
    assert set(verdict) == {"score"}
    assert 0 <= verdict["score"] <= 9


def classify(server: VllmServer, body: dict[str, Any]) -> list[float]:
    """One score per input from ``POST /classify`` (at the server root, not under ``/v1``)."""
    from openai import OpenAI

    client = OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=120)
    reply = client.post("/classify", cast_to=object, body={"model": server.model, **body})
    assert isinstance(reply, dict), reply
    return [row["probs"][0] for row in sorted(reply["data"], key=lambda row: row["index"])]


def transformers_logits(server: VllmServer, texts: list[str]) -> list[float]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(server.model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(server.model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return [float(model(**tokenizer(text, return_tensors="pt")).logits[0, 0]) for text in texts]


def rendered(server: VllmServer) -> list[str]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(server.model_dir)
    return [
        str(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}],
                tokenize=False,
            )
        )
        for prompt, completion in PAIRS
    ]


def test_reward_scores_match_transformers(vllm_reward_server: VllmServer) -> None:
    texts = rendered(vllm_reward_server)
    expected = transformers_logits(vllm_reward_server, texts)
    # Random weights give logits near 0: the pairs must still be told apart at this tolerance.
    assert max(expected) - min(expected) > 100 * TOLERANCE
    scores = classify(vllm_reward_server, {"input": texts, "use_activation": False})
    assert scores == pytest.approx(expected, abs=TOLERANCE)


def test_reward_server_renders_chat_messages_like_the_tokenizer(vllm_reward_server: VllmServer) -> None:
    expected = transformers_logits(vllm_reward_server, rendered(vllm_reward_server))
    for (prompt, completion), logit in zip(PAIRS, expected, strict=True):
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
        [score] = classify(vllm_reward_server, {"messages": messages, "use_activation": False})
        assert score == pytest.approx(logit, abs=TOLERANCE)


def test_reward_server_default_activation_is_a_sigmoid(vllm_reward_server: VllmServer) -> None:
    texts = rendered(vllm_reward_server)
    logits = classify(vllm_reward_server, {"input": texts, "use_activation": False})
    probabilities = classify(vllm_reward_server, {"input": texts})
    assert probabilities == pytest.approx([1 / (1 + math.exp(-x)) for x in logits], abs=TOLERANCE)


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    server = VllmServer(vllm_python(), tmp_path / "no-model", "missing", [], tmp_path / "server.log")
    with pytest.raises(RuntimeError, match=r"exited with .* before it was healthy") as failure:
        server.start()
    assert "no-model" in str(failure.value)  # the log's tail names the missing model
    assert server.proc is not None and server.proc.poll() is not None
    server.stop()
