import sys
from pathlib import Path

# tests/naive.py and tests/oracle/ are shared helpers, imported by module name.
HERE = Path(__file__).parent
sys.path[:0] = [str(HERE), str(HERE / "oracle")]
