"""Decision engine, pure: allowed-tools rules -> Casbin policy -> Decision.

No I/O, no web libraries.
"""

from pathlib import Path

MODEL_PATH = str(Path(__file__).with_name("model.conf"))

__all__ = ["MODEL_PATH"]
