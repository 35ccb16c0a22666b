#!/usr/bin/python3
"""test_fault_kill9 with --spool-sync fs (one syncfs per group, message
files written before the 250) instead of the default journal."""

import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
os.environ["SK_FAULT_SPOOL_SYNC"] = "fs"
os.execv(sys.executable, [sys.executable, os.path.join(here, "test_fault_kill9.py")])
