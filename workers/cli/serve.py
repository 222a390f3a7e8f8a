"""``rewardq serve``: the HTTP gateway under uvicorn; ``rewardq gateway-key``: a key and the hash that
the gateway's config stores of it."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from rewardq.gateway.config import MIN_KEY_CHARS, hash_key, new_key
from rewardq.workers.cli.common import err, errors, settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


@errors
def serve(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="The gateway's config: a TOML file with a gateway table.")
    ],
    rewards: Annotated[
        Path | None, typer.Option("--rewards", help="Rewards config (TOML); default REWARDQ_REWARDS.")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    ssl_certfile: Annotated[
        Path | None, typer.Option(help="Serve HTTPS with this certificate (default: the config's).")
    ] = None,
    ssl_keyfile: Annotated[
        Path | None, typer.Option(help="The certificate's private key (default: the config's).")
    ] = None,
    access_log: Annotated[bool, typer.Option(help="Log one line per request (with its request id).")] = True,
) -> None:
    """Serve the HTTP gateway: the native API (/v1) and the trainers' reward protocols, producing
    through a RewardClient (REWARDQ_* settings)."""
    try:
        import uvicorn

        from rewardq.gateway.app import create_app
    except ImportError as e:
        err.print(f"error: rewardq serve needs the gateway extra: pip install 'rewardq[gateway]' ({e})")
        raise typer.Exit(2) from e
    from rewardq.client import RewardClient
    from rewardq.gateway.config import GatewayConfig
    from rewardq.gateway.middleware import RequestIdFilter

    loaded = GatewayConfig.load(config)
    certfile = ssl_certfile or loaded.tls_certfile
    keyfile = ssl_keyfile or loaded.tls_keyfile
    if (certfile is None) != (keyfile is None):
        raise typer.BadParameter("--ssl-certfile and --ssl-keyfile go together", param_hint="--ssl-keyfile")
    if not loaded.keys:
        err.print(
            f"warning: {config} names no [[gateway.keys]]: every request will be refused (401)", markup=False
        )
    _log_request_ids(RequestIdFilter(), access_log)
    app = create_app(loaded, RewardClient(settings(rewards=rewards)))
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
            log_config=None,  # the command line's logging, with request ids
            access_log=False,  # the gateway logs each request itself, with its id and key name
            server_header=False,
        )
    finally:
        app.state.gateway.close()


def _log_request_ids(request_ids: logging.Filter, access_log: bool) -> None:
    """Every log line names its request (``-`` outside one); request lines at INFO when asked."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(request_ids)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    if access_log:
        logging.getLogger("rewardq.gateway.middleware").setLevel(logging.INFO)


@errors
def gateway_key(
    stdin: Annotated[
        bool,
        typer.Option(
            "--stdin", help=f"Hash a key read from standard input (at least {MIN_KEY_CHARS} chars)."
        ),
    ] = False,
) -> None:
    """Make a new API key for the gateway: the key goes to the client, its hash into a key table of the
    gateway's config (the gateway keeps only hashes). With --stdin, hash a key you already have."""
    if stdin:
        key = sys.stdin.readline().strip()
        if len(key) < MIN_KEY_CHARS:
            raise typer.BadParameter(f"a key needs at least {MIN_KEY_CHARS} characters", param_hint="--stdin")
    else:
        key = new_key()
        err.print("The key, for the client (shown once; the gateway keeps only its hash):")
        print(key)
        err.print("Its hash, for a [[gateway.keys]] table of the gateway's config:", markup=False)
    print(f'hash = "{hash_key(key)}"')
