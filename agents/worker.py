"""`opspulse worker`: one Faust worker of the opspulse consumer group."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys

from agents.settings import bootstrap_servers, load_config
from agents.statestore import checkpoint_key


def run_worker(args: argparse.Namespace) -> int:
    from faust.worker import Worker

    from agents.app import create_app
    from agents.topics import ensure_topics

    config = load_config(args.config)
    if config.churn.enabled and config.churn.model == "forest" and not checkpoint_key():
        print(
            "opspulse worker: churn.model = 'forest' needs OPSPULSE_CHECKPOINT_KEY (its "
            "pickled checkpoints are signed with it, and nothing unsigned is unpickled)",
            file=sys.stderr,
        )
        return 2
    partitions = asyncio.run(ensure_topics(bootstrap_servers(), config, config.app_id))
    # Existing input topics decide the partition count (users are placed by it).
    config = dataclasses.replace(
        config, topics=dataclasses.replace(config.topics, partitions=partitions)
    )
    app = create_app(
        config,
        web_host=args.web_host,
        web_port=args.web_port,
        data_dir=args.data_dir,
        app_id=config.app_id,
    )
    level = {"crit": "CRITICAL", "warn": "WARNING"}.get(args.loglevel, args.loglevel.upper())
    logging.getLogger("opspulse").setLevel(level)
    worker = Worker(app, loglevel=args.loglevel)
    worker.execute_from_commandline()  # exits the process on shutdown
    return 0
