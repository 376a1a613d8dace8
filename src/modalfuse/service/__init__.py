"""The workflows the CLI, the demo, evaluation and the benchmarks share, each written once:
create an index from a schema (`indexes`), ingest a file through the queue and wait (`ingest`),
make a deployment ready (`deployment`), retry dead letters (`deadletters`), and index documents
in this process (`indexer`).

This layer sits over `query` and `ingest`; only `cli`, `evaluation` and `benchmarks` import it.
"""
