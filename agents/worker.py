"""`opspulse worker`: one Faust worker of the opspulse consumer group."""

from __future__ import annotations

import argparse
import logging

from agents.settings import load_config


def run_worker(args: argparse.Namespace) -> int:
    from faust.worker import Worker

    from agents.app import create_app

    config = load_config(args.config)
    app = create_app(config, web_host=args.web_host, web_port=args.web_port, data_dir=args.data_dir)
    logging.getLogger("opspulse").setLevel(
        args.loglevel.upper().replace("CRIT", "CRITICAL").replace("WARN", "WARNING")
    )
    worker = Worker(app, loglevel=args.loglevel, web_port=args.web_port, web_host=args.web_host)
    worker.execute_from_commandline()  # returns only via SystemExit on shutdown
    return 0
