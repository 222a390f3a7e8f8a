# Vendored, unchanged: OpenRLHF's remote reward-model client as OpenRLHF 0.9.0 calls it (a whole shard of
# samples per request).
#   repo:   https://github.com/OpenRLHF/OpenRLHF
#   path:   openrlhf/utils/remote_rm_utils.py (request_api_wrapper and remote_rm_fn_ray)
#   commit: 06ab51e75c0e8c5b4d6b66912996b2a611e3dc2f (tag v0.9.0)
# The function bodies are copied as they are; only the module's imports and the ``@ray.remote``
# decorator (Ray is not installed here; it only runs the function in a Ray worker) are left out.
# Excluded from ruff (pyproject.toml): the code keeps OpenRLHF's formatting.
import time

import requests

from logging import getLogger

logger = getLogger(__name__)


def request_api_wrapper(url, data, try_max_times=5):
    """Synchronous request API wrapper"""
    headers = {
        "Content-Type": "application/json",
    }
    for _ in range(try_max_times):
        try:
            response = requests.post(url=url, json=data, headers=headers, timeout=180)
            response.raise_for_status()  # Raise an HTTPError for bad responses
            response = response.json()
            return response
        except requests.RequestException as e:
            logger.info(f"Request error, please check: {e}")
        except Exception as e:
            logger.info(f"Unexpected error, please check: {e}")
        time.sleep(1)

    raise Exception(f"Request error for {try_max_times} times, returning None. Please check the API server.")



def remote_rm_fn_ray(api_url, queries, prompts, labels):
    return request_api_wrapper(api_url, {"query": queries, "prompts": prompts, "labels": labels})
