"""The chaos suite's harness (bench/chaos.py, tests/test_chaos.py): the production-style
processes of a campaign (Temporal dev server on a file store, workers, API, HTTP sandbox), a
schedule of faults played on them during one campaign, and the figures of what it survived."""
