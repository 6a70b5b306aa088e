"""The chaos suite: real faults on real files and processes, every run judged by the durability checker."""
