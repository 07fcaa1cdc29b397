"""One log format for every service: time, service, level, message."""

import logging
import sys


def setup(service: str, level: int = logging.INFO) -> None:
    logging.basicConfig(
        stream=sys.stdout,
        level=level,
        format=f"%(asctime)s {service} %(levelname)s %(message)s",
    )
