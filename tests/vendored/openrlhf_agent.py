# Vendored, unchanged: OpenRLHF's remote reward-model client as OpenRLHF >= 0.9.1 calls it (one sample
# per request, many at once: each generation's reward is fetched as soon as it is done).
#   repo:   https://github.com/OpenRLHF/OpenRLHF
#   path:   openrlhf/utils/agent.py (SingleTurnAgentExecutor.__init__ and ._fetch_rewards_via_http)
#   commit: 3c3be6234e0cb353e76bb8019947db9dfe99fca7
# The two methods are copied as they are; the module's imports, the base class (AgentExecutorBase, an
# abstract ``execute``: dropped from the class line) and the other methods (generation with vLLM) are
# left out. ``reward_fields`` below is OpenRLHF's reading of the answer in
# SingleTurnAgentExecutor.execute, lines 288-296 there, lifted out of the method into a function.
# Excluded from ruff (pyproject.toml): the code keeps OpenRLHF's formatting.
import asyncio
from logging import getLogger

import aiohttp

logger = getLogger(__name__)


class SingleTurnAgentExecutor:
    """Single-turn agent executor with optional reward post-processing."""

    def __init__(self, remote_rm_url=None):
        reward_endpoints = [remote_rm_url] if isinstance(remote_rm_url, str) else remote_rm_url
        self.reward_endpoints = reward_endpoints or []

        # Optional user-provided reward_func from a Python file.
        self.reward_func = None
        if self.reward_endpoints and self.reward_endpoints[0].endswith(".py"):
            logger.info(f"Loading custom `reward_func(queries, prompts, labels)` from {self.reward_endpoints[0]}")
            import importlib.util

            spec = importlib.util.spec_from_file_location("reward_func", self.reward_endpoints[0])
            reward_module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(reward_module)
            self.reward_func = reward_module.reward_func

    async def _fetch_rewards_via_http(self, queries_list, prompts_list, labels_list):
        """HTTP fallback: shard requests across servers."""
        num_servers = len(self.reward_endpoints)
        batch_size = (len(queries_list) + num_servers - 1) // num_servers
        timeout = aiohttp.ClientTimeout(total=180)

        tasks = []
        for i, rm in enumerate(self.reward_endpoints):
            start_idx = i * batch_size
            end_idx = min((i + 1) * batch_size, len(queries_list))
            payload = {
                "query": queries_list[start_idx:end_idx],
                "prompts": prompts_list[start_idx:end_idx],
                "labels": labels_list[start_idx:end_idx],
            }

            async def _post_request(url, data, try_max_times=5):
                for _ in range(try_max_times):
                    try:
                        async with aiohttp.ClientSession(timeout=timeout) as session:
                            async with session.post(url, json=data) as response:
                                response.raise_for_status()
                                return await response.json()
                    except aiohttp.ClientError as e:
                        logger.info(f"Request error, please check: {e}")
                    except Exception as e:  # pragma: no cover - defensive
                        logger.info(f"Unexpected error, please check: {e}")
                    await asyncio.sleep(1)

                raise RuntimeError(
                    f"Request error for {try_max_times} times, returning None. Please check the API server."
                )

            tasks.append(asyncio.create_task(_post_request(rm, payload)))
        return await asyncio.gather(*tasks)


def reward_fields(rewards_info_list):
    # openrlhf/utils/agent.py, SingleTurnAgentExecutor.execute (lines 288-296 at the commit above)
    output = {}
    rewards_info = rewards_info_list[0] if rewards_info_list else None
    if rewards_info:
        score_value = rewards_info.get("scores")
        if score_value is None:
            score_value = rewards_info.get("rewards")
        output.update(
            reward=rewards_info.get("rewards"),
            scores=score_value,
            extra_logs=rewards_info.get("extra_logs") or {},
        )
    return output
